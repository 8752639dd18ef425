// LoRA training (use_peft) on the tiny Qwen2-VL checkpoint: only the adapters train and hold AdamW state; the
// reference policy is the base with adapters off (step 1's KL is exactly 0 because lora_B starts at zero, later
// steps' KL is not); checkpoints and the final folder are PEFT adapter folders; a resumed run ends bit-identical
// to the uninterrupted one; mismatched resumes are refused naming the setting; the final folder loads (merged)
// through load_qwen2_vl.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <map>
#include <set>
#include <string>

#include "grpo_trainer_test_util.h"
#include "medr1/core/error.h"
#include "medr1/io/json_util.h"
#include "medr1/io/safetensors.h"
#include "medr1/model/lora.h"
#include "medr1/model/weight_loader.h"
#include "medr1/rl/grpo_trainer.h"

namespace medr1::rl {
namespace {

namespace fs = test::fs;
using Tensors = std::map<std::string, at::Tensor>;

Tensors adapter_of(const std::string& dir) {
  return io::load_safetensors((fs::path(dir) / "adapter_model.safetensors").string());
}

GRPOConfig lora_config(const std::string& model, const std::string& data, const fs::path& out) {
  GRPOConfig c = test::tiny_run_config(model, data, out);
  c.use_peft = true;
  c.lora_r = 4;
  c.lora_alpha = 8;
  c.lora_dropout = 0.0;
  c.learning_rate = 1e-2;
  c.num_generations = 4;
  c.max_steps = 3;
  c.save_steps = 1;
  c.beta = 0.04;
  return c;
}

TEST(GrpoTrainerLora, TrainsAdaptersOnlyAgainstTheBaseAsReferenceAndResumesExactly) {
  const auto root = test::make_temp_dir("grpo_lora");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing";
  const std::string data = test::make_demo_slice(root, 4);
  RewardRegistry reg = test::toy_registry();
  TrainerHooks h;
  h.progress_bar = false;
  h.rewards = &reg;
  GRPOConfig c = lora_config(model, data, root / "full");
  TrainResult r = train(c, h);
  ASSERT_EQ(r.global_step, 3);

  // The final folder: a PEFT adapter (no full model), with the tokenizer beside it.
  const fs::path out = c.output_dir;
  EXPECT_TRUE(fs::exists(out / "adapter_config.json"));
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
  EXPECT_FALSE(fs::exists(out / "config.json"));
  EXPECT_TRUE(fs::exists(out / "tokenizer.json"));
  const Tensors a = adapter_of(out.string());
  EXPECT_EQ(a.size(), 2u * 7u * 2u);  // 2 layers x 7 projections x (A, B)
  int b_moved = 0;
  for (const auto& [k, t] : a) {
    EXPECT_EQ(k.rfind("base_model.model.model.layers.", 0), 0u) << k;
    EXPECT_EQ(t.scalar_type(), at::kFloat) << k;
    if (k.find(".lora_B.") != std::string::npos && t.abs().max().item<float>() > 0) ++b_moved;
  }
  EXPECT_GT(b_moved, 7) << "most lora_B left zero: nothing trained";

  // KL against the base: exactly 0 while the adapters are still zero (step 1), positive afterwards.
  ASSERT_EQ(r.log_history.size(), 3u);
  EXPECT_EQ(r.log_history[0]["kl"].get<double>(), 0.0);
  EXPECT_GT(r.log_history[2]["kl"].get<double>(), 0.0);
  std::printf("LoRA GRPO: kl per step %.3g %.3g %.3g, %d of 14 lora_B moved\n", r.log_history[0]["kl"].get<double>(),
              r.log_history[1]["kl"].get<double>(), r.log_history[2]["kl"].get<double>(), b_moved);

  // Checkpoints: adapter folders with AdamW state for the adapters only.
  const fs::path ck1 = out / "checkpoint-1";
  EXPECT_TRUE(fs::exists(ck1 / "adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(ck1 / "model.safetensors"));
  std::set<std::string> with_state;
  for (const auto& [k, v] : io::load_safetensors((ck1 / "optimizer.safetensors").string())) {
    const auto pos = k.find(".exp_avg_sq");
    if (pos != std::string::npos) with_state.insert(k.substr(0, pos));
  }
  EXPECT_EQ(with_state.size(), 28u);
  for (const auto& n : with_state) EXPECT_TRUE(model::is_lora_param(n)) << n << " has AdamW state";

  // Resume from checkpoint-1: the same adapters at step 3, bit for bit.
  GRPOConfig more = c;
  more.output_dir = (root / "resumed").string();
  more.resume = (out / "checkpoint-1").string();
  TrainResult r2 = train(more, h);
  EXPECT_EQ(r2.global_step, 3);
  const Tensors b = adapter_of(more.output_dir);
  ASSERT_EQ(b.size(), a.size());
  for (const auto& [k, t] : a) EXPECT_TRUE(at::equal(t, b.at(k))) << k << " differs after resume";

  // Refused: a full run from a LoRA checkpoint, another rank.
  GRPOConfig full = more;
  full.output_dir = (root / "refused_full").string();
  full.use_peft = false;
  try {
    train(full, h);
    ADD_FAILURE() << "a full fine-tune resuming a LoRA checkpoint must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds a LoRA adapter"), std::string::npos) << e.what();
  }
  GRPOConfig rank8 = more;
  rank8.output_dir = (root / "refused_r").string();
  rank8.lora_r = 8;
  try {
    train(rank8, h);
    ADD_FAILURE() << "another lora_r must be refused on resume";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("same LoRA settings"), std::string::npos) << e.what();
  }

  // The adapter folder loads as the merged model (medr1-infer / medr1-eval take it as --model_path).
  auto merged = model::load_qwen2_vl(out.string(), at::kFloat);
  for (const auto& p : merged->named_parameters()) EXPECT_FALSE(model::is_lora_param(p.key())) << p.key();
  fs::remove_all(root);
}

// bf16 runs keep fp32 masters; a resume takes them from the checkpoint (not from the bf16 run weights, which
// hold only their roundings), so the resumed run ends bit-identical, with LoRA and with full fine-tuning.
void bf16_resume_is_exact(bool use_peft) {
  const auto root = test::make_temp_dir(std::string("grpo_bf16_resume_") + (use_peft ? "lora" : "full"));
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing";
  const std::string data = test::make_demo_slice(root, 4);
  RewardRegistry reg = test::toy_registry();
  TrainerHooks h;
  h.progress_bar = false;
  h.rewards = &reg;
  GRPOConfig c = lora_config(model, data, root / "full");
  c.use_peft = use_peft;
  c.bf16 = true;
  if (!use_peft) c.learning_rate = 1e-3;
  train(c, h);
  GRPOConfig more = c;
  more.output_dir = (root / "resumed").string();
  more.resume = (fs::path(c.output_dir) / "checkpoint-1").string();
  train(more, h);
  const std::string file = use_peft ? "adapter_model.safetensors" : "model.safetensors";
  const Tensors a = io::load_safetensors((fs::path(c.output_dir) / file).string());
  const Tensors b = io::load_safetensors((fs::path(more.output_dir) / file).string());
  const Tensors start = io::load_safetensors((fs::path(c.output_dir) / "checkpoint-1" / file).string());
  ASSERT_EQ(a.size(), b.size());
  int moved = 0;
  for (const auto& [k, t] : a) {
    EXPECT_TRUE(at::equal(t, b.at(k))) << k << " differs after a bf16 resume";
    moved += !at::equal(t, start.at(k));
  }
  EXPECT_GT(moved, 0) << "steps 2-3 changed nothing: the comparison would be vacuous";
  fs::remove_all(root);
}

TEST(GrpoTrainerLora, Bf16LoraResumeIsBitIdentical) { bf16_resume_is_exact(true); }
TEST(GrpoTrainerLora, Bf16FullResumeIsBitIdentical) { bf16_resume_is_exact(false); }

TEST(GrpoTrainerLora, SettingsAreValidated) {
  GRPOConfig c;
  c.output_dir = "o";
  c.model_name_or_path = "m";
  c.dataset_name = "d";
  c.use_peft = true;
  c.lora_r = 0;
  try {
    c.validate();
    ADD_FAILURE() << "lora_r 0 must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lora_r"), std::string::npos) << e.what();
  }
  c.lora_r = 8;
  c.sync_ref_model = true;
  try {
    c.validate();
    ADD_FAILURE() << "use_peft + sync_ref_model must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sync_ref_model"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace medr1::rl
