// AVX2 + FMA backend of the weight-streaming linear (see ops/linear.h, dispatched by streaming_linear.cpp): tiles of
// 4 weight rows x 2 x rows, so a loaded weight vector feeds 2 FMAs and an x vector 4. bf16 weights are widened
// exactly to fp32 (bf16 is the top half of an fp32), products are accumulated in fp32 and the output is rounded
// once to the activations' dtype, bias added before the rounding.
#include <c10/util/BFloat16.h>

#include <immintrin.h>

#include <cstdint>

#include "ops/backends.h"
#include "ops/simd_avx2.h"

namespace medr1::ops::backend {
namespace {

using simd::hsum;
using simd::load8;
using simd::widen;

// out[i * MB + j] = dot(w row i, x row j) over K for R weight rows and MB x rows (x fp32): each weight vector feeds
// MB FMAs and each x vector R, and the R weight rows are R sequential streams in flight (one stream per thread
// reached 0.63 of the read bound at 2 x rows, four reach it at 1).
template <int R, int MB, typename WT>
__attribute__((target("avx2,fma"))) void tile(const WT* w, const float* x, int64_t K, float* out) {
  __m256 acc[R][MB];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < MB; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 wv[R];
    for (int i = 0; i < R; ++i) wv[i] = load8(w + i * K + k);
    for (int j = 0; j < MB; ++j) {
      const __m256 xv = _mm256_loadu_ps(x + j * K + k);
      for (int i = 0; i < R; ++i) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < MB; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t kk = k; kk < K; ++kk) s += widen(w[i * K + kk]) * x[j * K + kk];
      out[i * MB + j] = s;
    }
}

// R weight rows from row n against all M x rows, in blocks of 2 x rows (4 x 2 accumulators + 4 weight vectors + 1 x
// vector fill 13 of the 16 ymm registers) and a last one of 1.
template <int R, typename WT, typename OT>
void rows_block(const float* x, const WT* wr, const float* bias, int64_t M, int64_t K, int64_t N, OT* y, int64_t n) {
  float r[R * 2];
  const auto store = [&](int64_t mb, int64_t m0) {
    for (int i = 0; i < R; ++i)
      for (int64_t j = 0; j < mb; ++j)
        y[(m0 + j) * N + n + i] = static_cast<OT>(r[i * mb + j] + (bias ? bias[n + i] : 0.f));
  };
  int64_t m = 0;
  for (; m + 2 <= M; m += 2) {
    tile<R, 2>(wr, x + m * K, K, r);
    store(2, m);
  }
  if (m < M) {
    tile<R, 1>(wr, x + m * K, K, r);
    store(1, m);
  }
}

// Rows [n0, n1) of y = x W^T + b (M rows of x, N rows of W): groups of 4 weight rows, then the last 1..3.
template <typename WT, typename OT>
void rows(const float* x, const WT* w, const float* bias, int64_t M, int64_t K, int64_t N, OT* y, int64_t n0,
          int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) rows_block<4>(x, w + n * K, bias, M, K, N, y, n);
  const int64_t rest = n1 - n;
  if (rest == 3) rows_block<3>(x, w + n * K, bias, M, K, N, y, n);
  if (rest == 2) rows_block<2>(x, w + n * K, bias, M, K, N, y, n);
  if (rest == 1) rows_block<1>(x, w + n * K, bias, M, K, N, y, n);
}

}  // namespace

void linear_rows_avx2(const float* x, const float* w, const float* bias, int64_t M, int64_t K, int64_t N, float* y,
                      int64_t n0, int64_t n1) {
  rows<float, float>(x, w, bias, M, K, N, y, n0, n1);
}

void linear_rows_avx2(const float* x, const c10::BFloat16* w, const float* bias, int64_t M, int64_t K, int64_t N,
                      c10::BFloat16* y, int64_t n0, int64_t n1) {
  rows<c10::BFloat16, c10::BFloat16>(x, w, bias, M, K, N, y, n0, n1);
}

}  // namespace medr1::ops::backend
