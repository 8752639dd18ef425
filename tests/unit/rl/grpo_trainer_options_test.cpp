// Trainer options on the tiny Qwen2-VL checkpoint: gradient_checkpointing (same update as without it, explicit
// device "cpu"), device "cuda" without CUDA (clear error), bf16 (fp32 master weights and optimizer state, bf16
// compute, update close to the fp32 run's), num_iterations > 1 (one generation, num_iterations policy updates
// against the same old log-probs, clipping active with a big lr) and the HF epoch tail (partial last
// micro-batch and a short last step are trained, not dropped).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "grpo_trainer_test_util.h"
#include "medr1/core/device.h"
#include "medr1/core/error.h"
#include "medr1/io/safetensors.h"
#include "medr1/rl/grpo_trainer.h"
#include "medr1/rl/optim.h"

namespace medr1::rl {
namespace {

namespace fs = test::fs;
using Weights = std::map<std::string, at::Tensor>;

Weights weights_of(const std::string& dir) { return io::load_safetensors((fs::path(dir) / "model.safetensors").string()); }

// ||(a - base_a) - (b - base_b)|| / ||b - base_b|| over all tensors (float64 sums): how far update a is from
// update b.
double rel_diff(const Weights& a, const Weights& b, const Weights& base_a, const Weights& base_b) {
  double num = 0, den = 0;
  for (const auto& [name, ta] : a) {
    at::Tensor x = ta.to(at::kDouble) - base_a.at(name).to(at::kDouble);
    at::Tensor y = b.at(name).to(at::kDouble) - base_b.at(name).to(at::kDouble);
    num += (x - y).pow(2).sum().item<double>();
    den += y.pow(2).sum().item<double>();
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

double max_abs_update(const Weights& w, const Weights& w0) {
  double m = 0;
  for (const auto& [name, t] : w) m = std::max(m, (t - w0.at(name).to(t.scalar_type())).abs().max().item<double>());
  return m;
}

TrainerHooks quiet_hooks(const RewardRegistry* reg) {
  TrainerHooks h;
  h.progress_bar = false;
  h.rewards = reg;
  return h;
}

TEST(GrpoTrainerOptions, GradientCheckpointingGivesTheSameUpdateOnExplicitCpu) {
  const auto root = test::make_temp_dir("grpo_gc");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig a = test::tiny_run_config(model, test::make_demo_slice(root, 1), root / "plain");
  a.max_steps = 1;
  a.num_generations = 3;
  a.max_completion_length = 6;
  a.learning_rate = 1.0;  // with eps 1 the first AdamW update is g / (|g| + 1): smooth in the gradient
  a.adam_epsilon = 1.0;
  a.device = "cpu";
  GRPOConfig b = a;
  b.output_dir = (root / "ckpt").string();
  b.gradient_checkpointing = true;
  RewardRegistry reg = test::toy_registry();
  TrainResult ra = train(a, quiet_hooks(&reg)), rb = train(b, quiet_hooks(&reg));
  ASSERT_EQ(ra.global_step, 1);
  ASSERT_EQ(rb.global_step, 1);
  const double la = ra.log_history[0]["loss"].get<double>(), lb = rb.log_history[0]["loss"].get<double>();
  const double ga = ra.log_history[0]["grad_norm"].get<double>(), gb = rb.log_history[0]["grad_norm"].get<double>();
  EXPECT_NEAR(la, lb, 1e-6 * (1 + std::abs(la)));
  EXPECT_NEAR(ga, gb, 1e-6 * ga);
  EXPECT_GT(ga, 0.0);
  const Weights w0 = weights_of(model), wa = weights_of(a.output_dir), wb = weights_of(b.output_dir);
  const double d = rel_diff(wb, wa, w0, w0);
  std::printf("gradient checkpointing in the trainer: loss %.9g vs %.9g, grad_norm %.9g vs %.9g, update rel diff %.3g\n",
              la, lb, ga, gb, d);
  EXPECT_GT(max_abs_update(wa, w0), 1e-4);
  EXPECT_LE(d, 1e-6);
  fs::remove_all(root);
}

// top_entropy_quantile (TRL): same rollouts as the full-token run (the mask acts in the loss only), a
// different update, the micro-batch entropy logged (0 < H <= log V), and the full run logs no entropy.
TEST(GrpoTrainerOptions, TopEntropyQuantileMasksTheLossNotTheRollout) {
  const auto root = test::make_temp_dir("grpo_top_entropy");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig a = test::tiny_run_config(model, test::make_demo_slice(root, 2), root / "all");
  a.max_steps = 2;
  a.num_generations = 4;
  a.max_completion_length = 6;
  a.beta = 0.0;  // the policy term only: the mask decides which tokens move the weights
  a.learning_rate = 1e-2;
  GRPOConfig b = a;
  b.output_dir = (root / "top").string();
  b.top_entropy_quantile = 0.2;
  RewardRegistry reg = test::toy_registry();
  TrainResult ra = train(a, quiet_hooks(&reg)), rb = train(b, quiet_hooks(&reg));
  ASSERT_EQ(ra.log_history.size(), 2u);
  ASSERT_EQ(rb.log_history.size(), 2u);
  const auto& la = ra.log_history[0];
  const auto& lb = rb.log_history[0];
  // step 1: the same rollouts (same weights, same seeds); the losses differ once advantages do
  EXPECT_EQ(la["reward"].get<double>(), lb["reward"].get<double>());
  EXPECT_EQ(la["completion_length"].get<double>(), lb["completion_length"].get<double>());
  EXPECT_FALSE(la.contains("entropy"));
  ASSERT_TRUE(lb.contains("entropy"));
  const double vocab = static_cast<double>(weights_of(model).at("model.embed_tokens.weight").size(0));
  double grad = 0;
  for (size_t k = 0; k < 2; ++k) {
    const double h = rb.log_history[k]["entropy"].get<double>();
    EXPECT_GT(h, 0.0);
    EXPECT_LE(h, std::log(vocab) + 1e-6);
    grad += ra.log_history[k]["grad_norm"].get<double>();
  }
  ASSERT_GT(grad, 0.0) << "no step had a non-zero advantage: the comparison below would prove nothing";
  const Weights w0 = weights_of(model), wa = weights_of(a.output_dir), wb = weights_of(b.output_dir);
  const double d = rel_diff(wb, wa, w0, w0);
  std::printf("top_entropy_quantile 0.2: entropy %.4f / %.4f nats (log V = %.4f), loss %.6g / %.6g vs all tokens "
              "%.6g / %.6g, update rel diff %.3g\n",
              rb.log_history[0]["entropy"].get<double>(), rb.log_history[1]["entropy"].get<double>(), std::log(vocab),
              rb.log_history[0]["loss"].get<double>(), rb.log_history[1]["loss"].get<double>(),
              ra.log_history[0]["loss"].get<double>(), ra.log_history[1]["loss"].get<double>(), d);
  EXPECT_GT(d, 1e-3);
  fs::remove_all(root);
}

TEST(GrpoTrainerOptions, CudaDeviceWithoutCudaIsAClearError) {
  if (medr1::cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is visible";
  const auto root = test::make_temp_dir("grpo_dev");
  GRPOConfig c = test::tiny_run_config((root / "no-model").string(), (root / "no-data.json").string(), root / "run");
  for (const char* dev : {"cuda", "cuda:1"}) {
    c.device = dev;
    try {
      train(c, quiet_hooks(nullptr));
      ADD_FAILURE() << "expected an error for device " << dev;
    } catch (const Error& e) {
      const std::string msg = e.what();
#ifdef MEDR1_CUDA
      const std::string why = "no CUDA device is visible";
#else
      const std::string why = "this is a CPU-only build of medr1";
#endif
      EXPECT_NE(msg.find(std::string("--device ") + dev + ": " + why), std::string::npos) << msg;
    }
  }
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "CUDA"}) {
    c.device = bad;
    try {
      c.validate();
      ADD_FAILURE() << "expected validate() to refuse device " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("device: expected cpu, cuda or cuda:N"), std::string::npos) << e.what();
    }
  }
  c.device = "cuda:0";
  EXPECT_NO_THROW(c.validate());
  fs::remove_all(root);
}

// SFT (deterministic: no sampling) so that the bf16 and fp32 runs see the same batches.
TEST(GrpoTrainerOptions, Bf16KeepsFp32MasterWeightsAndTracksTheFp32Update) {
  const auto root = test::make_temp_dir("grpo_bf16");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig f = test::tiny_run_config(model, test::make_demo_slice(root, 2), root / "fp32");
  f.algo = "sft";
  f.max_steps = 2;
  f.save_steps = 2;
  f.learning_rate = 1e-2;
  f.adam_epsilon = 1.0;  // update ~ lr * g: compares the gradients rather than their signs
  GRPOConfig h = f;
  h.output_dir = (root / "bf16").string();
  h.bf16 = true;
  TrainResult rf = train(f, quiet_hooks(nullptr)), rh = train(h, quiet_hooks(nullptr));
  ASSERT_EQ(rh.log_history.size(), 2u);
  for (const auto& rec : rh.log_history) EXPECT_TRUE(std::isfinite(rec["loss"].get<double>()));
  const double lf = rf.log_history[0]["loss"].get<double>(), lh = rh.log_history[0]["loss"].get<double>();
  // The bf16 forward really ran in bf16: its loss differs from the fp32 one, by bf16 rounding only.
  EXPECT_NE(lf, lh);
  EXPECT_NEAR(lf, lh, 2e-2 * std::abs(lf));

  const Weights w0 = weights_of(model), wf = weights_of(f.output_dir), wh = weights_of(h.output_dir);
  size_t off_bf16_grid = 0, total = 0;
  for (const auto& [name, t] : wh) {
    EXPECT_EQ(t.scalar_type(), at::kFloat) << name << ": saved weights are the fp32 master copy";
    // fp32 masters hold updates finer than bf16's 8-bit mantissa: most values are off the bf16 grid.
    off_bf16_grid += static_cast<size_t>((t.to(at::kBFloat16).to(at::kFloat) != t).sum().item<int64_t>());
    total += static_cast<size_t>(t.numel());
  }
  EXPECT_GT(off_bf16_grid, total / 2);
  const Weights opt = io::load_safetensors((fs::path(rh.last_checkpoint) / "optimizer.safetensors").string());
  size_t n_state = 0;
  for (const auto& [name, t] : opt)
    if (name.size() > 8 && (name.find(".exp_avg") != std::string::npos)) {
      EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
      ++n_state;
    }
  EXPECT_GT(n_state, 0u);
  // The bf16 run's masters start from the bf16-loaded weights (as DeepSpeed's fp32 copies of a bf16 module).
  Weights w0_bf16;
  for (const auto& [name, t] : w0) w0_bf16[name] = t.to(at::kBFloat16).to(at::kFloat);
  const double upd = max_abs_update(wh, w0_bf16);
  const double d = rel_diff(wh, wf, w0_bf16, w0);
  std::printf("bf16 vs fp32 (2 SFT steps, lr 1e-2, eps 1): loss %.6f vs %.6f, max update %.3g, "
              "||dW_bf16 - dW_fp32|| / ||dW_fp32|| = %.4f, %zu / %zu master values off the bf16 grid\n",
              lh, lf, upd, d, off_bf16_grid, total);
  EXPECT_GT(upd, 1e-4);
  EXPECT_LT(d, 0.1);
  fs::remove_all(root);
}

TEST(GrpoTrainerOptions, NumIterationsReusesOneGenerationWithClipping) {
  const auto root = test::make_temp_dir("grpo_iters");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig c = test::tiny_run_config(model, test::make_demo_slice(root, 2), root / "run");
  c.num_iterations = 2;
  c.max_steps = 4;  // two generation rounds, each used for two updates
  c.num_generations = 4;
  c.max_completion_length = 6;
  c.learning_rate = 5e-2;  // big: one update moves the log-probs well past the 0.2 clip range
  c.epsilon = 0.2;
  RewardRegistry reg = test::toy_registry();
  TrainerHooks h = quiet_hooks(&reg);
  int calls = 0;
  std::vector<int> calls_at_log;
  const GenerateFn base = default_generate_fn();
  h.generate = [&](model::Qwen2VLForConditionalGeneration& m, const generate::PromptBatch& b,
                   const generate::SamplingParams& sp) {
    ++calls;
    return base(m, b, sp);
  };
  h.on_log = [&](const nlohmann::json&) { calls_at_log.push_back(calls); };
  TrainResult r = train(c, h);
  ASSERT_EQ(r.log_history.size(), 4u);
  // B = 1, GA = 1: one generate call per round; rounds at steps 1 and 3.
  EXPECT_EQ(calls_at_log, (std::vector<int>{1, 1, 2, 2}));
  for (int s : {0, 2}) {
    const auto& first = r.log_history[static_cast<size_t>(s)];
    const auto& second = r.log_history[static_cast<size_t>(s) + 1];
    std::printf("num_iterations 2, round %d: reward %.3f / %.3f, loss %.5f / %.5f, clip_ratio %.3f / %.3f\n",
                s / 2 + 1, first["reward"].get<double>(), second["reward"].get<double>(),
                first["loss"].get<double>(), second["loss"].get<double>(), first["clip_ratio"].get<double>(),
                second["clip_ratio"].get<double>());
    // The same completions (same rewards) are trained twice; the first update starts at ratio 1 (old log-probs
    // = the policy at generation time), so nothing is clipped there.
    EXPECT_EQ(first["reward"].get<double>(), second["reward"].get<double>());
    EXPECT_EQ(first["completion_length"].get<double>(), second["completion_length"].get<double>());
    EXPECT_EQ(first["clip_ratio"].get<double>(), 0.0);
    EXPECT_NE(first["loss"].get<double>(), second["loss"].get<double>());
    EXPECT_GT(first["grad_norm"].get<double>(), 0.0);
    EXPECT_GT(second["grad_norm"].get<double>(), 0.0);
  }
  // After one big update, the second pass over a round's completions is clipped somewhere.
  EXPECT_GT(r.log_history[1]["clip_ratio"].get<double>() + r.log_history[3]["clip_ratio"].get<double>(), 0.0);
  fs::remove_all(root);
}

// 5 prompts, B = 2, GA = 2: the epoch's micro-batches are {2, 2, 1} prompts. HF (dataloader_drop_last False)
// trains steps [2+2], then [1] (the partial micro-batch, a step of one micro-batch at the end of the epoch);
// max_steps = ceil(2 epochs x max(3 // 2, 1)) = 2.
TEST(GrpoTrainerOptions, EpochTailKeepsThePartialBatchAndShortLastStep) {
  const auto root = test::make_temp_dir("grpo_tail");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig c = test::tiny_run_config(model, test::make_demo_slice(root, 5), root / "run");
  c.max_steps = -1;
  c.num_train_epochs = 2;
  c.per_device_train_batch_size = 2;
  c.gradient_accumulation_steps = 2;
  c.max_completion_length = 2;
  RewardRegistry reg = test::toy_registry();
  TrainerHooks h = quiet_hooks(&reg);
  std::vector<double> prompts;  // one fingerprint per generate call (one call per prompt)
  std::vector<size_t> calls_at_log;
  const GenerateFn base = default_generate_fn();
  h.generate = [&](model::Qwen2VLForConditionalGeneration& m, const generate::PromptBatch& b,
                   const generate::SamplingParams& sp) {
    prompts.push_back(b.pixel_values.to(at::kDouble).sum().item<double>() +
                      static_cast<double>(b.input_ids.sum().item<int64_t>()));
    return base(m, b, sp);
  };
  h.on_log = [&](const nlohmann::json&) { calls_at_log.push_back(prompts.size()); };
  TrainResult r = train(c, h);
  ASSERT_EQ(r.global_step, 2);
  EXPECT_EQ(calls_at_log, (std::vector<size_t>{4, 5}));  // 4 prompts, then the 1 left over
  std::vector<double> sorted = prompts;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end()) << "a prompt was drawn twice in one epoch";
  EXPECT_DOUBLE_EQ(r.log_history[0]["epoch"].get<double>(), 0.8);
  EXPECT_DOUBLE_EQ(r.log_history[1]["epoch"].get<double>(), 1.0);
  EXPECT_GT(r.log_history[1]["grad_norm"].get<double>(), 0.0);
  fs::remove_all(root);
}

// A checkpoint written by an epoch's short last step (sampler at the end of its shard) resumes into the next
// epoch exactly: 3 prompts, B = 2 -> steps of {2}, {1} prompts per epoch; resume from checkpoint-2 to step 4.
TEST(GrpoTrainerOptions, ResumeAfterAnEpochTailStepMatchesTheUninterruptedRun) {
  const auto root = test::make_temp_dir("grpo_tail_resume");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig full = test::tiny_run_config(model, test::make_demo_slice(root, 3), root / "full");
  full.algo = "sft";
  full.per_device_train_batch_size = 2;
  full.max_steps = 4;
  full.save_steps = 2;
  GRPOConfig resumed = full;
  resumed.output_dir = (root / "resumed").string();
  resumed.resume = (root / "full" / "checkpoint-2").string();
  TrainResult a = train(full, quiet_hooks(nullptr));
  TrainResult b = train(resumed, quiet_hooks(nullptr));
  ASSERT_EQ(a.log_history.size(), 4u);
  ASSERT_EQ(b.log_history.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(a.log_history[i]["loss"].get<double>(), b.log_history[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(a.log_history[i]["epoch"].get<double>(), b.log_history[i]["epoch"].get<double>()) << "step " << i + 1;
  }
  EXPECT_DOUBLE_EQ(a.log_history[1]["epoch"].get<double>(), 1.0);  // step 2 = the 1-prompt tail of epoch 0
  EXPECT_DOUBLE_EQ(a.log_history[3]["epoch"].get<double>(), 2.0);
  EXPECT_NE(a.log_history[1]["loss"].get<double>(), a.log_history[3]["loss"].get<double>());
  fs::remove_all(root);
}

// optim adamw_torch_fused (torch.optim.AdamW(fused=True)) in the trainer, bf16 (the optimizer steps the fp32
// masters): 3 steps update the weights like adamw_torch's within float rounding, and a resume from checkpoint-1
// (the fused optimizer's state saved and reloaded) ends bit-identical to the uninterrupted fused run.
TEST(GrpoTrainerOptions, FusedAdamWTrainsLikeAdamWAndResumesExactly) {
  if (!fused_adamw_on_cpu()) GTEST_SKIP() << "this LibTorch has no CPU fused AdamW";
  const auto root = test::make_temp_dir("grpo_fused_adamw");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig plain = test::tiny_run_config(model, test::make_demo_slice(root, 3), root / "plain");
  plain.algo = "sft";  // a deterministic loss: the two optimizers see the same gradients at step 1
  plain.bf16 = true;
  plain.max_steps = 3;
  plain.save_steps = 1;
  plain.learning_rate = 1e-2;
  GRPOConfig fused = plain;
  fused.optim = "adamw_torch_fused";
  fused.output_dir = (root / "fused").string();
  GRPOConfig resumed = fused;
  resumed.output_dir = (root / "resumed").string();
  resumed.resume = (root / "fused" / "checkpoint-1").string();
  TrainResult a = train(plain, quiet_hooks(nullptr));
  TrainResult b = train(fused, quiet_hooks(nullptr));
  TrainResult c = train(resumed, quiet_hooks(nullptr));
  ASSERT_EQ(b.global_step, 3);
  ASSERT_EQ(c.global_step, 3);
  const Weights w0 = weights_of(model), wa = weights_of(plain.output_dir), wb = weights_of(fused.output_dir),
                wc = weights_of(resumed.output_dir);
  EXPECT_GT(max_abs_update(wb, w0), 1e-3);
  EXPECT_LT(rel_diff(wb, wa, w0, w0), 1e-3);
  for (const auto& [name, t] : wb) EXPECT_TRUE(at::equal(t, wc.at(name))) << name;
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(b.log_history[i]["loss"].get<double>(), c.log_history[i]["loss"].get<double>()) << "step " << i + 1;
  fs::remove_all(root);
}

// sync_ref_model (TRL SyncRefModelCallback): alpha 1 every step makes the reference the policy of the
// step before, so the KL of the next rollout's logps (taken before that step's update) is ~0;
// without sync it is not. alpha 0.5 every 2 steps resumes from checkpoint-2 (ref_model/ saved) to the
// same step-4 losses, KLs and weights as the uninterrupted run.
TEST(GrpoTrainerOptions, SyncRefModelMixesThePolicyIntoTheReferenceAndResumesExactly) {
  const auto root = test::make_temp_dir("grpo_sync_ref");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig base = test::tiny_run_config(model, test::make_demo_slice(root, 2), root / "plain");
  base.max_steps = 2;
  base.num_generations = 4;
  base.max_completion_length = 6;
  base.beta = 0.04;
  base.learning_rate = 1e-2;
  GRPOConfig synced = base;
  synced.output_dir = (root / "synced").string();
  synced.sync_ref_model = true;
  synced.ref_model_mixup_alpha = 1.0;
  synced.ref_model_sync_steps = 1;
  RewardRegistry reg = test::toy_registry();
  TrainResult rp = train(base, quiet_hooks(&reg)), rs = train(synced, quiet_hooks(&reg));
  ASSERT_EQ(rp.log_history.size(), 2u);
  ASSERT_EQ(rs.log_history.size(), 2u);
  // step 1: the reference is still the start (KL 0 for both: one iteration, logps = ref logps)
  EXPECT_EQ(rp.log_history[0]["kl"].get<double>(), rs.log_history[0]["kl"].get<double>());
  std::printf("sync_ref_model alpha 1: step-2 kl %.3g (plain run %.3g)\n", rs.log_history[1]["kl"].get<double>(),
              rp.log_history[1]["kl"].get<double>());
  // "0" = the floor of step 1, where policy and reference hold the same weights (the no-grad reference
  // forward may take other kernels than the training forward, so not necessarily 0 in every bit)
  const double floor = std::max(1e-9, 10 * rs.log_history[0]["kl"].get<double>());
  EXPECT_LE(rs.log_history[1]["kl"].get<double>(), floor);
  EXPECT_GT(rp.log_history[1]["kl"].get<double>(), 100 * floor);

  GRPOConfig full = base;
  full.output_dir = (root / "full").string();
  full.max_steps = 4;
  full.save_steps = 2;
  full.sync_ref_model = true;
  full.ref_model_mixup_alpha = 0.5;
  full.ref_model_sync_steps = 2;
  GRPOConfig resumed = full;
  resumed.output_dir = (root / "resumed").string();
  resumed.resume = (root / "full" / "checkpoint-2").string();
  TrainResult a = train(full, quiet_hooks(&reg));
  ASSERT_TRUE(fs::exists(root / "full" / "checkpoint-2" / "ref_model" / "config.json"));
  // the saved reference is the mix: 0.5 * start + 0.5 * policy after step 2
  {
    const Weights w0 = weights_of(model), w2 = weights_of((root / "full" / "checkpoint-2").string());
    const Weights r2 = weights_of((root / "full" / "checkpoint-2" / "ref_model").string());
    double worst = 0;
    for (const auto& [n, t] : r2)
      worst = std::max(worst, (t.to(at::kDouble) - 0.5 * (w0.at(n).to(at::kDouble) + w2.at(n).to(at::kDouble)))
                                  .abs()
                                  .max()
                                  .item<double>());
    EXPECT_LT(worst, 1e-6);
  }
  TrainResult b = train(resumed, quiet_hooks(&reg));
  ASSERT_EQ(a.log_history.size(), 4u);
  ASSERT_EQ(b.log_history.size(), 4u);
  for (size_t i = 0; i < 4; ++i)
    for (const char* k : {"loss", "kl", "reward"})
      EXPECT_EQ(a.log_history[i][k].get<double>(), b.log_history[i][k].get<double>()) << k << " step " << i + 1;
  const Weights wa = weights_of(full.output_dir), wb = weights_of(resumed.output_dir);
  for (const auto& [n, t] : wa) EXPECT_TRUE(at::equal(t, wb.at(n))) << n;
  // resuming a run that has mixed, from a checkpoint saved without sync_ref_model, is refused
  GRPOConfig lost = full;
  lost.output_dir = (root / "lost").string();
  lost.sync_ref_model = false;
  lost.max_steps = 2;
  train(lost, quiet_hooks(&reg));
  GRPOConfig bad = full;
  bad.output_dir = (root / "bad").string();
  bad.resume = (root / "lost" / "checkpoint-2").string();
  try {
    train(bad, quiet_hooks(&reg));
    ADD_FAILURE() << "resume without ref_model/ accepted";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no ref_model/ folder"), std::string::npos) << e.what();
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace medr1::rl
