// Fused eager attention for decode steps (a few query positions against a KV cache) on CPU: the same arithmetic as
// HF eager attention (q k^T / sqrt(D) + mask, float32 softmax, probabilities in the activations' dtype, times v),
// with the GQA heads read in groups from the cache instead of repeat_kv copies, and no BLAS calls or temporaries:
// at S = 1 the eager path is a dozen tiny ops (two batched GEMMs of one row, the repeat copies, softmax), each
// dispatched and, on a loaded machine, each waking the thread pools. Inference only; anything else (and the portable
// path of ops/cpu_features.h) goes to eager. Backend: src/ops/decode_attention_avx2.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace medr1::ops {

// Query positions up to which the fused kernel is used (decode steps; prefills keep the GEMMs).
inline constexpr int64_t kDecodeAttentionMaxQuery = 16;

// q [B, H, S, D], k/v [B, Hkv, T, D] (H a multiple of Hkv; each kv head serves H/Hkv consecutive q heads),
// mask [B, 1, S, T] additive (or undefined = none) -> [B, H, S, D] in q's dtype. Float32 or bfloat16.
// For bfloat16 the intermediate roundings of the eager path are kept (scores rounded to bf16 after the product,
// the scaling and the mask addition; probabilities rounded to bf16), products are accumulated in float32.
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask);

// True when decode_attention takes these arguments (CPU, AVX2/FMA, no autograd, S <= kDecodeAttentionMaxQuery,
// float32/bfloat16, D a multiple of 8, unit stride on D).
bool decode_attention_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask);

}  // namespace medr1::ops
