// y = x W^T + b for inputs with few rows (decode steps): LibTorch's CPU GEMM paths (measured on 1.13) are far from the
// weight-streaming bound at M = 1..16 (bf16 goes through a slow generic kernel, fp32 sgemm pays a large
// per-call overhead), so for inference on CPU a kernel that streams each weight row once, converting bf16 to
// fp32 on the fly and accumulating in fp32 (as the bf16 GEMMs do), is used instead. Same contract as
// at::linear; anything else (autograd, GPU, other dtypes, many rows, the portable path of ops/cpu_features.h) goes
// to ops::gemm_linear (ops/gemm.h). Backends: src/ops/streaming_linear_avx2.cpp, streaming_linear_avx512bf16.cpp,
// streaming_linear_amx.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace medr1::ops {

// Rows (product of the leading dims of x) up to which the streaming kernel is used: measured against
// at::linear on the 2B MLP shape, fp32 wins up to ~16 rows, bf16 up to ~4 (beyond, x re-reads dominate).
inline constexpr int64_t kStreamingLinearMaxRowsFp32 = 16;
inline constexpr int64_t kStreamingLinearMaxRowsBf16 = 4;
// bf16 on CPUs with AVX512-BF16 (VDPBF16PS: bf16 pairs multiplied and summed into fp32) or AMX-BF16: up to 16 rows.
inline constexpr int64_t kStreamingLinearMaxRowsBf16Dot = 16;

// x [..., K], weight [N, K], bias [N] or undefined -> [..., N] in x's dtype.
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = at::Tensor());

// linear() of one input with several weights (q/k/v, gate/up) in a single parallel pass: out[i] = x W_i^T + b_i,
// bit-identical to separate linear() calls. biases: empty or one per weight (undefined = none). Weights that do
// not all take the kernel (or differ in K or dtype) go to at::linear one by one.
std::vector<at::Tensor> linear_group(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                                     const std::vector<at::Tensor>& biases = {});

// True when linear() would take the streaming kernel for these arguments (tests, benchmarks).
bool streaming_linear_applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

}  // namespace medr1::ops
