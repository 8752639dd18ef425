// Qwen2VLForConditionalGeneration / Qwen2_5_VLForConditionalGeneration (transformers v4.49.0): the vision
// tower ("visual"), the text decoder ("model") and "lm_head" (absent when tie_word_embeddings; the logits then
// use model.embed_tokens.weight). Image embeddings replace the <|image_pad|> embeddings in order
// (masked_scatter); positions come from get_rope_index unless given. Differentiable (also w.r.t. pixel_values)
// when no KV cache is used. Letters: B = batch, S = new tokens, T = past + S, E = hidden_size, V = vocab.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "medr1/model/kv_cache.h"
#include "medr1/model/qwen2_text.h"
#include "medr1/model/qwen2_vision.h"
#include "medr1/model/qwen2_vl_config.h"

namespace medr1::model {

struct Qwen2VLInputs {
  at::Tensor input_ids;       // [B, S] int64 (required)
  at::Tensor pixel_values;    // [P, 1176] float, images of all rows concatenated (row 0 first); optional
  at::Tensor image_grid_thw;  // [N, 3] int64; required with pixel_values or image_embeds
  at::Tensor image_embeds;    // [N_tok, E] precomputed vision output (skips the tower); optional
  at::Tensor attention_mask;  // [B, T] 1/0, left padding; undefined = all ones
  at::Tensor position_ids;    // [3, B, S] int64; undefined = get_rope_index (prefill) or cache positions (decode)
  KVCache* cache = nullptr;   // nullable; filled at [cache->length(), +S) and advanced by S
  // Logits for positions [logits_from, S) only (negative counts from the end: -1 = last position);
  // compute_logits = false skips the lm_head entirely.
  int64_t logits_from = 0;
  bool compute_logits = true;
  bool output_hidden_states = false;
};

struct Qwen2VLOutput {
  at::Tensor logits;                      // [B, S - logits_from, V] in the model's dtype
  at::Tensor last_hidden_state;           // [B, S, E] after model.norm
  std::vector<at::Tensor> hidden_states;  // when asked: L+1 x [B, S, E] (embeds, layer outputs, normed final)
  at::Tensor position_ids;                // [3, B, S] int64 used
  at::Tensor rope_deltas;                 // [B, 1] int64 (from get_rope_index, or the cache's)
  at::Tensor image_embeds;                // [N_tok, E] vision output when pixel_values were given
};

class Qwen2VLForConditionalGenerationImpl : public torch::nn::Module {
 public:
  explicit Qwen2VLForConditionalGenerationImpl(const Qwen2VLConfig& cfg);

  Qwen2VLOutput forward(const Qwen2VLInputs& in);

  // Embeddings of input_ids with image embeddings scattered into the <|image_pad|> positions. [B, S, E]
  at::Tensor get_inputs_embeds(const at::Tensor& input_ids, const at::Tensor& image_embeds);
  // Vision tower on pixel_values (cast to the tower's dtype). [N_tok, E]
  at::Tensor get_image_features(const at::Tensor& pixel_values, const at::Tensor& image_grid_thw,
                                Qwen2VisionDebug* debug = nullptr);
  // hidden [.., E] -> logits [.., V] with lm_head or the tied embedding.
  at::Tensor lm_logits(const at::Tensor& hidden);

  const Qwen2VLConfig& config() const { return cfg_; }
  // Activation checkpointing of every decoder layer and vision block (HF gradient_checkpointing_enable);
  // only effective while the module is training with grad mode on (checkpoint.h).
  void set_gradient_checkpointing(bool on) {
    model->set_gradient_checkpointing(on);
    visual->set_gradient_checkpointing(on);
  }
  at::ScalarType dtype() const;

  Qwen2VisionTransformer visual{nullptr};
  Qwen2VLModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  Qwen2VLConfig cfg_;
};
TORCH_MODULE(Qwen2VLForConditionalGeneration);

}  // namespace medr1::model
