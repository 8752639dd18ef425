// --device resolution (core/device.h).
#include <gtest/gtest.h>

#include <string>

#include "medr1/core/device.h"
#include "medr1/core/error.h"

namespace {

std::string device_error(const std::string& spec) {
  try {
    medr1::resolve_device(spec);
  } catch (const medr1::Error& e) {
    return e.what();
  }
  return "";
}

TEST(Device, CpuResolvesAndBadSpecsNameTheValue) {
  EXPECT_TRUE(medr1::resolve_device("cpu").is_cpu());
  EXPECT_NE(device_error("gpu").find("'gpu'"), std::string::npos);
  EXPECT_NE(device_error("cuda:x").find("'cuda:x'"), std::string::npos);
  EXPECT_NE(device_error("cuda:").find("'cuda:'"), std::string::npos);
}

TEST(Device, CudaWithoutAGpuSaysWhy) {
  if (medr1::cuda_device_count() > 0) GTEST_SKIP() << medr1::cuda_device_count() << " CUDA device(s) visible";
  const std::string e = device_error("cuda");
#ifdef MEDR1_CUDA
  EXPECT_NE(e.find("no CUDA device is visible"), std::string::npos) << e;
#else
  EXPECT_NE(e.find("CPU-only build"), std::string::npos) << e;
#endif
  EXPECT_NE(device_error("cuda:1").find("--device cuda:1"), std::string::npos);
}

}  // namespace
