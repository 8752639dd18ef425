// AVX-512 backend of the fp32 weight-streaming linear (see ops/linear.h, dispatched by
// streaming_linear.cpp): tiles of 4 weight rows x up to 4 x rows in 16-lane registers, a masked
// load for the last K % 16 columns, products accumulated in fp32, the bias added to the sum. At 8 x
// rows the AVX2 kernel is bound by its FMA rate (each weight feeds 8 FMAs of 8 lanes); 16 lanes
// halve that, and 4 weight rows keep 4 read streams in flight.
#include <immintrin.h>

#include <cstdint>

#include "ops/backends.h"
#include "ops/simd_avx512.h"

namespace medr1::ops::backend {
namespace {

using simd::hsum16;

#define MEDR1_AVX512 __attribute__((target("avx512f")))

// out[i * MB + j] = dot(w row i, x row j) over K for R weight rows and MB x rows: R * MB
// accumulators, R weight vectors and one x vector (at most 21 of the 32 zmm registers).
template <int R, int MB>
MEDR1_AVX512 void tile(const float* w, const float* x, int64_t K, float* out) {
  __m512 acc[R][MB];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < MB; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 wv[R];
    for (int i = 0; i < R; ++i) wv[i] = _mm512_loadu_ps(w + i * K + k);
    for (int j = 0; j < MB; ++j) {
      const __m512 xv = _mm512_loadu_ps(x + j * K + k);
      for (int i = 0; i < R; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
  if (k < K) {
    const __mmask16 m = static_cast<__mmask16>((1u << (K - k)) - 1);  // masked-off lanes read as +0
    __m512 wv[R];
    for (int i = 0; i < R; ++i) wv[i] = _mm512_maskz_loadu_ps(m, w + i * K + k);
    for (int j = 0; j < MB; ++j) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + j * K + k);
      for (int i = 0; i < R; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < MB; ++j) out[i * MB + j] = hsum16(acc[i][j]);
}

// R weight rows from row n against all M x rows, in blocks of 4 x rows and a last one of 1..3.
template <int R>
void rows_block(const float* x, const float* wr, const float* bias, int64_t M, int64_t K, int64_t N,
                float* y, int64_t n) {
  float r[R * 4];
  const auto store = [&](int64_t mb, int64_t m0) {
    for (int i = 0; i < R; ++i)
      for (int64_t j = 0; j < mb; ++j)
        y[(m0 + j) * N + n + i] = r[i * mb + j] + (bias ? bias[n + i] : 0.f);
  };
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) {
    tile<R, 4>(wr, x + m * K, K, r);
    store(4, m);
  }
  const int64_t rest = M - m;
  if (rest == 3) tile<R, 3>(wr, x + m * K, K, r);
  if (rest == 2) tile<R, 2>(wr, x + m * K, K, r);
  if (rest == 1) tile<R, 1>(wr, x + m * K, K, r);
  if (rest > 0) store(rest, m);
}

}  // namespace

void linear_rows_avx512(const float* x, const float* w, const float* bias, int64_t M, int64_t K,
                        int64_t N, float* y, int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) rows_block<4>(x, w + n * K, bias, M, K, N, y, n);
  const int64_t rest = n1 - n;
  if (rest == 3) rows_block<3>(x, w + n * K, bias, M, K, N, y, n);
  if (rest == 2) rows_block<2>(x, w + n * K, bias, M, K, N, y, n);
  if (rest == 1) rows_block<1>(x, w + n * K, bias, M, K, N, y, n);
}

}  // namespace medr1::ops::backend
