// Device resolution (see include/medr1/core/device.h).
#include "medr1/core/device.h"

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <cstdlib>

#include "medr1/core/error.h"

namespace medr1 {

int cuda_device_count() {
#ifdef MEDR1_CUDA
  return at::hasCUDA() ? static_cast<int>(at::detail::getCUDAHooks().getNumGPUs()) : 0;
#else
  return 0;
#endif
}

c10::Device resolve_device(const std::string& spec, int default_cuda_index) {
  if (spec == "cpu") return c10::Device(c10::kCPU);
  const bool cuda = spec == "cuda" || (spec.rfind("cuda:", 0) == 0 && spec.size() > 5 && spec.size() <= 8 &&
                                       spec.find_first_not_of("0123456789", 5) == std::string::npos);
  MEDR1_CHECK(cuda, "--device: expected cpu, cuda or cuda:N, got '", spec, "'");
#ifndef MEDR1_CUDA
  (void)default_cuda_index;
  fail("--device ", spec, ": this is a CPU-only build of medr1 (the CUDA variant: MEDR1_CUDA=ON "
       "MEDR1_BUILD_DIR=build-cuda bash scripts/setup.sh); use --device cpu");
#else
  const int n = cuda_device_count();
  if (n == 0) {
    const char* vis = std::getenv("CUDA_VISIBLE_DEVICES");
    fail("--device ", spec, ": no CUDA device is visible to this process (CUDA_VISIBLE_DEVICES=",
         vis ? std::string("'") + vis + "'" : std::string("unset"),
         "; no GPU, or no NVIDIA driver); use --device cpu");
  }
  const int index = spec == "cuda" ? default_cuda_index : std::atoi(spec.c_str() + 5);
  MEDR1_CHECK(index >= 0 && index < n, "--device ", spec, ": cuda:", index, " requested but only ", n,
              " CUDA device(s) are visible");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
#endif
}

}  // namespace medr1
