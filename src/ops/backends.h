// The ops part's backend entry points (private to src/ops): the dispatch files (streaming_linear.cpp,
// decode_attention.cpp, greedy.cpp) check the arguments, choose a path by ops::cpu_isa() and call one of these;
// each backend file (<op>_avx2.cpp, <op>_avx512bf16.cpp, <op>_amx.cpp) defines its own, with the target attributes of its ISA.
// Callers guarantee that the CPU (and MEDR1_CPU_ISA) allow the ISA of the function they call.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>

#include <cstdint>

namespace medr1::ops::backend {

// Rows [n0, n1) of y = x W^T + b for x [M, K] and W [N, K] (row-major), y [M, N], bias fp32 [N] or nullptr:
// products accumulated in fp32, the bias added before the one rounding to y's dtype.
// streaming_linear_avx2.cpp (AVX2 + FMA): x already widened to fp32, weights fp32 or bf16 (widened on the fly).
void linear_rows_avx2(const float* x, const float* w, const float* bias, int64_t M, int64_t K, int64_t N, float* y,
                      int64_t n0, int64_t n1);
void linear_rows_avx2(const float* x, const c10::BFloat16* w, const float* bias, int64_t M, int64_t K, int64_t N,
                      c10::BFloat16* y, int64_t n0, int64_t n1);
// streaming_linear_avx512.cpp (AVX-512F): fp32 x and weights.
void linear_rows_avx512(const float* x, const float* w, const float* bias, int64_t M, int64_t K, int64_t N, float* y,
                        int64_t n0, int64_t n1);
// streaming_linear_avx512bf16.cpp (AVX512-BF16): bf16 x and weights, pairs multiplied and summed by VDPBF16PS.
void linear_rows_avx512bf16(const c10::BFloat16* x, const c10::BFloat16* w, const float* bias, int64_t M, int64_t K,
                            int64_t N, c10::BFloat16* y, int64_t n0, int64_t n1);
// streaming_linear_amx.cpp (AMX-BF16, K % 32 == 0, M <= 16): x packed once by amx_pack_x into xp (K * M values,
// AMX's pair layout), then blocks of 16 weight rows by TDPBF16PS; a last block of fewer rows goes to
// linear_rows_avx512bf16 with the unpacked x.
void amx_pack_x(const c10::BFloat16* x, int64_t M, int64_t K, c10::BFloat16* xp);
void linear_rows_amx(const c10::BFloat16* x, const c10::BFloat16* xp, const c10::BFloat16* w, const float* bias,
                     int64_t M, int64_t K, int64_t N, c10::BFloat16* y, int64_t n0, int64_t n1);

// decode_attention_avx2.cpp: q [B, H, S, D], k/v [B, Hkv, T, D] (unit stride on D, D % 8 == 0), mask [B, 1, S, T]
// contiguous or undefined, all float32 or all bfloat16; writes out [B, H, S, D] (any strides, unit on D).
void decode_attention_avx2(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                           at::Tensor& out);

// greedy_avx2.cpp: sum_v exp(x[v] - mx) over a row of V logits (mx = the row's finite maximum), in double.
double sum_exp_avx2(const float* x, int64_t V, float mx);
double sum_exp_avx2(const c10::BFloat16* x, int64_t V, float mx);

}  // namespace medr1::ops::backend
