// Private AVX2 helpers of the ops part's AVX2 backends (streaming_linear_avx2.cpp, decode_attention_avx2.cpp,
// greedy_avx2.cpp): runtime CPU check (ops/cpu_features.h), 8-lane fp32 loads from fp32 or bf16 (bf16 is the top
// half of an fp32, so widening is exact), horizontal sum. Functions carry target attributes, so the rest of the
// library builds without -mavx2.
#pragma once

#include <c10/util/BFloat16.h>

#include "medr1/ops/cpu_features.h"

#include <immintrin.h>

namespace medr1::ops::simd {

// The AVX2 + FMA kernels run when the CPU has them and MEDR1_CPU_ISA / set_cpu_isa_cap does not force the
// portable path (ops/cpu_features.h).
inline bool cpu_has_avx2_fma() { return cpu_isa_at_least(CpuIsa::Avx2); }

__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) inline __m256 load8(const c10::BFloat16* p) {
  // Zero-extend the 16-bit halves to 32 bits and shift them into the high half: exact.
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

inline float widen(float v) { return v; }
inline float widen(c10::BFloat16 v) { return static_cast<float>(v); }

}  // namespace medr1::ops::simd
