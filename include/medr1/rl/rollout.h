// GRPO rollouts of one micro-batch, as Med-R1's Qwen2VLGRPOTrainer.compute_loss builds them (steps 1-5 of
// MEDR1_REFERENCE §1.5): one user turn [image, question template] rendered by the chat template, G sampled
// completions per prompt, Med-R1's completion mask (first EOS included), the prompt truncated to its last
// max_prompt_length tokens for the loss forward. Unlike Med-R1, every prompt keeps its own image for any batch
// size, and each prompt is sampled with its own seed (seed, step, dataset index), so a micro-batch of 2 prompts
// yields exactly the completions of two micro-batches of 1. B = prompts, G = generations, N = B*G, S = prompt
// tokens, T = completion tokens, E = hidden size.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "medr1/data/dataset.h"
#include "medr1/generate/generate.h"
#include "medr1/model/qwen2_vl.h"
#include "medr1/rl/rewards.h"
#include "medr1/tokenizer/tokenizer.h"
#include "medr1/vision/image_processor.h"

namespace medr1::rl {

// One training prompt: the rendered chat text, its processed image(s) and the dataset solution.
struct PromptExample {
  int64_t dataset_index = 0;
  std::string prompt_text;                      // chat-templated, generation prompt appended
  std::vector<vision::ProcessedImage> images;   // one per <|image_pad|> (Med-R1: exactly one)
  std::string solution;
};

// Med-R1 make_conversation_image + apply_chat_template: [{"role":"user","content":[image, text]}] with
// text = template.format(Question=problem), no system message given (the template's default applies),
// add_generation_prompt. `with_image` false gives the text-only turn.
std::string build_train_prompt(std::string_view problem, PromptMode mode, bool with_image = true);

// Record -> PromptExample (image decoded and processed with `ipc`; errors name the record's file).
PromptExample make_prompt_example(const data::Record& r, PromptMode mode, const vision::ImageProcessorConfig& ipc);

// The generation backend (generate::generate by default; tests may substitute).
using GenerateFn = std::function<generate::GenerationOutput(model::Qwen2VLForConditionalGeneration&,
                                                            const generate::PromptBatch&,
                                                            const generate::SamplingParams&)>;
GenerateFn default_generate_fn();

// Sampling seed of one prompt's G completions: a SplitMix64 mix of (seed, step, dataset index), and of the
// generation batch of the step when it is not the first (dynamic_sampling refill may draw a prompt twice in
// one step: its second group must be new samples).
uint64_t rollout_seed(uint64_t seed, int64_t step, int64_t dataset_index, int64_t gen_batch = 0);

struct RolloutOptions {
  int64_t num_generations = 4;
  int64_t max_prompt_length = 1024;          // <= 0: no truncation
  generate::SamplingParams sampling;         // do_sample, temperature, top_k ... max_new_tokens, eos, pad
  std::vector<int64_t> mask_eos_ids;         // completion_mask EOS set (Med-R1: {tokenizer eos})
  bool mask_truncated_completions = false;
  uint64_t seed = 42;
  int64_t step = 0;                           // optimizer step the rollout belongs to
  int64_t gen_batch = 0;                      // generation batch of the step (dynamic_sampling refill)
};

// A micro-batch ready for the loss forward.
struct Rollout {
  int64_t num_prompts = 0, num_generations = 0;
  at::Tensor prompt_ids;        // [B, S] int64, left-padded, truncated to max_prompt_length
  at::Tensor prompt_mask;       // [B, S] int64
  at::Tensor pixel_values;      // [sumP, 1176] float32 of the B prompts' images (undefined: text-only)
  at::Tensor image_grid_thw;    // [n_img, 3] int64 of the B prompts
  std::vector<int64_t> images_per_prompt;        // [B]
  at::Tensor completion_ids;    // [N, T] int64, pad after the end
  at::Tensor completion_mask;   // [N, T] int64 0/1 (Med-R1: up to and incl. the first EOS)
  std::vector<std::string> completions;  // [N] decoded with skip_special_tokens
  std::vector<std::string> solutions;    // [N] each prompt's solution repeated G times
  std::vector<int64_t> dataset_indices;  // [B]
  int64_t generated_tokens = 0;          // sum of generation lengths (throughput)
};

// Generates G completions per example (one generate call per prompt, seeded by rollout_seed) with the policy
// in eval/no-grad mode, then assembles the loss-side batch. `pad_id` pads prompts and completions.
Rollout make_rollout(model::Qwen2VLForConditionalGeneration& policy, const tokenizer::Tokenizer& tok,
                     const std::vector<PromptExample>& examples, const RolloutOptions& opt, int64_t pad_id,
                     const GenerateFn& gen);

// make_rollout in two halves, for callers that choose among generated groups before assembling a batch
// (dynamic sampling). One prompt's G completions: new tokens [G, t] (pad_id after each row's end).
struct PromptCompletions {
  at::Tensor new_tokens;
  int64_t generated_tokens = 0;  // sum of the G generation lengths
};
// Generates the G completions of `ex`, seeded by rollout_seed(opt.seed, opt.step, ex.dataset_index, opt.gen_batch), from the
// untruncated prompt. The caller holds the policy in eval mode under no-grad (make_rollout does).
PromptCompletions generate_completions(model::Qwen2VLForConditionalGeneration& policy,
                                       const tokenizer::Tokenizer& tok, const PromptExample& ex,
                                       const RolloutOptions& opt, int64_t pad_id, const GenerateFn& gen);
// The loss-side batch of `examples` and their completions (one entry each, rows G = opt.num_generations):
// completions right-padded to the longest, completion mask, decoded texts, solutions, the prompt side.
Rollout assemble_rollout(const tokenizer::Tokenizer& tok, const std::vector<PromptExample>& examples,
                         const std::vector<PromptCompletions>& completions, const RolloutOptions& opt,
                         int64_t pad_id);

// Builds the SFT-side batch of the same examples: completion = tokenize(solution) + EOS (the target).
Rollout make_sft_batch(const tokenizer::Tokenizer& tok, const std::vector<PromptExample>& examples,
                       int64_t max_prompt_length, int64_t eos_id, int64_t pad_id);

// Forward of the policy on prompt + completion for every row of the rollout (each prompt's image embeddings
// computed once and shared by its G rows). Returns logits [N, T, V] aligned so that logits[:, t] predicts
// completion_ids[:, t] (positions S-1 .. S+T-2 of the full sequence).
at::Tensor completion_logits(model::Qwen2VLForConditionalGeneration& m, const Rollout& r);

}  // namespace medr1::rl
