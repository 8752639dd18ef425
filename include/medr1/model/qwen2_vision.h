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
#include <string>
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
  at::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(Qwen2VisionRMSNorm);

class Qwen2VisionTransformerImpl : public torch::nn::Module {
 public:
  explicit Qwen2VisionTransformerImpl(const Qwen2VisionConfig& cfg);

  // pixel_values: [P, C*T*ps*ps] any float dtype (cast to the weights' dtype), processor order,
  //   images concatenated; grid_thw: [N, 3] int64 (t, h, w in patches), sum(t*h*w) == P.
  // Returns [P/4, hidden_size] image embeddings in LLM token order (images one after another).
  // Differentiable w.r.t. pixel_values and the parameters.
  at::Tensor forward(const at::Tensor& pixel_values, const at::Tensor& grid_thw,
                     Qwen2VisionDebug* debug = nullptr);

  // [P, Dh/2] float32 rotary angles (h-freqs then w-freqs) per patch, processor order.
  at::Tensor rot_pos_emb(const at::Tensor& grid_thw) const;
  // Qwen2.5-VL window permutation: window_index [P/4] int64 over merged units and
  // cu_window_seqlens (in patch rows, before unique_consecutive), as HF get_window_index.
  std::pair<at::Tensor, at::Tensor> get_window_index(const at::Tensor& grid_thw) const;

  const Qwen2VisionConfig& config() const { return cfg_; }

 private:
  Qwen2VisionConfig cfg_;
};
TORCH_MODULE(Qwen2VisionTransformer);

}  // namespace medr1::model
