// `--device cpu | cuda | cuda:N` -> at::Device, with the errors a user needs: a CPU-only build says how to get a
// CUDA one; a CUDA build on a machine without a visible GPU says so (and what CUDA_VISIBLE_DEVICES is); an index
// past the visible devices names the count. `default_cuda_index` is the device plain "cuda" means (LOCAL_RANK
// under torchrun, 0 otherwise). Throws medr1::Error.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace medr1 {

c10::Device resolve_device(const std::string& spec, int default_cuda_index = 0);

// Number of CUDA devices this process sees (0 in a CPU-only build).
int cuda_device_count();

}  // namespace medr1
