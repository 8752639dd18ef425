// AVX512-BF16 backend of the weight-streaming linear (see ops/linear.h, dispatched by streaming_linear.cpp): bf16
// inputs of 1..kStreamingLinearMaxRowsBf16Dot rows, x and weights both bf16, VDPBF16PS multiplying bf16 pairs and
// summing them into fp32 accumulators; the output is rounded once to bf16, bias added before the rounding.
#include <c10/util/BFloat16.h>

#include <immintrin.h>

#include <cstdint>

#include "ops/backends.h"
#include "ops/simd_avx512.h"

namespace medr1::ops::backend {
namespace {

#define MEDR1_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

using simd::hsum16;

MEDR1_AVX512BF16 inline __m512bh load32(const c10::BFloat16* p) { return (__m512bh)_mm512_loadu_si512(p); }
MEDR1_AVX512BF16 inline __m512bh load32(const c10::BFloat16* p, __mmask32 m) {
  return (__m512bh)_mm512_maskz_loadu_epi16(m, p);  // masked-off lanes read as +0, adding nothing
}

// out[i * MX + j] = dot(w row i, x row j) over K for RW weight rows and MX x rows, all bf16, fp32 accumulation.
template <int RW, int MX>
MEDR1_AVX512BF16 void dp_tile(const c10::BFloat16* w, const c10::BFloat16* x, int64_t K, float* out) {
  __m512 acc[RW][MX];
  for (int i = 0; i < RW; ++i)
    for (int j = 0; j < MX; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512bh wv[RW];
    for (int i = 0; i < RW; ++i) wv[i] = load32(w + i * K + k);
    for (int j = 0; j < MX; ++j) {
      const __m512bh xv = load32(x + j * K + k);
      for (int i = 0; i < RW; ++i) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv[i], xv);
    }
  }
  if (k < K) {
    const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << (K - k)) - 1);
    __m512bh wv[RW];
    for (int i = 0; i < RW; ++i) wv[i] = load32(w + i * K + k, m);
    for (int j = 0; j < MX; ++j) {
      const __m512bh xv = load32(x + j * K + k, m);
      for (int i = 0; i < RW; ++i) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv[i], xv);
    }
  }
  for (int i = 0; i < RW; ++i)
    for (int j = 0; j < MX; ++j) out[i * MX + j] = hsum16(acc[i][j]);
}

// rows() for bf16 x and weights on the dot-product path: 2 weight rows x 4 x rows per tile.
template <int RW>
void dp_rows_block(const c10::BFloat16* x, const c10::BFloat16* wr, const float* bias, int64_t M, int64_t K,
                   int64_t N, c10::BFloat16* y, int64_t n) {
  float r[RW * 4];
  int64_t m = 0;
  const auto store = [&](int64_t mx, int64_t m0) {
    for (int i = 0; i < RW; ++i)
      for (int64_t j = 0; j < mx; ++j)
        y[(m0 + j) * N + n + i] = static_cast<c10::BFloat16>(r[i * mx + j] + (bias ? bias[n + i] : 0.f));
  };
  for (; m + 4 <= M; m += 4) {
    dp_tile<RW, 4>(wr, x + m * K, K, r);
    store(4, m);
  }
  const int64_t rest = M - m;
  if (rest == 3) dp_tile<RW, 3>(wr, x + m * K, K, r);
  if (rest == 2) dp_tile<RW, 2>(wr, x + m * K, K, r);
  if (rest == 1) dp_tile<RW, 1>(wr, x + m * K, K, r);
  if (rest > 0) store(rest, m);
}

}  // namespace

void linear_rows_avx512bf16(const c10::BFloat16* x, const c10::BFloat16* w, const float* bias, int64_t M, int64_t K,
                            int64_t N, c10::BFloat16* y, int64_t n0, int64_t n1) {
  int64_t n = n0;
  if (M == 1) {  // decode at batch 1: four weight streams in flight against the one x row
    for (; n + 4 <= n1; n += 4) dp_rows_block<4>(x, w + n * K, bias, M, K, N, y, n);
  }
  for (; n + 2 <= n1; n += 2) dp_rows_block<2>(x, w + n * K, bias, M, K, N, y, n);
  for (; n < n1; ++n) dp_rows_block<1>(x, w + n * K, bias, M, K, N, y, n);
}

}  // namespace medr1::ops::backend
