// Qwen2 text decoder of Qwen2-VL / Qwen2.5-VL (transformers v4.49.0 Qwen2VLModel / Qwen2_5_VLModel, eager
// attention): RMSNorm in float32, q/k/v with bias, GQA, M-RoPE, softmax in float32, SwiGLU MLP, additive
// masks with finfo(dtype).min. Module and parameter names equal the checkpoint's (`embed_tokens`,
// `layers.N.self_attn.q_proj`, ...). Letters: B = batch, S = query tokens, T = key tokens (past + S),
// H = heads, Hkv = kv heads, D = head_dim, E = hidden_size.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "medr1/model/kv_cache.h"
#include "medr1/model/lora.h"
#include "medr1/model/qwen2_vl_config.h"
#include "medr1/model/rope.h"

namespace medr1::model {

// Qwen2RMSNorm: weight * (x.float() * rsqrt(mean(x^2) + eps)).to(input dtype).
class Qwen2RMSNormImpl : public torch::nn::Module {
 public:
  Qwen2RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;  // [E]

 private:
  double eps_;
};
TORCH_MODULE(Qwen2RMSNorm);

// down_proj(silu(gate_proj(x)) * up_proj(x)), no biases.
class Qwen2MLPImpl : public torch::nn::Module {
 public:
  Qwen2MLPImpl(int64_t hidden, int64_t intermediate);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  // LoRA adapters of the projections (model/lora.h); null = none.
  LoraAdapterPtr gate_proj_lora, up_proj_lora, down_proj_lora;
};
TORCH_MODULE(Qwen2MLP);

class Qwen2VLAttentionImpl : public torch::nn::Module {
 public:
  Qwen2VLAttentionImpl(const Qwen2VLConfig& cfg, int64_t layer_idx);
  // x [B, S, E]; cos/sin [B, S, D]; mask [B, 1, S, T] additive (undefined = none); cache nullable.
  at::Tensor forward(const at::Tensor& x, const RopeCosSin& rope, const at::Tensor& mask, KVCache* cache);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  // LoRA adapters of the projections (model/lora.h); null = none.
  LoraAdapterPtr q_proj_lora, k_proj_lora, v_proj_lora, o_proj_lora;

 private:
  int64_t layer_idx_, n_heads_, n_kv_heads_, head_dim_;
};
TORCH_MODULE(Qwen2VLAttention);

class Qwen2VLDecoderLayerImpl : public torch::nn::Module {
 public:
  Qwen2VLDecoderLayerImpl(const Qwen2VLConfig& cfg, int64_t layer_idx);
  at::Tensor forward(const at::Tensor& x, const RopeCosSin& rope, const at::Tensor& mask, KVCache* cache);
  Qwen2VLAttention self_attn{nullptr};
  Qwen2MLP mlp{nullptr};
  Qwen2RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(Qwen2VLDecoderLayer);

struct Qwen2TextOutput {
  at::Tensor last_hidden_state;            // [B, S, E] after `norm`
  std::vector<at::Tensor> hidden_states;   // L+1 entries when asked: embeds, layer 0..L-2 outputs, normed final
};

// The `model.` sub-module: embed_tokens, layers, norm.
class Qwen2VLModelImpl : public torch::nn::Module {
 public:
  explicit Qwen2VLModelImpl(const Qwen2VLConfig& cfg);
  // inputs_embeds [B, S, E]; position_ids [3, B, S]; mask [B, 1, S, T] additive.
  Qwen2TextOutput forward(const at::Tensor& inputs_embeds, const at::Tensor& position_ids, const at::Tensor& mask,
                          KVCache* cache, bool output_hidden_states);
  // Activation checkpointing per decoder layer (checkpoint.h), effective only while training with grad mode
  // on and no KV cache (HF gradient_checkpointing_enable).
  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }
  bool gradient_checkpointing() const { return gradient_checkpointing_; }
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  Qwen2RMSNorm norm{nullptr};

 private:
  Qwen2VLConfig cfg_;
  std::vector<Qwen2VLDecoderLayer> layer_ptrs_;
  bool gradient_checkpointing_ = false;
};
TORCH_MODULE(Qwen2VLModel);

// The additive 4-D mask HF's _prepare_4d_causal_attention_mask_with_cache_position builds: key j is masked for
// query i when j > past_len + i (causal) or attention_mask[b, j] == 0 (padding); masked = finfo(dtype).min.
// attention_mask [B, T] 1/0 (undefined = all ones, T = past_len + S). -> [B, 1, S, T] of `dtype`.
at::Tensor make_causal_mask(const at::Tensor& attention_mask, int64_t batch, int64_t seq_len, int64_t past_len,
                            at::ScalarType dtype, at::Device device);

// Eager attention as HF: softmax(q k^T / sqrt(D) + mask) v with the softmax in float32, kv heads repeated (decode
// steps on CPU through the fused kernel of ops/decode_attention.h, same arithmetic).
// q [B, H, S, D], k/v [B, Hkv, T, D], mask [B, 1, S, T] or undefined. -> [B, H, S, D]
at::Tensor eager_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask);
// The same through at::scaled_dot_product_attention (GQA in the kernel).
at::Tensor sdpa_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask);
// What the decoder runs: sdpa_attention or eager_attention as model/attention.h's setting says for q's device.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask);

}  // namespace medr1::model
