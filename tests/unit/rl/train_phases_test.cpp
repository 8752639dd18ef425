// The pure parts of the trainer's phases (rl/train_phases.h): the HF step arithmetic, the sampler
// position of a resume with another world size, the logged record of a step and the completion rows
// of a round. The phases that touch models are proven by the trainer tests (resume bit-identical,
// DDP = single process).
#include "medr1/rl/train_phases.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "medr1/core/error.h"

namespace medr1::rl {
namespace {

GRPOConfig plan_config(int64_t B, int64_t GA, double epochs, int64_t iters = 1) {
  GRPOConfig c;
  c.per_device_train_batch_size = B;
  c.gradient_accumulation_steps = GA;
  c.num_train_epochs = epochs;
  c.num_iterations = iters;
  return c;
}

TEST(TrainPhases, PlanStepsFollowsTheHfTrainer) {
  // 10 prompts, B 4: 3 micro-batches per epoch (last one partial), GA 2 -> 1 step per epoch (3 //
  // 2).
  StepPlan p = plan_steps(plan_config(4, 2, 2.0), 10);
  EXPECT_EQ(p.batches_per_epoch, 3);
  EXPECT_EQ(p.steps_per_epoch, 1);
  EXPECT_EQ(p.total_steps, 2);
  // num_iterations 2: TRL's sampler repeats each generation batch, so the dataloader is twice as
  // long.
  p = plan_steps(plan_config(4, 2, 2.0, 2), 10);
  EXPECT_EQ(p.steps_per_epoch, 3);
  EXPECT_EQ(p.total_steps, 6);
  // Fractional epochs round up; max_steps overrides; warmup_ratio is ceil(ratio * total).
  GRPOConfig c = plan_config(1, 1, 1.5);
  c.warmup_ratio = 0.1;
  p = plan_steps(c, 5);
  EXPECT_EQ(p.total_steps, 8);  // ceil(1.5 * 5)
  EXPECT_EQ(p.warmup_steps, 1);
  c.max_steps = 3;
  EXPECT_EQ(plan_steps(c, 5).total_steps, 3);
  // A shard smaller than GA micro-batches still makes one step per epoch.
  EXPECT_EQ(plan_steps(plan_config(1, 8, 1.0), 3).steps_per_epoch, 1);
  // SFT ignores num_iterations.
  GRPOConfig sft = plan_config(4, 2, 2.0, 3);
  sft.algo = "sft";
  EXPECT_EQ(plan_steps(sft, 10).steps_per_epoch, 1);
}

// TRL SyncRefModelCallback: target.mul_(1 - alpha).add_(copy, alpha=alpha), in the target's dtype.
TEST(TrainPhases, MixIntoReferenceIsTrlsTrDpoUpdate) {
  NamedTensors ref = {{"a", at::tensor({1.0, 2.0}, at::kDouble)}, {"b", at::tensor({-4.0}, at::kDouble)}};
  const NamedTensors pol = {{"a", at::tensor({3.0, 6.0}, at::kDouble)}, {"b", at::tensor({4.0}, at::kFloat)}};
  mix_into_reference(ref, pol, 0.25);
  EXPECT_TRUE(at::equal(ref[0].second, at::tensor({1.5, 3.0}, at::kDouble))) << ref[0].second;
  EXPECT_TRUE(at::equal(ref[1].second, at::tensor({-2.0}, at::kDouble))) << ref[1].second;
  EXPECT_EQ(ref[1].second.scalar_type(), at::kDouble);  // the reference keeps its dtype
  // alpha 1: the reference becomes the policy; alpha 0: unchanged
  mix_into_reference(ref, pol, 0.0);
  EXPECT_TRUE(at::equal(ref[0].second, at::tensor({1.5, 3.0}, at::kDouble)));
  mix_into_reference(ref, pol, 1.0);
  EXPECT_TRUE(at::equal(ref[0].second, pol[0].second));
  // bf16 reference: the same two in-place ops as torch in bf16
  at::Tensor rb = at::tensor({0.3, -1.7}, at::kFloat).to(at::kBFloat16);
  at::Tensor want = rb.clone().mul_(0.4).add_(at::tensor({2.2, 0.9}, at::kFloat).to(at::kBFloat16), 0.6);
  NamedTensors refb = {{"w", rb}};
  mix_into_reference(refb, {{"w", at::tensor({2.2, 0.9}, at::kFloat)}}, 0.6);
  EXPECT_TRUE(at::equal(refb[0].second, want));
  // mismatched lists are refused naming the parameter
  NamedTensors short_ref = {{"a", at::zeros({2}, at::kDouble)}};
  EXPECT_THROW(mix_into_reference(short_ref, pol, 0.5), medr1::Error);
  NamedTensors wrong = {{"a", at::zeros({3}, at::kDouble)}, {"b", at::zeros({1}, at::kDouble)}};
  EXPECT_THROW(mix_into_reference(wrong, pol, 0.5), medr1::Error);
}

TEST(TrainPhases, RescaleSamplerForWorld) {
  using S = dist::SamplerState;
  EXPECT_EQ(rescale_sampler_for_world(S{1, 3}, 2, 2, 10, "ck"), (S{1, 3}));  // same world: as saved
  EXPECT_EQ(rescale_sampler_for_world(S{0, 3}, 2, 1, 10, "ck"), (S{0, 6}));  // 6 prompts consumed
  EXPECT_EQ(rescale_sampler_for_world(S{0, 2}, 1, 2, 10, "ck"), (S{0, 1}));
  EXPECT_EQ(rescale_sampler_for_world(S{0, 5}, 2, 4, 10, "ck"),
            (S{1, 0}));  // epoch done (shard 5): next one
  try {
    rescale_sampler_for_world(S{0, 3}, 1, 2, 10, "run/checkpoint-3");
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("run/checkpoint-3"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("multiple of the new world size"), std::string::npos)
        << e.what();
  }
}

TEST(TrainPhases, MetricsRecordAveragesOverMicroBatchesAndCompletions) {
  StepMetrics m;
  m.loss = 0.5;
  m.kl = 0.02;  // sums over 2 micro-batches
  m.clip = 0.1;
  m.completion_length = 30;
  m.reward_std = 0.8;
  m.per_func_sum = {3, 6};
  m.reward_sum = 9;
  m.n_completions = 8;
  m.n_micro = 2;
  m.gen_tokens = 100;
  m.rollout_s = 4;
  m.train_tokens = 500;
  m.train_s = 2;
  m.grad_norm = 1.5;
  const nlohmann::json r = metrics_record(m, {"accuracy", "format"}, false, 7, 0.25, 1e-6, 3.0);
  EXPECT_EQ(r["step"], 7);
  EXPECT_DOUBLE_EQ(r["epoch"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(r["loss"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(r["rewards/accuracy"].get<double>(), 3.0 / 8);
  EXPECT_DOUBLE_EQ(r["rewards/format"].get<double>(), 6.0 / 8);
  EXPECT_DOUBLE_EQ(r["reward"].get<double>(), 9.0 / 8);
  EXPECT_DOUBLE_EQ(r["reward_std"].get<double>(), 0.4);
  EXPECT_DOUBLE_EQ(r["kl"].get<double>(), 0.01);
  EXPECT_DOUBLE_EQ(r["clip_ratio"].get<double>(), 0.05);
  EXPECT_DOUBLE_EQ(r["completion_length"].get<double>(), 15);
  EXPECT_DOUBLE_EQ(r["learning_rate"].get<double>(), 1e-6);
  EXPECT_DOUBLE_EQ(r["grad_norm"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(r["step_time"].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(r["rollout_tokens_per_s"].get<double>(), 25);
  EXPECT_DOUBLE_EQ(r["train_tokens_per_s"].get<double>(), 250);
  const nlohmann::json s = metrics_record(m, {}, true, 1, 0, 1e-5, 1.0);  // SFT: no reward keys
  EXPECT_FALSE(s.contains("reward"));
  EXPECT_FALSE(s.contains("kl"));
  EXPECT_TRUE(s.contains("completion_length"));
}

TEST(TrainPhases, CompletionRowsNameThePromptImageRewardsAndAdvantage) {
  std::vector<data::Record> records(3);
  records[2].image = "Images/ct/1.png";
  records[2].problem = "Which modality? A)CT, B)MRI";
  MicroBatch mb;
  mb.r.num_prompts = 1;
  mb.r.num_generations = 2;
  mb.r.dataset_indices = {2};
  mb.r.completions = {"<answer> A </answer>", "B"};
  mb.r.solutions = {"<answer> A </answer>", "<answer> A </answer>"};
  mb.rewards.names = {"accuracy", "format"};
  mb.rewards.per_func = {{1.0, 0.0}, {1.0, std::nan("")}};
  mb.rewards.total = {2.0, 0.0};
  mb.advantages = at::tensor(std::vector<float>{0.5f, -0.5f});
  const auto rows = completion_rows({mb}, records, 4);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["step"], 4);
  EXPECT_EQ(rows[0]["prompt_index"], 2);
  EXPECT_EQ(rows[1]["generation"], 1);
  EXPECT_EQ(rows[0]["image"], "Images/ct/1.png");
  EXPECT_EQ(rows[0]["problem"], "Which modality? A)CT, B)MRI");
  EXPECT_EQ(rows[1]["completion"], "B");
  EXPECT_EQ(rows[0]["rewards"]["accuracy"], 1.0);
  EXPECT_EQ(rows[0]["reward"], 2.0);
  EXPECT_FLOAT_EQ(rows[1]["advantage"].get<float>(), -0.5f);
  EXPECT_EQ(rows[1].dump().find("NaN"), std::string::npos);  // a NaN reward is written as null
  EXPECT_TRUE(rows[1]["rewards"]["format"].is_null() ||
              std::isnan(rows[1]["rewards"]["format"].get<double>()));
  MicroBatch sft;  // SFT round: no sampled completions, no rows
  sft.r.num_prompts = 1;
  EXPECT_TRUE(completion_rows({sft}, records, 1).empty());
}

}  // namespace
}  // namespace medr1::rl
