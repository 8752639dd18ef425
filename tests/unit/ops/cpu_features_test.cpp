// Run-time CPU path selection of the kernels (ops/cpu_features.h).
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "medr1/core/error.h"
#include "medr1/ops/cpu_features.h"

namespace {

namespace ops = medr1::ops;
using ops::CpuIsa;

TEST(CpuFeatures, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(ops::parse_cpu_isa("portable"), CpuIsa::Portable);
  EXPECT_EQ(ops::parse_cpu_isa("avx2"), CpuIsa::Avx2);
  EXPECT_EQ(ops::parse_cpu_isa("avx512bf16"), CpuIsa::Avx512Bf16);
  EXPECT_EQ(ops::parse_cpu_isa("amx"), CpuIsa::Amx);
  EXPECT_EQ(ops::parse_cpu_isa("native"), ops::detected_cpu_isa());
  for (const char* n : {"portable", "avx2", "avx512bf16", "amx"}) {
    EXPECT_EQ(ops::cpu_isa_name(ops::parse_cpu_isa(n)), std::string(n));
  }
  try {
    ops::parse_cpu_isa("avx512");
    FAIL() << "no error";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'avx512'"), std::string::npos) << e.what();
  }
}

// The kernels' at::parallel_for really fans out (the build gives their files OpenMP; without it the loop is serial).
TEST(CpuFeatures, KernelsParallelForUsesTheIntraOpThreads) {
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  EXPECT_EQ(ops::intra_op_threads_reached(2), 2);
  EXPECT_EQ(ops::intra_op_threads_reached(1), 1);
  at::set_num_threads(before);
}

TEST(CpuFeatures, CapLowersThePathAndIsClampedToTheCpu) {
  const CpuIsa before = ops::cpu_isa();
  const CpuIsa have = ops::detected_cpu_isa();
  ops::set_cpu_isa_cap(CpuIsa::Portable);
  EXPECT_EQ(ops::cpu_isa(), CpuIsa::Portable);
  EXPECT_FALSE(ops::cpu_isa_at_least(CpuIsa::Avx2));
  ops::set_cpu_isa_cap(CpuIsa::Amx);  // never above what the CPU has
  EXPECT_EQ(ops::cpu_isa(), have);
  ops::set_cpu_isa_cap(CpuIsa::Avx2);
  EXPECT_EQ(static_cast<int>(ops::cpu_isa()), std::min(static_cast<int>(have), static_cast<int>(CpuIsa::Avx2)));
  ops::set_cpu_isa_cap(before == have ? CpuIsa::Amx : before);
  EXPECT_EQ(ops::cpu_isa(), before);
  // CI logs: the CPU model, its SIMD flags and the kernel path.
  const std::string d = ops::cpu_description();
  std::printf("%s\n", d.c_str());
  EXPECT_NE(d.find("kernels: "), std::string::npos) << d;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) {
    EXPECT_NE(d.find("avx2"), std::string::npos) << d;
  }
#endif
}

}  // namespace
