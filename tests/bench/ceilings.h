// Shared pieces of the model benchmarks (medr1-bench-forward / -generate / -eval): the Qwen2-VL-2B shape with
// random weights (depth cut by --layers / --vision-depth) and the machine ceilings measured in the same run
// (matmul FLOP/s on a given GEMM shape, streaming read bandwidth), so each bench prints ratios against what
// this machine's BLAS and memory actually give rather than datasheet numbers.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "medr1/model/qwen2_vl_config.h"

namespace medr1::bench {

// Qwen2-VL-2B-Instruct's config.json (hidden 1536, 12 heads / 2 KV heads, MLP 8960, vocab 151936, mrope
// 16/24/24; vision 1280 wide, 16 heads, patch 14, merge 2) with `layers` decoder layers (2B: 28) and
// `vision_depth` vision blocks (2B: 32).
model::Qwen2VLConfig qwen2_vl_2b_config(int64_t layers = 28, int64_t vision_depth = 32);

// FLOP/s of an [m, k] x [k, n] matmul in `dtype` (2*m*k*n per product), repeated for at least `min_seconds`
// after one warm-up product.
double matmul_flops_per_s(int64_t m, int64_t k, int64_t n, at::ScalarType dtype, double min_seconds = 1.0);

// The matmul ceiling for a dtype: the best GEMM this CPU has for it. For bf16 that is ATen's bf16 GEMM or an fp32
// GEMM of the widened operands (ops/gemm.h's fp32 route), whichever is faster: on CPUs without bf16 dot-product
// instructions ATen's bf16 GEMM runs a generic loop (1.5 GFLOP/s against 200 for fp32 on an AVX2-capped Xeon),
// and a ceiling that low would make any figure look near its limit. The slow one is probed with a small product
// and not timed in full. `gemm` names the winner: "bf16", "fp32" ("fp32 (bf16 widened)" for bf16).
struct MatmulCeiling {
  double flops_per_s = 0;
  const char* gemm = "";
};
MatmulCeiling matmul_ceiling(int64_t m, int64_t k, int64_t n, at::ScalarType dtype, double min_seconds = 1.0);

// Read bandwidth in bytes/s: repeated sums over a float buffer of `bytes` (choose it far larger than the
// caches), for at least `min_seconds` after one warm-up pass.
double read_bandwidth(int64_t bytes, double min_seconds = 1.0);

}  // namespace medr1::bench
