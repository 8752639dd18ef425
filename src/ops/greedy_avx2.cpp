// AVX2 + FMA backend of the greedy step (see ops/greedy.h, dispatched by greedy.cpp): the sum of exp(x - max)
// over a row of logits, 8 lanes at a time with a polynomial exp, accumulated in double.
#include <c10/util/BFloat16.h>

#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "ops/backends.h"
#include "ops/simd_avx2.h"

namespace medr1::ops::backend {
namespace {

using simd::load8;
using simd::widen;

// exp(x) for x <= 0 (x - max of the row), within ~2 ulp: 2^n * p(r), r = x - n ln2 split in two parts,
// p the degree-6 polynomial of expf. Below -87.3 the result is ~1e-38 instead of 0: nothing against sums >= 1.
__attribute__((target("avx2,fma"))) inline __m256 exp_nonpos(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// sum_v exp(x[v] - mx) over a row, accumulated in double.
template <typename T>
__attribute__((target("avx2,fma"))) double sum_exp(const T* x, int64_t V, float mx) {
  const __m256 m = _mm256_set1_ps(mx);
  __m256d a0 = _mm256_setzero_pd(), a1 = a0;
  int64_t v = 0;
  for (; v + 8 <= V; v += 8) {
    const __m256 e = exp_nonpos(_mm256_sub_ps(load8(x + v), m));
    a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double t[4];
  _mm256_store_pd(t, _mm256_add_pd(a0, a1));
  double sum = t[0] + t[1] + t[2] + t[3];
  for (; v < V; ++v) sum += std::exp(widen(x[v]) - mx);
  return sum;
}

}  // namespace

double sum_exp_avx2(const float* x, int64_t V, float mx) { return sum_exp(x, V, mx); }
double sum_exp_avx2(const c10::BFloat16* x, int64_t V, float mx) { return sum_exp(x, V, mx); }

}  // namespace medr1::ops::backend
