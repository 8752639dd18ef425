// Text generation for Qwen2-VL / Qwen2.5-VL, as transformers v4.49.0 GenerationMixin.generate runs it:
// prefill then one-token decode steps on a preallocated KVCache, left-padded batches with the M-RoPE
// rope_deltas of the prefill (decode position = cache_position + rope_deltas), logits processors in
// transformers' order (repetition penalty, temperature, top-k, top-p), greedy or multinomial sampling from a
// seeded CPU generator, stop on any EOS id or max_new_tokens. B = prompts, R = num_return_sequences,
// S = prompt length, T = new tokens, V = vocab.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "medr1/model/qwen2_vl.h"
#include "medr1/model/qwen2_vl_config.h"
#include "medr1/tokenizer/tokenizer.h"
#include "medr1/vision/image_processor.h"

namespace medr1::generate {

struct SamplingParams {
  bool do_sample = false;           // false = greedy (argmax of processed scores)
  double temperature = 1.0;
  int64_t top_k = 50;               // 0 = off (transformers default 50 when sampling)
  double top_p = 1.0;
  double repetition_penalty = 1.0;  // transformers semantics: ids already in the row (prompt incl.)
  int64_t max_new_tokens = 256;
  std::vector<int64_t> eos_token_ids;  // stop on any
  int64_t pad_token_id = 151643;       // fills rows after they finish
  uint64_t seed = 0;                   // sampling reproducible for a given seed, batch, dtype
  int64_t num_return_sequences = 1;    // G samples per prompt sharing the prompt's prefill
};

// The checkpoint's generation_config.json defaults (transformers: used when no overrides).
SamplingParams sampling_from_generation_config(const model::GenerationConfig& gc);

struct PromptBatch {            // left-padded
  at::Tensor input_ids;         // [B, S] int64 (each <|image_pad|> already expanded to its merged-token count)
  at::Tensor attention_mask;    // [B, S] int64, 0 on padding
  at::Tensor pixel_values;      // [sumP, 1176] float (undefined if no images), rows of row 0's images first
  at::Tensor image_grid_thw;    // [N, 3] int64
};

// Tokenises chat-templated prompt texts (one "<|vision_start|><|image_pad|><|vision_end|>" per image, as
// apply_chat_template renders them), expands each <|image_pad|> to grid_t*grid_h*grid_w/4 copies,
// left-pads with pad_id and concatenates the images' pixel values.
PromptBatch build_prompt_batch(const tokenizer::Tokenizer& tok, const std::vector<std::string>& prompt_texts,
                               const std::vector<std::vector<vision::ProcessedImage>>& images, int64_t pad_id);

struct GenerationOutput {
  at::Tensor sequences;   // [B*R, S+T] prompt + new tokens (pad after a row finished); row b*R+r = prompt b, sample r
  at::Tensor new_tokens;  // [B*R, T] int64, pad after finish
  at::Tensor logprobs;    // [B*R, T] float32 log-prob of each chosen token under the raw (temperature-1,
                          //  unprocessed) model distribution; 0 after finish
  at::Tensor lengths;     // [B*R] int64 tokens generated incl. the EOS
  std::vector<std::string> finish_reasons;  // "eos" | "length"
};

GenerationOutput generate(model::Qwen2VLForConditionalGeneration& model, const PromptBatch& batch,
                          const SamplingParams& params);

// ---- Additions (building blocks, also used by the tests) ----

// Applies the logits processors in transformers' order to scores [N, V] (float32, modified copy returned):
// repetition penalty over `seen_ids` [N, L] int64 (gathered, positive / penalty, negative * penalty,
// scattered back), then temperature, top-k, top-p (only when do_sample, as transformers adds the warpers
// only for sampling). Filtered entries are -inf.
at::Tensor process_scores(const at::Tensor& scores, const at::Tensor& seen_ids, const SamplingParams& p);

// Picks the next token of each row from processed scores [N, V]: argmax (greedy) or one multinomial draw
// from softmax(scores) using `gen` (sampling). [N] int64.
at::Tensor select_next_tokens(const at::Tensor& processed_scores, bool do_sample, at::Generator& gen);

// Debug/parity hook: when non-null, generate() appends per step the processed float32 scores and the raw float32
// logits [B*R, V] (zeros for rows already finished).
struct GenerationTrace {
  std::vector<at::Tensor> step_scores;
  std::vector<at::Tensor> step_logits;
  bool keep_steps = true;   // false: only the timings below (benchmarks)
  double prefill_s = 0;     // wall time of the prefill forward (vision tower included)
  double decode_s = 0;      // wall time of everything after it (decode forwards, processors, selection)
};
GenerationOutput generate(model::Qwen2VLForConditionalGeneration& model, const PromptBatch& batch,
                          const SamplingParams& params, GenerationTrace* trace);

}  // namespace medr1::generate
