// Learning test of the GRPO step (rollout assembly -> rewards -> group advantages -> GRPO loss with KL to a
// frozen reference -> AdamW): a text-only Qwen2-VL-layout model with a 64-token vocabulary learns a toy task
// (the first answer token must be congruent to the prompt token mod 4) from chance (~1/4) to > 0.9 mean reward.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "medr1/generate/generate.h"
#include "medr1/rl/advantages.h"
#include "medr1/rl/lr_schedule.h"
#include "medr1/rl/optim.h"
#include "medr1/rl/policy_loss.h"
#include "medr1/rl/rollout.h"

namespace medr1::rl {
namespace {

model::Qwen2VLConfig tiny_text_config() {
  model::Qwen2VLConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.rope_type = "mrope";
  c.mrope_section = {2, 1, 1};  // head_dim 8 -> 4 frequencies
  c.tie_word_embeddings = true;
  c.max_position_embeddings = 128;
  c.image_token_id = 60;
  c.video_token_id = 61;
  c.vision_start_token_id = 62;
  c.vision_end_token_id = 63;
  c.vision_token_id = 59;
  c.eos_token_id = {1};
  c.vision_config = {{"depth", 1}, {"embed_dim", 16}, {"num_heads", 2}, {"hidden_size", 32}, {"mlp_ratio", 2},
                     {"patch_size", 14}, {"spatial_merge_size", 2}, {"temporal_patch_size", 2}, {"in_chans", 3}};
  return c;
}

TEST(GrpoTrainerLearning, ToyTaskRewardRisesFromChanceToAbovePointNine) {
  at::manual_seed(7);
  const auto cfg = tiny_text_config();
  model::Qwen2VLForConditionalGeneration policy(cfg), ref(cfg);
  {
    at::NoGradGuard ng;
    // HF-style init (normal(0, 0.02), norms 1) so the start is near uniform (chance) over the 64 tokens.
    auto pp = policy->named_parameters(), rp = ref->named_parameters();
    for (auto& kv : pp) {
      if (kv.key().find("norm") != std::string::npos) kv.value().fill_(1.0);
      else if (kv.key().find("bias") != std::string::npos) kv.value().zero_();
      else kv.value().normal_(0.0, 0.02);
      rp[kv.key()].copy_(kv.value());
    }
  }
  ref->eval();
  GRPOConfig gc;
  gc.learning_rate = 3e-2;
  gc.num_generations = 8;
  gc.max_completion_length = 2;
  auto opt = make_adamw(policy->named_parameters().pairs(), gc);
  PolicyLossOptions plo = policy_loss_options(gc);  // grpo, beta 0.04

  const std::vector<int64_t> questions = {10, 11, 12, 13};
  const int64_t G = gc.num_generations;
  std::vector<double> curve;
  int64_t reached = -1;
  for (int64_t step = 0; step < 200 && reached < 0; ++step) {
    // One micro-batch of 4 prompts [2, q], each sampled G times with its own seed.
    Rollout r;
    r.num_prompts = 4;
    r.num_generations = G;
    r.prompt_ids = at::tensor(std::vector<int64_t>{2, 10, 2, 11, 2, 12, 2, 13}).view({4, 2});
    r.prompt_mask = at::ones({4, 2}, at::kLong);
    std::vector<at::Tensor> comps;
    std::vector<float> rewards;
    for (int64_t b = 0; b < 4; ++b) {
      generate::PromptBatch pb;
      pb.input_ids = r.prompt_ids.slice(0, b, b + 1);
      pb.attention_mask = r.prompt_mask.slice(0, b, b + 1);
      generate::SamplingParams sp;
      sp.do_sample = true;
      sp.max_new_tokens = 2;
      sp.eos_token_ids = {1};
      sp.pad_token_id = 0;
      sp.num_return_sequences = G;
      sp.seed = rollout_seed(42, step, b);
      generate::GenerationOutput out;
      {
        at::NoGradGuard ng;
        out = generate::generate(policy, pb, sp);
      }
      at::Tensor nt = at::zeros({G, 2}, at::kLong);
      nt.slice(1, 0, out.new_tokens.size(1)).copy_(out.new_tokens);
      comps.push_back(nt);
      for (int64_t g = 0; g < G; ++g) rewards.push_back(nt[g][0].item<int64_t>() % 4 == questions[b] % 4 ? 1.f : 0.f);
    }
    r.completion_ids = at::cat(comps, 0);
    r.completion_mask = completion_mask(r.completion_ids, {1}).to(at::kLong);
    at::Tensor rw = at::tensor(rewards);
    curve.push_back(rw.mean().item<double>());
    if (curve.size() >= 3 && curve[curve.size() - 1] > 0.9 && curve[curve.size() - 2] > 0.9) reached = step;
    Advantages adv = compute_advantages(rw, G);
    at::Tensor ref_logps;
    {
      at::NoGradGuard ng;
      ref_logps = selective_log_softmax(completion_logits(ref, r), r.completion_ids);
    }
    at::Tensor logps = selective_log_softmax(completion_logits(policy, r), r.completion_ids);
    PolicyLossOutput out = grpo_policy_loss(logps, at::Tensor(), ref_logps, adv.advantages, r.completion_mask, plo);
    out.loss.backward();
    std::vector<at::Tensor> params = policy->parameters();
    clip_grad_norm_(params, 1.0);
    opt->step();
    opt->zero_grad();
  }
  std::printf("learning: mean reward step 1 = %.3f, last = %.3f, steps = %zu (first > 0.9 twice at %lld)\n",
              curve.front(), curve.back(), curve.size(), static_cast<long long>(reached));
  EXPECT_LT(curve.front(), 0.45);  // starts near chance (0.25)
  EXPECT_GE(reached, 0) << "mean reward never exceeded 0.9 on two consecutive steps within 200 steps";
}

}  // namespace
}  // namespace medr1::rl
