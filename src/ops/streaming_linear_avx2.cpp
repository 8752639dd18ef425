// AVX2 + FMA backend of the weight-streaming linear (see ops/linear.h, dispatched by streaming_linear.cpp): per
// weight row the x rows are handled in blocks of 4 so a loaded weight vector feeds 4 FMAs. bf16 weights are widened
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

// out[j] = dot(w[0:K], x[j*K : (j+1)*K]) for j < MB; x is fp32.
template <int MB, typename WT>
__attribute__((target("avx2,fma"))) void dot_block(const WT* w, const float* x, int64_t K, float* out) {
  __m256 acc[MB], acc2[MB];
  for (int j = 0; j < MB; ++j) acc[j] = acc2[j] = _mm256_setzero_ps();
  int64_t k = 0;
  // Two accumulator sets so M = 1 is not bound by the FMA latency.
  for (; k + 16 <= K; k += 16) {
    const __m256 w0 = load8(w + k), w1 = load8(w + k + 8);
    for (int j = 0; j < MB; ++j) {
      acc[j] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + j * K + k), acc[j]);
      acc2[j] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + j * K + k + 8), acc2[j]);
    }
  }
  for (; k + 8 <= K; k += 8) {
    const __m256 w0 = load8(w + k);
    for (int j = 0; j < MB; ++j) acc[j] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + j * K + k), acc[j]);
  }
  for (int j = 0; j < MB; ++j) {
    float s = hsum(_mm256_add_ps(acc[j], acc2[j]));
    for (int64_t kk = k; kk < K; ++kk) s += widen(w[kk]) * x[j * K + kk];
    out[j] = s;
  }
}

// out[i * 4 + j] = dot(w[i*K : (i+1)*K], x[j*K : (j+1)*K]) for 2 weight rows x 4 x rows: each weight and x load
// feeds 4 and 2 FMAs (the many-row case is otherwise bound by re-reading x).
template <typename WT>
__attribute__((target("avx2,fma"))) void dot_tile_2x4(const WT* w, const float* x, int64_t K, float* out) {
  __m256 acc[2][4];
  for (auto& a : acc)
    for (auto& v : a) v = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256 w0 = load8(w + k), w1 = load8(w + K + k);
    for (int j = 0; j < 4; ++j) {
      const __m256 xv = _mm256_loadu_ps(x + j * K + k);
      acc[0][j] = _mm256_fmadd_ps(w0, xv, acc[0][j]);
      acc[1][j] = _mm256_fmadd_ps(w1, xv, acc[1][j]);
    }
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t kk = k; kk < K; ++kk) s += widen(w[i * K + kk]) * x[j * K + kk];
      out[i * 4 + j] = s;
    }
}

// out[i] = dot(w[i*K : (i+1)*K], x[0:K]) for 4 weight rows and one x row: four independent streams keep more
// loads in flight than one row at a time (M = 1, the decode step).
template <typename WT>
__attribute__((target("avx2,fma"))) void dot_rows4_m1(const WT* w, const float* x, int64_t K, float* out) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256 xv = _mm256_loadu_ps(x + k);
    a0 = _mm256_fmadd_ps(load8(w + k), xv, a0);
    a1 = _mm256_fmadd_ps(load8(w + K + k), xv, a1);
    a2 = _mm256_fmadd_ps(load8(w + 2 * K + k), xv, a2);
    a3 = _mm256_fmadd_ps(load8(w + 3 * K + k), xv, a3);
  }
  out[0] = hsum(a0);
  out[1] = hsum(a1);
  out[2] = hsum(a2);
  out[3] = hsum(a3);
  for (int i = 0; i < 4; ++i)
    for (int64_t kk = k; kk < K; ++kk) out[i] += widen(w[i * K + kk]) * x[kk];
}

// Rows [n0, n1) of y = x W^T + b (M rows of x, N rows of W).
template <typename WT, typename OT>
void rows(const float* x, const WT* w, const float* bias, int64_t M, int64_t K, int64_t N, OT* y, int64_t n0,
          int64_t n1) {
  float r[8];
  int64_t n = n0;
  if (M == 1) {
    for (; n + 4 <= n1; n += 4) {
      dot_rows4_m1(w + n * K, x, K, r);
      for (int i = 0; i < 4; ++i) y[n + i] = static_cast<OT>(r[i] + (bias ? bias[n + i] : 0.f));
    }
  }
  if (M >= 4) {
    for (; n + 2 <= n1; n += 2) {  // pairs of weight rows: the 4-row x blocks take the 2x4 tile
      const WT* wr = w + n * K;
      const float b0 = bias ? bias[n] : 0.f, b1 = bias ? bias[n + 1] : 0.f;
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) {
        dot_tile_2x4(wr, x + m * K, K, r);
        for (int j = 0; j < 4; ++j) {
          y[(m + j) * N + n] = static_cast<OT>(r[j] + b0);
          y[(m + j) * N + n + 1] = static_cast<OT>(r[4 + j] + b1);
        }
      }
      for (int i = 0; i < 2; ++i) {
        const float b = i ? b1 : b0;
        for (int64_t mm = m; mm < M; ++mm) {
          dot_block<1>(wr + i * K, x + mm * K, K, r);
          y[mm * N + n + i] = static_cast<OT>(r[0] + b);
        }
      }
    }
  }
  for (; n < n1; ++n) {
    const WT* wr = w + n * K;
    const float b = bias ? bias[n] : 0.f;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) {
      dot_block<4>(wr, x + m * K, K, r);
      for (int j = 0; j < 4; ++j) y[(m + j) * N + n] = static_cast<OT>(r[j] + b);
    }
    const int64_t rest = M - m;
    if (rest == 3) dot_block<3>(wr, x + m * K, K, r);
    if (rest == 2) dot_block<2>(wr, x + m * K, K, r);
    if (rest == 1) dot_block<1>(wr, x + m * K, K, r);
    for (int64_t j = 0; j < rest; ++j) y[(m + j) * N + n] = static_cast<OT>(r[j] + b);
  }
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
