// AVX2 + FMA backend of the fused decode-step attention (see ops/decode_attention.h, dispatched by
// decode_attention.cpp). One task per (batch row, kv head): the G query heads that share the kv head read its cached
// keys and values in place. Per query head: scores = q.k in float32 (AVX2 FMA), then the eager path's elementwise
// steps in its order and dtype (/ sqrt(D), + mask, float32 softmax, cast), then out = sum_t p_t v_t accumulated in
// float32 and rounded once to the activations' dtype.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/backends.h"
#include "ops/simd_avx2.h"

namespace medr1::ops::backend {
namespace {

using simd::hsum;
using simd::load8;
using simd::widen;

// Rounds to the activations' dtype and back (identity for float32).
inline float round_to(float v, float) { return v; }
inline float round_to(float v, c10::BFloat16) { return static_cast<float>(c10::BFloat16(v)); }

struct Strides {
  int64_t b, h, s;  // element strides of dims 0..2 (dim 3 is unit)
};

// One (batch row, kv head): G query heads x S positions against T keys. D % 8 == 0.
template <typename T>
__attribute__((target("avx2,fma"))) void attend_group(const T* q, Strides qs, const T* k, int64_t kt, const T* v,
                                                      int64_t vt, const T* mask, int64_t G, int64_t S, int64_t Tk,
                                                      int64_t D, float divisor, T* out, Strides os, float* scores,
                                                      float* acc) {
  for (int64_t j = 0; j < G; ++j) {
    for (int64_t s = 0; s < S; ++s) {
      const T* qp = q + j * qs.h + s * qs.s;
      const T* mrow = mask ? mask + s * Tk : nullptr;
      // scores: matmul (fp32 accumulation, rounded to the dtype), / sqrt(D), + mask, each rounded like eager.
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t t = 0; t < Tk; ++t) {
        const T* kp = k + t * kt;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        int64_t d = 0;
        for (; d + 16 <= D; d += 16) {
          a0 = _mm256_fmadd_ps(load8(qp + d), load8(kp + d), a0);
          a1 = _mm256_fmadd_ps(load8(qp + d + 8), load8(kp + d + 8), a1);
        }
        if (d < D) a0 = _mm256_fmadd_ps(load8(qp + d), load8(kp + d), a0);
        float sc = round_to(hsum(_mm256_add_ps(a0, a1)), T{});
        sc = round_to(sc / divisor, T{});
        if (mrow) sc = round_to(sc + widen(mrow[t]), T{});
        scores[t] = sc;
        mx = std::max(mx, sc);
      }
      // float32 softmax over the keys (all-masked rows still hold finite finfo.min values, as in eager).
      float sum = 0.f;
      for (int64_t t = 0; t < Tk; ++t) {
        scores[t] = std::exp(scores[t] - mx);
        sum += scores[t];
      }
      const float inv = 1.f / sum;
      for (int64_t t = 0; t < Tk; ++t) scores[t] = round_to(scores[t] * inv, T{});
      // out = p v, fp32 accumulation over the keys.
      std::fill(acc, acc + D, 0.f);
      for (int64_t t = 0; t < Tk; ++t) {
        const float p = scores[t];
        if (p == 0.f) continue;  // masked keys: exp underflowed to exactly 0
        const __m256 pv = _mm256_set1_ps(p);
        const T* vp = v + t * vt;
        for (int64_t d = 0; d < D; d += 8)
          _mm256_storeu_ps(acc + d, _mm256_fmadd_ps(pv, load8(vp + d), _mm256_loadu_ps(acc + d)));
      }
      T* op = out + j * os.h + s * os.s;
      for (int64_t d = 0; d < D; ++d) op[d] = static_cast<T>(acc[d]);
    }
  }
}

template <typename T>
void run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask, at::Tensor& out) {
  const int64_t B = q.size(0), H = q.size(1), S = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Tk = k.size(2), G = H / Hkv;
  const Strides qs{q.stride(0), q.stride(1), q.stride(2)};
  const Strides os{out.stride(0), out.stride(1), out.stride(2)};
  const T* qp = q.data_ptr<T>();
  const T* kp = k.data_ptr<T>();
  const T* vp = v.data_ptr<T>();
  const T* mp = mask.defined() ? mask.data_ptr<T>() : nullptr;
  T* optr = out.data_ptr<T>();
  // HF divides by math.sqrt(D), a Python float: LibTorch 2.x's CPU and CUDA division of a bf16 tensor by a scalar
  // computes in float32 with the scalar as float32 (its opmath type), not rounded to bf16 first.
  const float divisor = static_cast<float>(std::sqrt(static_cast<double>(D)));
  // Small problems stay on the calling thread: waking the pool costs more than ~1e5 FMAs.
  const int64_t work = G * S * Tk * D * 2;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, work));
  at::parallel_for(0, B * Hkv, grain, [&](int64_t i0, int64_t i1) {
    std::vector<float> scores(static_cast<size_t>(Tk)), acc(static_cast<size_t>(D));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / Hkv, g = i % Hkv;
      attend_group<T>(qp + b * qs.b + g * G * qs.h, qs, kp + b * k.stride(0) + g * k.stride(1), k.stride(2),
                      vp + b * v.stride(0) + g * v.stride(1), v.stride(2), mp ? mp + b * S * Tk : nullptr, G, S, Tk,
                      D, divisor, optr + b * os.b + g * G * os.h, os, scores.data(), acc.data());
    }
  });
}

}  // namespace

void decode_attention_avx2(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                           at::Tensor& out) {
  if (q.scalar_type() == at::kFloat) {
    run<float>(q, k, v, mask, out);
  } else {
    run<c10::BFloat16>(q, k, v, mask, out);
  }
}

}  // namespace medr1::ops::backend
