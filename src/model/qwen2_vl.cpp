// Qwen2-VL / Qwen2.5-VL ForConditionalGeneration wrapper (transformers v4.49.0 forward semantics).
#include "medr1/model/qwen2_vl.h"

#include <ATen/ATen.h>

#include "medr1/core/error.h"
#include "medr1/model/rope.h"
#include "medr1/ops/linear.h"

namespace medr1::model {

Qwen2VLForConditionalGenerationImpl::Qwen2VLForConditionalGenerationImpl(const Qwen2VLConfig& cfg) : cfg_(cfg) {
  visual = register_module(
      "visual", Qwen2VisionTransformer(parse_vision_config(cfg.vision_config, cfg.version == QwenVLVersion::Qwen2_5VL,
                                                           "config.json")));
  model = register_module("model", Qwen2VLModel(cfg));
  if (!cfg.tie_word_embeddings) {
    lm_head = register_module("lm_head",
                              torch::nn::Linear(torch::nn::LinearOptions(cfg.hidden_size, cfg.vocab_size).bias(false)));
  }
}

at::ScalarType Qwen2VLForConditionalGenerationImpl::dtype() const {
  return model->embed_tokens->weight.scalar_type();
}

at::Tensor Qwen2VLForConditionalGenerationImpl::get_image_features(const at::Tensor& pixel_values,
                                                                   const at::Tensor& image_grid_thw,
                                                                   Qwen2VisionDebug* debug) {
  MEDR1_CHECK(image_grid_thw.defined(), "Qwen2VL forward: pixel_values given without image_grid_thw");
  // HF: pixel_values.type(self.visual.get_dtype()).
  at::Tensor pv = pixel_values.to(visual->patch_embed->proj->weight.scalar_type());
  return visual->forward(pv, image_grid_thw, debug);
}

at::Tensor Qwen2VLForConditionalGenerationImpl::get_inputs_embeds(const at::Tensor& input_ids,
                                                                  const at::Tensor& image_embeds) {
  at::Tensor emb = model->embed_tokens->forward(input_ids);  // [B, S, E]
  if (!image_embeds.defined()) return emb;
  at::Tensor is_img = input_ids == cfg_.image_token_id;     // [B, S]
  const int64_t n_tok = is_img.sum().item<int64_t>();
  MEDR1_CHECK(n_tok == image_embeds.size(0), "Image features and image tokens do not match: tokens: ", n_tok,
              ", features ", image_embeds.size(0));
  at::Tensor mask = is_img.unsqueeze(-1).expand_as(emb);
  return emb.masked_scatter(mask, image_embeds.to(emb.device(), emb.scalar_type()));
}

at::Tensor Qwen2VLForConditionalGenerationImpl::lm_logits(const at::Tensor& hidden) {
  // Decode steps take the weight-streaming kernel (the lm_head is the largest matrix of the model).
  if (lm_head) return ops::linear(hidden, lm_head->weight, lm_head->bias);
  return ops::linear(hidden, model->embed_tokens->weight);
}

Qwen2VLOutput Qwen2VLForConditionalGenerationImpl::forward(const Qwen2VLInputs& in) {
  MEDR1_CHECK(in.input_ids.defined() && in.input_ids.dim() == 2, "Qwen2VL forward: input_ids must be [B, S]");
  const int64_t B = in.input_ids.size(0), S = in.input_ids.size(1);
  const int64_t past = in.cache ? in.cache->length() : 0;
  Qwen2VLOutput out;

  at::Tensor image_embeds = in.image_embeds;
  if (!image_embeds.defined() && in.pixel_values.defined()) {
    image_embeds = get_image_features(in.pixel_values, in.image_grid_thw);
    out.image_embeds = image_embeds;
  }
  at::Tensor embeds = get_inputs_embeds(in.input_ids, image_embeds);  // [B, S, E]

  at::Tensor position_ids = in.position_ids;
  if (!position_ids.defined()) {
    if (past == 0 || !in.cache || !in.cache->rope_deltas.defined()) {
      at::Tensor prefill_mask = in.attention_mask;
      if (prefill_mask.defined() && past > 0) prefill_mask = prefill_mask.narrow(1, past, S);
      RopeIndex ri = get_rope_index(cfg_, in.input_ids, in.image_grid_thw, prefill_mask);
      position_ids = ri.position_ids;
      out.rope_deltas = ri.rope_deltas;
      if (in.cache) in.cache->rope_deltas = ri.rope_deltas;
    } else {
      // Decode: cache position + rope_deltas, the same in the three rows.
      position_ids = decode_position_ids(in.cache->rope_deltas, past, S);
      out.rope_deltas = in.cache->rope_deltas;
    }
  } else {
    MEDR1_CHECK(position_ids.dim() == 3 && position_ids.size(0) == 3 && position_ids.size(1) == B &&
                    position_ids.size(2) == S,
                "Qwen2VL forward: position_ids must be [3, ", B, ", ", S, "], got ", position_ids.sizes());
    if (in.cache) out.rope_deltas = in.cache->rope_deltas;
  }
  out.position_ids = position_ids;

  at::Tensor mask = make_causal_mask(in.attention_mask, B, S, past, embeds.scalar_type(), embeds.device());
  Qwen2TextOutput t = model->forward(embeds, position_ids.to(embeds.device()), mask, in.cache,
                                     in.output_hidden_states);
  if (in.cache) in.cache->advance(S);
  out.last_hidden_state = t.last_hidden_state;
  out.hidden_states = std::move(t.hidden_states);
  if (in.compute_logits) {
    int64_t from = in.logits_from < 0 ? S + in.logits_from : in.logits_from;
    MEDR1_CHECK(from >= 0 && from <= S, "Qwen2VL forward: logits_from ", in.logits_from, " outside [", -S, ", ", S,
                "]");
    out.logits = lm_logits(t.last_hidden_state.narrow(1, from, S - from));  // [B, S - from, V]
  }
  return out;
}

}  // namespace medr1::model
