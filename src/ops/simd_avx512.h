// Private AVX-512 helpers of the ops part's AVX-512 backends (streaming_linear_avx512.cpp,
// streaming_linear_avx512bf16.cpp). Functions carry target attributes (avx512f only, so callers
// with wider targets inline them), so the rest of the library builds without -mavx512f.
#pragma once

#include <immintrin.h>

namespace medr1::ops::simd {

// Sum of 16 fp32 lanes. The masked extracts: the plain ones (and _mm512_castps512_ps256,
// _mm512_reduce_add_ps) take _mm*_undefined_* operands in GCC 12's headers, which trips
// -Wuninitialized.
__attribute__((target("avx512f"))) inline float hsum16(__m512 v) {
  const __m512d d = _mm512_castps_pd(v);
  const __m256 lo = _mm256_castpd_ps(_mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xF, d, 0));
  const __m256 hi = _mm256_castpd_ps(_mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xF, d, 1));
  const __m256 h = _mm256_add_ps(lo, hi);
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
  return _mm_cvtss_f32(q);
}

}  // namespace medr1::ops::simd
