// Run-time CPU path selection (core/cpu_features.h) and --device resolution (core/device.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "medr1/core/cpu_features.h"
#include "medr1/core/device.h"
#include "medr1/core/error.h"

namespace {

using medr1::CpuIsa;

TEST(CpuFeatures, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(medr1::parse_cpu_isa("portable"), CpuIsa::Portable);
  EXPECT_EQ(medr1::parse_cpu_isa("avx2"), CpuIsa::Avx2);
  EXPECT_EQ(medr1::parse_cpu_isa("avx512bf16"), CpuIsa::Avx512Bf16);
  EXPECT_EQ(medr1::parse_cpu_isa("native"), medr1::detected_cpu_isa());
  for (const char* n : {"portable", "avx2", "avx512bf16"}) EXPECT_EQ(medr1::cpu_isa_name(medr1::parse_cpu_isa(n)), std::string(n));
  try {
    medr1::parse_cpu_isa("avx512");
    FAIL() << "no error";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'avx512'"), std::string::npos) << e.what();
  }
}

TEST(CpuFeatures, CapLowersThePathAndIsClampedToTheCpu) {
  const CpuIsa before = medr1::cpu_isa();
  const CpuIsa have = medr1::detected_cpu_isa();
  medr1::set_cpu_isa_cap(CpuIsa::Portable);
  EXPECT_EQ(medr1::cpu_isa(), CpuIsa::Portable);
  EXPECT_FALSE(medr1::cpu_isa_at_least(CpuIsa::Avx2));
  medr1::set_cpu_isa_cap(CpuIsa::Avx512Bf16);  // never above what the CPU has
  EXPECT_EQ(medr1::cpu_isa(), have);
  medr1::set_cpu_isa_cap(CpuIsa::Avx2);
  EXPECT_EQ(static_cast<int>(medr1::cpu_isa()), std::min(static_cast<int>(have), static_cast<int>(CpuIsa::Avx2)));
  medr1::set_cpu_isa_cap(before == have ? CpuIsa::Avx512Bf16 : before);
  EXPECT_EQ(medr1::cpu_isa(), before);
  // CI logs: the CPU model, its SIMD flags and the kernel path.
  const std::string d = medr1::cpu_description();
  std::printf("%s\n", d.c_str());
  EXPECT_NE(d.find("kernels: "), std::string::npos) << d;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) {
    EXPECT_NE(d.find("avx2"), std::string::npos) << d;
  }
#endif
}

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
