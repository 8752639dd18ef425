// Batch correctness of the GRPO trainer: one micro-batch of 2 prompts (left-padded, each with its own image)
// must give the same optimizer update as 2 accumulated micro-batches of 1 prompt (Med-R1 misaligns images when
// a device holds more than one prompt; rollouts are seeded per (seed, step, dataset index), so both runs
// sample the same completions).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "grpo_trainer_test_util.h"
#include "medr1/io/safetensors.h"
#include "medr1/rl/grpo_trainer.h"

namespace medr1::rl {
namespace {

using test::fs::path;

TEST(GrpoTrainerBatch, TwoPromptsEqualTwoAccumulatedMicroBatches) {
  const auto root = test::make_temp_dir("grpo_batch");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  const std::string data = test::make_demo_slice(root, 2);
  // Images of 56..112 px under max_pixels 12544 give prompts of different lengths (left padding used).
  GRPOConfig a = test::tiny_run_config(model, data, root / "batch2");
  a.max_pixels = 12544;
  a.max_steps = 1;
  a.per_device_train_batch_size = 2;
  a.gradient_accumulation_steps = 1;
  a.num_generations = 3;
  a.max_completion_length = 6;
  // lr 1, eps 1: the first AdamW update is g / (|g| + 1), smooth in the gradient (with the default eps 1e-8 it
  // is sign(g) * lr and flips on rounding noise of near-zero gradients).
  a.learning_rate = 1.0;
  a.adam_epsilon = 1.0;
  GRPOConfig b = a;
  b.output_dir = (root / "batch1x2").string();
  b.per_device_train_batch_size = 1;
  b.gradient_accumulation_steps = 2;
  RewardRegistry reg = test::toy_registry();
  TrainerHooks h;
  h.progress_bar = false;
  h.rewards = &reg;
  TrainResult ra = train(a, h), rb = train(b, h);
  ASSERT_EQ(ra.log_history.size(), 1u);
  ASSERT_EQ(rb.log_history.size(), 1u);
  // Same completions -> same rewards and lengths.
  EXPECT_DOUBLE_EQ(ra.log_history[0]["reward"].get<double>(), rb.log_history[0]["reward"].get<double>());
  EXPECT_NEAR(ra.log_history[0]["completion_length"].get<double>(),
              rb.log_history[0]["completion_length"].get<double>(), 1e-9);
  EXPECT_NEAR(ra.log_history[0]["loss"].get<double>(), rb.log_history[0]["loss"].get<double>(), 1e-5);
  EXPECT_NEAR(ra.log_history[0]["grad_norm"].get<double>(), rb.log_history[0]["grad_norm"].get<double>(),
              1e-4 * (1.0 + rb.log_history[0]["grad_norm"].get<double>()));

  auto wa = io::load_safetensors((path(a.output_dir) / "model.safetensors").string());
  auto wb = io::load_safetensors((path(b.output_dir) / "model.safetensors").string());
  auto w0 = io::load_safetensors((path(model) / "model.safetensors").string());
  ASSERT_EQ(wa.size(), wb.size());
  double max_diff = 0, max_update = 0;
  for (const auto& [name, t] : wa) {
    ASSERT_TRUE(wb.count(name)) << name;
    max_diff = std::max(max_diff, (t - wb.at(name)).abs().max().item<double>());
    if (w0.count(name)) max_update = std::max(max_update, (t - w0.at(name).to(t.scalar_type())).abs().max().item<double>());
  }
  std::printf("batch correctness: max |W(batch 2) - W(batch 1 x GA 2)| = %.3g, max update %.3g\n", max_diff,
              max_update);
  EXPECT_GT(max_update, 1e-4);  // the step really moved the weights
  EXPECT_LT(max_diff, 1e-3 * max_update);
  test::fs::remove_all(root);
}

}  // namespace
}  // namespace medr1::rl
