// Qwen2 text decoder of Qwen2-VL / Qwen2.5-VL (transformers v4.49.0, eager attention semantics).
#include "medr1/model/qwen2_text.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "medr1/core/error.h"
#include "medr1/model/attention.h"
#include "medr1/model/checkpoint.h"
#include "medr1/ops/cpu_math_warmup.h"
#include "medr1/ops/decode_attention.h"
#include "medr1/ops/gemm.h"
#include "medr1/ops/linear.h"

namespace medr1::model {

Qwen2RMSNormImpl::Qwen2RMSNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor Qwen2RMSNormImpl::forward(const at::Tensor& x) {
  const auto in_dtype = x.scalar_type();
  at::Tensor h = x.to(at::kFloat);
  at::Tensor var = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(var + eps_);
  // HF: self.weight * hidden_states.to(input_dtype) (the product runs in the weight's dtype).
  return weight * h.to(in_dtype);
}

Qwen2MLPImpl::Qwen2MLPImpl(int64_t hidden, int64_t intermediate) {
  gate_proj = register_module("gate_proj", torch::nn::Linear(torch::nn::LinearOptions(hidden, intermediate).bias(false)));
  up_proj = register_module("up_proj", torch::nn::Linear(torch::nn::LinearOptions(hidden, intermediate).bias(false)));
  down_proj = register_module("down_proj", torch::nn::Linear(torch::nn::LinearOptions(intermediate, hidden).bias(false)));
}

namespace {

// silu(g) * u. For a decode step with a batch of rows ([B, 1, I], up to 16 rows) the product is run in slices of
// whole rows below ATen's elementwise grain (32768): the same kernels with the same roundings, on the calling
// thread, instead of two passes of ~0.1 ms that each wake the intra-op pool (milliseconds on a loaded machine).
at::Tensor silu_mul(const at::Tensor& g, const at::Tensor& u) {
  constexpr int64_t kGrain = 32768;  // at::internal::GRAIN_SIZE
  const int64_t I = g.dim() > 0 ? g.size(-1) : 1;
  const int64_t rows = I > 0 ? g.numel() / I : 0;
  // Whole vector blocks per slice (I % 64 == 0, as 8960), so no element moves between ATen's vector loop and its
  // scalar tail: results identical to the unsliced ops.
  if (g.numel() <= kGrain || rows > 16 || I > kGrain || I % 64 != 0 || !g.is_contiguous() || !u.is_contiguous() ||
      g.sizes() != u.sizes() || (at::GradMode::is_enabled() && (g.requires_grad() || u.requires_grad())))
    return at::silu(g) * u;
  at::Tensor g2 = g.view({rows, I}), u2 = u.view({rows, I});
  at::Tensor h = at::empty_like(g2);
  const int64_t per = kGrain / I;
  for (int64_t r = 0; r < rows; r += per) {
    const int64_t n = std::min(per, rows - r);
    at::Tensor hs = h.narrow(0, r, n);
    at::silu_out(hs, g2.narrow(0, r, n));
    hs.mul_(u2.narrow(0, r, n));
  }
  return h.view(g.sizes());
}

}  // namespace

at::Tensor Qwen2MLPImpl::forward(const at::Tensor& x) {
  // ops::linear(_group): the weight-streaming kernel for decode steps (gate and up in one pass), ops::gemm_linear
  // otherwise.
  std::vector<at::Tensor> gu =
      ops::linear_group(x, {gate_proj->weight, up_proj->weight}, {gate_proj->bias, up_proj->bias});
  if (gate_proj_lora) gu[0] = gate_proj_lora->apply(gu[0], x);
  if (up_proj_lora) gu[1] = up_proj_lora->apply(gu[1], x);
  at::Tensor h = silu_mul(gu[0], gu[1]);
  at::Tensor y = ops::linear(h, down_proj->weight, down_proj->bias);
  return down_proj_lora ? down_proj_lora->apply(y, h) : y;
}

Qwen2VLAttentionImpl::Qwen2VLAttentionImpl(const Qwen2VLConfig& cfg, int64_t layer_idx)
    : layer_idx_(layer_idx),
      n_heads_(cfg.num_attention_heads),
      n_kv_heads_(cfg.num_key_value_heads),
      head_dim_(cfg.head_dim()) {
  const int64_t E = cfg.hidden_size;
  q_proj = register_module("q_proj", torch::nn::Linear(torch::nn::LinearOptions(E, n_heads_ * head_dim_).bias(true)));
  k_proj = register_module("k_proj", torch::nn::Linear(torch::nn::LinearOptions(E, n_kv_heads_ * head_dim_).bias(true)));
  v_proj = register_module("v_proj", torch::nn::Linear(torch::nn::LinearOptions(E, n_kv_heads_ * head_dim_).bias(true)));
  o_proj = register_module("o_proj", torch::nn::Linear(torch::nn::LinearOptions(n_heads_ * head_dim_, E).bias(false)));
}

at::Tensor eager_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  // Decode steps (few query rows, inference): one fused kernel with the same arithmetic, GQA read in place.
  if (ops::decode_attention_applies(q, k, v, mask)) return ops::decode_attention(q, k, v, mask);
  const int64_t B = k.size(0), Hkv = k.size(1), T = k.size(2), D = k.size(3);
  const int64_t H = q.size(1), G = H / Hkv;
  at::Tensor kk = k, vv = v;
  if (G > 1) {  // repeat_kv: [B, Hkv, T, D] -> [B, Hkv*G, T, D], each kv head serving G consecutive q heads
    kk = k.unsqueeze(2).expand({B, Hkv, G, T, D}).reshape({B, H, T, D});
    vv = v.unsqueeze(2).expand({B, Hkv, G, T, D}).reshape({B, H, T, D});
  }
  at::Tensor w = ops::matmul(q, kk.transpose(2, 3)) / std::sqrt(static_cast<double>(D));  // [B, H, S, T]
  if (mask.defined()) w = w + mask;
  // Softmax in float32, then back to the activations' dtype (HF eager).
  w = at::softmax(w, -1, at::kFloat).to(q.scalar_type());
  return ops::matmul(w, vv);  // [B, H, S, D]
}

at::Tensor sdpa_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  // GQA in the kernel (enable_gqa): no repeat_kv copies. Additive mask, default scale 1/sqrt(D). On CUDA the
  // flash / memory-efficient kernels where dtype and mask allow, ATen's fused CPU kernel on CPU.
  return at::scaled_dot_product_attention(q, k, v, mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt,
                                          /*dropout_p=*/0.0, /*is_causal=*/false, /*scale=*/std::nullopt,
                                          /*enable_gqa=*/q.size(1) != k.size(1));
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  return use_sdpa_for(q) ? sdpa_attention(q, k, v, mask) : eager_attention(q, k, v, mask);
}

at::Tensor Qwen2VLAttentionImpl::forward(const at::Tensor& x, const RopeCosSin& rope, const at::Tensor& mask,
                                         KVCache* cache) {
  const int64_t B = x.size(0), S = x.size(1);
  // q, k and v in one pass of the weight-streaming kernel on decode steps (ops::gemm_linear otherwise).
  std::vector<at::Tensor> qkv = ops::linear_group(x, {q_proj->weight, k_proj->weight, v_proj->weight},
                                                  {q_proj->bias, k_proj->bias, v_proj->bias});
  if (q_proj_lora) qkv[0] = q_proj_lora->apply(qkv[0], x);
  if (k_proj_lora) qkv[1] = k_proj_lora->apply(qkv[1], x);
  if (v_proj_lora) qkv[2] = v_proj_lora->apply(qkv[2], x);
  at::Tensor q = qkv[0].view({B, S, n_heads_, head_dim_}).transpose(1, 2);     // [B, H, S, D]
  at::Tensor k = qkv[1].view({B, S, n_kv_heads_, head_dim_}).transpose(1, 2);  // [B, Hkv, S, D]
  at::Tensor v = qkv[2].view({B, S, n_kv_heads_, head_dim_}).transpose(1, 2);  // [B, Hkv, S, D]
  q = apply_multimodal_rotary_pos_emb(q, rope);
  k = apply_multimodal_rotary_pos_emb(k, rope);
  if (cache) std::tie(k, v) = cache->update(layer_idx_, k, v);  // [B, Hkv, T, D]
  at::Tensor o = attention(q, k, v, mask);                       // [B, H, S, D]
  o = o.transpose(1, 2).reshape({B, S, n_heads_ * head_dim_});   // [B, S, H*D]
  at::Tensor y = ops::linear(o, o_proj->weight, o_proj->bias);
  return o_proj_lora ? o_proj_lora->apply(y, o) : y;
}

Qwen2VLDecoderLayerImpl::Qwen2VLDecoderLayerImpl(const Qwen2VLConfig& cfg, int64_t layer_idx) {
  self_attn = register_module("self_attn", Qwen2VLAttention(cfg, layer_idx));
  mlp = register_module("mlp", Qwen2MLP(cfg.hidden_size, cfg.intermediate_size));
  input_layernorm = register_module("input_layernorm", Qwen2RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", Qwen2RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
}

at::Tensor Qwen2VLDecoderLayerImpl::forward(const at::Tensor& x, const RopeCosSin& rope, const at::Tensor& mask,
                                            KVCache* cache) {
  at::Tensor h = x + self_attn->forward(input_layernorm->forward(x), rope, mask, cache);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

Qwen2VLModelImpl::Qwen2VLModelImpl(const Qwen2VLConfig& cfg) : cfg_(cfg) {
  ops::warm_up_cpu_math();  // MKL VML first calls on one thread (ops/cpu_math_warmup.h)
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(cfg.vocab_size, cfg.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    Qwen2VLDecoderLayer layer(cfg, l);
    layers->push_back(layer);
    layer_ptrs_.push_back(layer);
  }
  norm = register_module("norm", Qwen2RMSNorm(cfg.hidden_size, cfg.rms_norm_eps));
}

Qwen2TextOutput Qwen2VLModelImpl::forward(const at::Tensor& inputs_embeds, const at::Tensor& position_ids,
                                          const at::Tensor& mask, KVCache* cache, bool output_hidden_states) {
  Qwen2TextOutput out;
  // cos/sin computed once per forward in float32, cast to the activations' dtype (HF rotary_emb).
  RopeCosSin rope = mrope_cos_sin(position_ids, cfg_.mrope_section, cfg_.head_dim(), cfg_.rope_theta,
                                  inputs_embeds.scalar_type());
  at::Tensor h = inputs_embeds;
  for (auto& layer : layer_ptrs_) {
    if (output_hidden_states) out.hidden_states.push_back(h);
    if (gradient_checkpointing_ && !cache) {  // checkpoint() runs the block plainly when not training
      auto impl = layer.ptr();  // rope and mask are constants of the block, captured by value
      auto fn = [impl, rope, mask](const at::Tensor& x) { return impl->forward(x, rope, mask, nullptr); };
      h = checkpoint(*impl, fn, h);
    } else {
      h = layer->forward(h, rope, mask, cache);
    }
  }
  h = norm->forward(h);
  if (output_hidden_states) out.hidden_states.push_back(h);
  out.last_hidden_state = h;
  return out;
}

at::Tensor make_causal_mask(const at::Tensor& attention_mask, int64_t batch, int64_t seq_len, int64_t past_len,
                            at::ScalarType dtype, at::Device device) {
  const int64_t T = past_len + seq_len;
  const double min_v = dtype == at::kBFloat16 ? -3.3895313892515355e38
                       : dtype == at::kHalf   ? -65504.0
                                              : static_cast<double>(std::numeric_limits<float>::lowest());
  auto lopt = at::TensorOptions().dtype(at::kLong).device(device);
  at::Tensor key = at::arange(T, lopt).view({1, T});                        // [1, T]
  at::Tensor qpos = (at::arange(seq_len, lopt) + past_len).view({seq_len, 1});  // [S, 1]
  at::Tensor masked = (key > qpos).view({1, 1, seq_len, T}).expand({batch, 1, seq_len, T});  // [B, 1, S, T]
  if (attention_mask.defined()) {
    MEDR1_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == batch && attention_mask.size(1) == T,
                "attention_mask must be [", batch, ", ", T, "] (past + new tokens), got ", attention_mask.sizes());
    masked = masked.logical_or((attention_mask.to(device) == 0).view({batch, 1, 1, T}));
  }
  return at::zeros({batch, 1, seq_len, T}, at::TensorOptions().dtype(dtype).device(device))
      .masked_fill(masked, min_v);
}

}  // namespace medr1::model
