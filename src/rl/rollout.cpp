// GRPO / SFT micro-batch assembly: Med-R1 prompts, seeded per-prompt rollouts, the loss-side batch and the
// aligned completion logits (rollout.h).
#include "medr1/rl/rollout.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>

#include "medr1/core/error.h"
#include "medr1/data/prompts.h"
#include "medr1/rl/policy_loss.h"
#include "medr1/tokenizer/chat_template.h"

namespace medr1::rl {

std::string build_train_prompt(std::string_view problem, PromptMode mode, bool with_image) {
  const std::string_view tmpl = mode == PromptMode::think ? data::kTrainThinkTemplate : data::kTrainNoThinkTemplate;
  tokenizer::Message user;
  user.role = "user";
  if (with_image) user.content.push_back(tokenizer::ContentPart::make_image());
  user.content.push_back(tokenizer::ContentPart::make_text(data::format_question(tmpl, problem)));
  return tokenizer::apply_chat_template({user}, /*add_generation_prompt=*/true);
}

PromptExample make_prompt_example(const data::Record& r, PromptMode mode, const vision::ImageProcessorConfig& ipc) {
  PromptExample ex;
  ex.dataset_index = r.index;
  const bool with_image = !r.image.empty();
  ex.prompt_text = build_train_prompt(r.problem, mode, with_image);
  if (with_image) {
    try {
      // A `datasets` folder embeds the encoded image (Record::image_bytes); JSON records name a file.
      ex.images.push_back(
          r.image_bytes
              ? vision::preprocess(vision::decode_image_rgb(r.image_bytes->data(), r.image_bytes->size(), r.image),
                                   ipc, r.image)
              : vision::preprocess_file(r.image_path, ipc));
    } catch (const std::exception& e) {
      fail(r.source_file, ": record ", r.file_index, ": image '", r.image_path, "': ", e.what());
    }
  }
  MEDR1_CHECK(r.solution.has_value(), r.source_file, ": record ", r.file_index, ": solution: missing (training needs it)");
  ex.solution = *r.solution;
  return ex;
}

GenerateFn default_generate_fn() {
  return [](model::Qwen2VLForConditionalGeneration& m, const generate::PromptBatch& b,
            const generate::SamplingParams& p) { return generate::generate(m, b, p); };
}

uint64_t rollout_seed(uint64_t seed, int64_t step, int64_t dataset_index, int64_t gen_batch) {
  // SplitMix64 finaliser over a simple combination; distinct inputs give unrelated streams.
  auto mix = [](uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  const uint64_t z = mix(mix(mix(seed) ^ static_cast<uint64_t>(step)) ^ static_cast<uint64_t>(dataset_index));
  return gen_batch == 0 ? z : mix(z ^ static_cast<uint64_t>(gen_batch));
}

namespace {

// Left-padded prompt batch of the examples, truncated to the last max_prompt_length tokens (Med-R1 step 2);
// truncation that would cut image tokens is an error (the image features could no longer be placed).
void fill_prompt_side(const tokenizer::Tokenizer& tok, const std::vector<PromptExample>& examples,
                      int64_t max_prompt_length, int64_t pad_id, Rollout& r) {
  std::vector<std::string> texts;
  std::vector<std::vector<vision::ProcessedImage>> images;
  for (const auto& ex : examples) {
    texts.push_back(ex.prompt_text);
    images.push_back(ex.images);
    r.images_per_prompt.push_back(static_cast<int64_t>(ex.images.size()));
    r.dataset_indices.push_back(ex.dataset_index);
  }
  generate::PromptBatch pb = generate::build_prompt_batch(tok, texts, images, pad_id);
  at::Tensor ids = pb.input_ids, mask = pb.attention_mask;
  const int64_t S = ids.size(1);
  if (max_prompt_length > 0 && S > max_prompt_length) {
    const int64_t image_pad = tok.token_to_id("<|image_pad|>").value_or(-1);
    const auto before = (ids == image_pad).sum().item<int64_t>();
    ids = ids.slice(1, S - max_prompt_length).contiguous();
    mask = mask.slice(1, S - max_prompt_length).contiguous();
    const auto after = (ids == image_pad).sum().item<int64_t>();
    MEDR1_CHECK(before == after, "max_prompt_length ", max_prompt_length, " cuts image tokens of a ", S,
                "-token prompt (dataset indices ", r.dataset_indices.front(), "...): raise max_prompt_length");
  }
  r.prompt_ids = ids;
  r.prompt_mask = mask;
  r.pixel_values = pb.pixel_values;
  r.image_grid_thw = pb.image_grid_thw;
}

std::vector<int32_t> to_i32(const at::Tensor& row) {
  at::Tensor c = row.to(at::kInt).contiguous();
  return std::vector<int32_t>(c.data_ptr<int32_t>(), c.data_ptr<int32_t>() + c.numel());
}

}  // namespace

PromptCompletions generate_completions(model::Qwen2VLForConditionalGeneration& policy,
                                       const tokenizer::Tokenizer& tok, const PromptExample& ex,
                                       const RolloutOptions& opt, int64_t pad_id, const GenerateFn& gen) {
  const int64_t G = opt.num_generations;
  // Generation sees the untruncated prompt (Med-R1 generates from prompt_inputs).
  generate::PromptBatch one = generate::build_prompt_batch(tok, {ex.prompt_text}, {ex.images}, pad_id);
  generate::SamplingParams sp = opt.sampling;
  sp.num_return_sequences = G;
  sp.pad_token_id = pad_id;
  sp.seed = rollout_seed(opt.seed, opt.step, ex.dataset_index, opt.gen_batch);
  generate::GenerationOutput out = gen(policy, one, sp);
  MEDR1_CHECK(out.new_tokens.size(0) == G, "make_rollout: generation returned ", out.new_tokens.size(0),
              " rows, expected ", G);
  return {out.new_tokens, out.lengths.sum().item<int64_t>()};
}

Rollout assemble_rollout(const tokenizer::Tokenizer& tok, const std::vector<PromptExample>& examples,
                         const std::vector<PromptCompletions>& completions, const RolloutOptions& opt,
                         int64_t pad_id) {
  MEDR1_CHECK(!examples.empty(), "assemble_rollout: no examples");
  MEDR1_CHECK(examples.size() == completions.size(), "assemble_rollout: ", examples.size(), " examples but ",
              completions.size(), " completion sets");
  const int64_t G = opt.num_generations;
  Rollout r;
  r.num_prompts = static_cast<int64_t>(examples.size());
  r.num_generations = G;
  int64_t T = 1;
  for (size_t b = 0; b < examples.size(); ++b) {
    const at::Tensor& t = completions[b].new_tokens;
    MEDR1_CHECK(t.dim() == 2 && t.size(0) == G, "assemble_rollout: completions of dataset index ",
                examples[b].dataset_index, " are ", t.sizes(), ", expected [", G, ", t]");
    T = std::max(T, t.size(1));
    r.generated_tokens += completions[b].generated_tokens;
    for (int64_t g = 0; g < G; ++g) r.solutions.push_back(examples[b].solution);
  }
  std::vector<at::Tensor> padded;
  for (const auto& c : completions) {
    const at::Tensor& t = c.new_tokens;
    at::Tensor p = at::full({t.size(0), T}, pad_id, at::kLong);
    if (t.size(1) > 0) p.slice(1, 0, t.size(1)).copy_(t);
    padded.push_back(p);
  }
  r.completion_ids = at::cat(padded, 0);
  r.completion_mask = completion_mask(r.completion_ids, opt.mask_eos_ids, opt.mask_truncated_completions)
                          .to(at::kLong);
  for (int64_t i = 0; i < r.completion_ids.size(0); ++i)
    r.completions.push_back(tok.decode(to_i32(r.completion_ids[i]), /*skip_special_tokens=*/true));
  fill_prompt_side(tok, examples, opt.max_prompt_length, pad_id, r);
  return r;
}

Rollout make_rollout(model::Qwen2VLForConditionalGeneration& policy, const tokenizer::Tokenizer& tok,
                     const std::vector<PromptExample>& examples, const RolloutOptions& opt, int64_t pad_id,
                     const GenerateFn& gen) {
  MEDR1_CHECK(!examples.empty(), "make_rollout: no examples");
  std::vector<PromptCompletions> completions;
  {
    at::NoGradGuard no_grad;
    const bool was_training = policy->is_training();
    policy->eval();
    for (const auto& ex : examples) completions.push_back(generate_completions(policy, tok, ex, opt, pad_id, gen));
    policy->train(was_training);
  }
  return assemble_rollout(tok, examples, completions, opt, pad_id);
}

Rollout make_sft_batch(const tokenizer::Tokenizer& tok, const std::vector<PromptExample>& examples,
                       int64_t max_prompt_length, int64_t eos_id, int64_t pad_id) {
  MEDR1_CHECK(!examples.empty(), "make_sft_batch: no examples");
  Rollout r;
  r.num_prompts = static_cast<int64_t>(examples.size());
  r.num_generations = 1;
  std::vector<std::vector<int32_t>> targets;
  size_t T = 0;
  for (const auto& ex : examples) {
    auto ids = tok.encode(ex.solution);
    ids.push_back(static_cast<int32_t>(eos_id));
    T = std::max(T, ids.size());
    targets.push_back(std::move(ids));
    r.solutions.push_back(ex.solution);
    r.completions.push_back(ex.solution);
  }
  r.completion_ids = at::full({r.num_prompts, static_cast<int64_t>(T)}, pad_id, at::kLong);
  r.completion_mask = at::zeros({r.num_prompts, static_cast<int64_t>(T)}, at::kLong);
  for (int64_t b = 0; b < r.num_prompts; ++b) {
    const auto& t = targets[static_cast<size_t>(b)];
    for (size_t j = 0; j < t.size(); ++j) {
      r.completion_ids[b][static_cast<int64_t>(j)] = static_cast<int64_t>(t[j]);
      r.completion_mask[b][static_cast<int64_t>(j)] = 1;
    }
  }
  fill_prompt_side(tok, examples, max_prompt_length, pad_id, r);
  return r;
}

at::Tensor completion_logits(model::Qwen2VLForConditionalGeneration& m, const Rollout& r) {
  const int64_t B = r.num_prompts, G = r.num_generations;
  const int64_t S = r.prompt_ids.size(1), T = r.completion_ids.size(1);
  model::Qwen2VLInputs in;
  in.input_ids = at::cat({r.prompt_ids.repeat_interleave(G, 0), r.completion_ids}, 1);         // [N, S+T]
  in.attention_mask = at::cat({r.prompt_mask.repeat_interleave(G, 0), r.completion_mask}, 1);  // [N, S+T]
  if (r.pixel_values.defined() && r.pixel_values.numel() > 0) {
    // Vision tower once per prompt; every prompt's image tokens repeated for its G rows (row b*G+g).
    at::Tensor embeds = m->get_image_features(r.pixel_values, r.image_grid_thw);  // [sum tok, E]
    const int64_t ms = m->config().vision_config.value("spatial_merge_size", int64_t{2});
    const int64_t merge = ms * ms;  // patches per LLM image token
    std::vector<at::Tensor> emb_rows, grid_rows;
    int64_t img = 0, tok_off = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n_img = r.images_per_prompt[static_cast<size_t>(b)];
      at::Tensor grid = r.image_grid_thw.slice(0, img, img + n_img);
      const int64_t n_tok = grid.prod(1).sum().item<int64_t>() / merge;
      at::Tensor e = embeds.slice(0, tok_off, tok_off + n_tok);
      for (int64_t g = 0; g < G; ++g) {
        emb_rows.push_back(e);
        grid_rows.push_back(grid);
      }
      img += n_img;
      tok_off += n_tok;
    }
    MEDR1_CHECK(tok_off == embeds.size(0), "completion_logits: image tokens ", tok_off, " != vision output rows ",
                embeds.size(0));
    in.image_embeds = at::cat(emb_rows, 0);
    in.image_grid_thw = at::cat(grid_rows, 0);
  }
  in.logits_from = S - 1;
  model::Qwen2VLOutput out = m->forward(in);
  return out.logits.slice(1, 0, T);  // [N, T, V]
}

}  // namespace medr1::rl
