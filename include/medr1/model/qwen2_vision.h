// Vision tower of Qwen2-VL and Qwen2.5-VL (one class, the differences are flags of the config).
// Mirrors transformers v4.49.0 Qwen2VisionTransformerPretrainedModel and
// Qwen2_5_VisionTransformerPretrainedModel: Conv3d patch embedding (as a matmul), 2-D rotary,
// block-diagonal attention per image (and per window for Qwen2.5-VL), PatchMerger.
// Parameter names equal the checkpoint's `visual.*` names without the `visual.` prefix.
// Letters: P = patch rows, N = images, D = embed_dim, H = heads, Dh = head_dim, M = P/4 merged rows.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace medr1::model {

// `vision_config` of config.json, normalised across the two model families.
struct Qwen2VisionConfig {
  bool is_qwen2_5 = false;
  int64_t depth = 32;
  int64_t embed_dim = 1280;    // Qwen2-VL `embed_dim`; Qwen2.5-VL `hidden_size`
  int64_t hidden_size = 3584;  // Qwen2-VL `hidden_size`; Qwen2.5-VL `out_hidden_size` (LLM width)
  int64_t num_heads = 16;
  int64_t in_channels = 3;
  int64_t patch_size = 14;
  int64_t spatial_merge_size = 2;
  int64_t temporal_patch_size = 2;
  int64_t mlp_hidden = 5120;  // Qwen2-VL embed_dim*mlp_ratio; Qwen2.5-VL `intermediate_size`
  std::string hidden_act = "quick_gelu";  // Qwen2-VL: quick_gelu; Qwen2.5-VL: silu
  int64_t window_size = 112;                    // Qwen2.5-VL only (pixels)
  std::vector<int64_t> fullatt_block_indexes;   // Qwen2.5-VL only
  double norm_eps = 1e-6;  // LayerNorm (Qwen2-VL) / RMSNorm (Qwen2.5-VL) eps; HF hard-codes 1e-6

  int64_t head_dim() const { return embed_dim / num_heads; }
  int64_t patch_dim() const { return in_channels * temporal_patch_size * patch_size * patch_size; }
};

// Parses `vision_config` with HF field names and HF defaults. Qwen2-VL reads embed_dim,
// hidden_size, mlp_ratio; Qwen2.5-VL reads hidden_size, out_hidden_size, intermediate_size,
// window_size, fullatt_block_indexes. Errors name `file_for_errors` and the dotted path, e.g.
// "config.json: vision_config.depth: expected integer, got string".
Qwen2VisionConfig parse_vision_config(const nlohmann::json& vision_config, bool is_qwen2_5,
                                      const std::string& file_for_errors);

// Intermediates of one forward, filled when a pointer is passed (for parity tests / debugging).
// Row orders are those of the reference's golden tensors.
struct Qwen2VisionDebug {
  at::Tensor rot_pos_emb;                // [P, Dh/2] float32 rotary angles, patch (processor) order
  at::Tensor patch_embed;                // [P, D] patch embedding, processor order
  std::vector<at::Tensor> block_outputs; // depth x [P, D], WINDOW-permuted order for Qwen2.5-VL
  at::Tensor merger_out_window_order;    // [M, hidden_size] merger output before un-permuting
  at::Tensor window_index;               // [M] int64 (Qwen2.5-VL; undefined for Qwen2-VL)
  at::Tensor cu_window_seqlens;          // int64, BEFORE unique_consecutive (Qwen2.5-VL only)
  at::Tensor cu_seqlens;                 // [N*t+1] int64 per-frame boundaries in patch rows
};

// RMSNorm with a weight only, computed in float32 like HF Qwen2RMSNorm (output in input dtype).
class Qwen2VisionRMSNormImpl : public torch::nn::Module {
 public:
  Qwen2VisionRMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;  // [D]

 private:
  double eps_;
};
TORCH_MODULE(Qwen2VisionRMSNorm);

// Conv3d(in, D, kernel = stride = (T, ps, ps), bias=False) on rows that are exactly one kernel
// each, i.e. a matmul with the weight viewed [D, C*T*ps*ps]. Keeps the checkpoint's 5-D shape.
class Qwen2VisionPatchEmbedProjImpl : public torch::nn::Module {
 public:
  Qwen2VisionPatchEmbedProjImpl(int64_t in_channels, int64_t embed_dim, int64_t temporal_patch_size,
                                int64_t patch_size);
  at::Tensor forward(const at::Tensor& x);  // [P, C*T*ps*ps] -> [P, D]
  at::Tensor weight;                        // [D, C, T, ps, ps]
};
TORCH_MODULE(Qwen2VisionPatchEmbedProj);

// `patch_embed` (only holds `proj`).
class Qwen2VisionPatchEmbedImpl : public torch::nn::Module {
 public:
  explicit Qwen2VisionPatchEmbedImpl(const Qwen2VisionConfig& cfg);
  at::Tensor forward(const at::Tensor& pixel_values);  // [P, C*T*ps*ps] -> [P, D]
  Qwen2VisionPatchEmbedProj proj{nullptr};
};
TORCH_MODULE(Qwen2VisionPatchEmbed);

// `blocks.N.attn`: qkv (bias) -> 2-D rotary on q, k (float32) -> attention within each segment of
// `seg_lens` (consecutive row ranges: frames, or windows) -> proj.
class Qwen2VisionAttentionImpl : public torch::nn::Module {
 public:
  Qwen2VisionAttentionImpl(int64_t dim, int64_t num_heads);
  // x [P, D]; cos, sin [P, Dh] float32; seg_lens sums to P.
  at::Tensor forward(const at::Tensor& x, const std::vector<int64_t>& seg_lens, const at::Tensor& cos,
                     const at::Tensor& sin);
  torch::nn::Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t num_heads_, head_dim_;
};
TORCH_MODULE(Qwen2VisionAttention);

// `blocks.N.mlp`: fc1 -> act -> fc2 (Qwen2-VL) or down(act(gate) * up) with biases (Qwen2.5-VL).
class Qwen2VisionMlpImpl : public torch::nn::Module {
 public:
  explicit Qwen2VisionMlpImpl(const Qwen2VisionConfig& cfg);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};                             // Qwen2-VL
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};  // Qwen2.5-VL

 private:
  std::string act_;
};
TORCH_MODULE(Qwen2VisionMlp);

// `blocks.N`: x + attn(norm1(x)); x + mlp(norm2(x)). LayerNorm (Qwen2-VL) or RMSNorm (2.5).
class Qwen2VisionBlockImpl : public torch::nn::Module {
 public:
  explicit Qwen2VisionBlockImpl(const Qwen2VisionConfig& cfg);
  at::Tensor forward(const at::Tensor& x, const std::vector<int64_t>& seg_lens, const at::Tensor& cos,
                     const at::Tensor& sin);
  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};    // registered as norm1/norm2 (Qwen2-VL)
  Qwen2VisionRMSNorm rms1{nullptr}, rms2{nullptr};    // registered as norm1/norm2 (Qwen2.5-VL)
  Qwen2VisionAttention attn{nullptr};
  Qwen2VisionMlp mlp{nullptr};
};
TORCH_MODULE(Qwen2VisionBlock);

// `merger`: ln_q -> view [-1, D*merge^2] -> mlp.0 -> exact GELU -> mlp.2.
class Qwen2VisionPatchMergerImpl : public torch::nn::Module {
 public:
  explicit Qwen2VisionPatchMergerImpl(const Qwen2VisionConfig& cfg);
  at::Tensor forward(const at::Tensor& x);  // [P, D] -> [P/4, hidden_size]
  torch::nn::LayerNorm ln_q_ln{nullptr};    // registered as ln_q (Qwen2-VL)
  Qwen2VisionRMSNorm ln_q_rms{nullptr};     // registered as ln_q (Qwen2.5-VL)
  std::shared_ptr<torch::nn::Module> mlp;   // holds "0" and "2"
  torch::nn::Linear mlp0{nullptr}, mlp2{nullptr};

 private:
  int64_t in_dim_;
};
TORCH_MODULE(Qwen2VisionPatchMerger);

class Qwen2VisionTransformerImpl : public torch::nn::Module {
 public:
  explicit Qwen2VisionTransformerImpl(const Qwen2VisionConfig& cfg);

  // pixel_values: [P, C*T*ps*ps] any float dtype (cast to the weights' dtype and device),
  //   processor order, images concatenated; grid_thw: [N, 3] integer (t, h, w in patches),
  //   sum(t*h*w) == P.
  // Returns [P/4, hidden_size] image embeddings in LLM token order (images one after another).
  // Differentiable w.r.t. pixel_values and the parameters.
  at::Tensor forward(const at::Tensor& pixel_values, const at::Tensor& grid_thw,
                     Qwen2VisionDebug* debug = nullptr);

  // [P, Dh/2] float32 rotary angles (h-freqs then w-freqs) per patch, processor order.
  at::Tensor rot_pos_emb(const at::Tensor& grid_thw) const;
  // Qwen2.5-VL window permutation as HF get_window_index: window_index [P/4] int64 over merged
  // units and cu_window_seqlens [W+1] int64 in patch rows (before unique_consecutive).
  std::pair<at::Tensor, at::Tensor> get_window_index(const at::Tensor& grid_thw) const;

  const Qwen2VisionConfig& config() const { return cfg_; }
  // Activation checkpointing per block (checkpoint.h), effective only while training with grad mode on.
  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }
  bool gradient_checkpointing() const { return gradient_checkpointing_; }

  Qwen2VisionPatchEmbed patch_embed{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  Qwen2VisionPatchMerger merger{nullptr};

 private:
  Qwen2VisionConfig cfg_;
  bool gradient_checkpointing_ = false;
};
TORCH_MODULE(Qwen2VisionTransformer);

}  // namespace medr1::model
