// Freezing on the tiny Qwen2-VL checkpoint: freeze_vision_modules trains the language model only (every
// visual.* weight of the saved checkpoint equals the start, the others moved, no optimizer state for
// visual.*), freeze_language_model the reverse, in fp32 and bf16 (no fp32 master copy of a frozen
// parameter, saved folder still complete and fp32), and both at once is refused naming the fields.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "grpo_trainer_test_util.h"
#include "medr1/core/error.h"
#include "medr1/io/safetensors.h"
#include "medr1/model/weight_loader.h"
#include "medr1/rl/grpo_trainer.h"
#include "medr1/rl/train_phases.h"

namespace medr1::rl {
namespace {

namespace fs = test::fs;
using Weights = std::map<std::string, at::Tensor>;

Weights weights_of(const std::string& dir) {
  return io::load_safetensors((fs::path(dir) / "model.safetensors").string());
}

bool is_vision(const std::string& name) { return name.rfind("visual.", 0) == 0; }

struct Moved {
  int vision_moved = 0, vision_total = 0, text_moved = 0, text_total = 0;
};

Moved compare(const Weights& w, const Weights& w0, bool bf16_start) {
  Moved m;
  for (const auto& [name, t] : w0) {
    if (!w.count(name)) {
      ADD_FAILURE() << name << " missing from the saved checkpoint";
      continue;
    }
    at::Tensor start = bf16_start ? t.to(at::kBFloat16).to(at::kFloat) : t.to(at::kFloat);
    const bool moved = !at::equal(w.at(name).to(at::kFloat), start);
    if (is_vision(name)) {
      m.vision_total++;
      m.vision_moved += moved;
    } else {
      m.text_total++;
      m.text_moved += moved;
    }
  }
  EXPECT_EQ(w.size(), w0.size()) << "the saved folder holds every weight";
  return m;
}

std::set<std::string> optimizer_params(const std::string& ckpt) {
  std::set<std::string> out;
  for (const auto& [k, v] : io::load_safetensors((fs::path(ckpt) / "optimizer.safetensors").string())) {
    const auto pos = k.find(".exp_avg_sq");
    if (pos != std::string::npos) out.insert(k.substr(0, pos));
  }
  return out;
}

void run_frozen(bool freeze_vision, bool bf16) {
  const auto root = test::make_temp_dir(std::string("grpo_freeze_") + (freeze_vision ? "v" : "l") +
                                        (bf16 ? "_bf16" : ""));
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing";
  GRPOConfig c = test::tiny_run_config(model, test::make_demo_slice(root, 2), root / "out");
  c.algo = "sft";  // a deterministic, non-zero gradient on every parameter of both halves
  c.max_steps = 2;
  c.save_steps = 2;
  c.learning_rate = 1e-2;
  c.bf16 = bf16;
  c.freeze_vision_modules = freeze_vision;
  c.freeze_language_model = !freeze_vision;
  TrainerHooks h;
  h.progress_bar = false;
  TrainResult r = train(c, h);
  const Weights w0 = weights_of(model), w = weights_of(c.output_dir);
  const Moved m = compare(w, w0, bf16);
  std::printf("%s frozen (%s): vision %d / %d tensors moved, language model %d / %d moved\n",
              freeze_vision ? "vision" : "language model", bf16 ? "bf16" : "fp32", m.vision_moved,
              m.vision_total, m.text_moved, m.text_total);
  for (const auto& [name, t] : w) EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
  if (freeze_vision) {
    EXPECT_EQ(m.vision_moved, 0);
    EXPECT_GT(m.text_moved, m.text_total / 2);
  } else {
    EXPECT_EQ(m.text_moved, 0);
    EXPECT_GT(m.vision_moved, m.vision_total / 2);
  }
  const std::set<std::string> state = optimizer_params(r.last_checkpoint);
  EXPECT_FALSE(state.empty());
  for (const auto& name : state) EXPECT_NE(is_vision(name), freeze_vision) << name << " has AdamW state";
  if (freeze_vision && !bf16) {
    // Resume: under the same flag one more step, the vision tower still untouched; without it refused.
    GRPOConfig more = c;
    more.output_dir = (root / "more").string();
    more.resume = r.last_checkpoint;
    more.max_steps = 3;
    more.save_steps = 3;
    train(more, h);
    const Moved m2 = compare(weights_of(more.output_dir), w0, false);
    EXPECT_EQ(m2.vision_moved, 0);
    GRPOConfig unfrozen = more;
    unfrozen.output_dir = (root / "unfrozen").string();
    unfrozen.freeze_vision_modules = false;
    try {
      train(unfrozen, h);
      ADD_FAILURE() << "resuming a frozen-vision checkpoint without the flag must be refused";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("freeze_vision_modules true"), std::string::npos) << e.what();
    }
  }
  fs::remove_all(root);
}

TEST(GrpoTrainerFreeze, FreezeVisionModulesTrainsTheLanguageModelOnly) { run_frozen(true, false); }
TEST(GrpoTrainerFreeze, FreezeVisionModulesInBf16) { run_frozen(true, true); }
TEST(GrpoTrainerFreeze, FreezeLanguageModelTrainsTheVisionTowerOnly) { run_frozen(false, false); }

TEST(GrpoTrainerFreeze, ApplyFreezingCountsAndRefusesBoth) {
  const auto root = test::make_temp_dir("grpo_freeze_count");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing";
  auto policy = model::load_qwen2_vl(model, at::kFloat);
  int64_t vision = 0, all = 0;
  for (auto& p : policy->named_parameters()) {
    all += p.value().numel();
    if (is_vision(p.key())) vision += p.value().numel();
  }
  ASSERT_GT(vision, 0);
  ASSERT_LT(vision, all);
  auto [t0, n0] = apply_freezing(*policy, false, false);
  EXPECT_EQ(t0, all);
  EXPECT_EQ(n0, all);
  auto [t1, n1] = apply_freezing(*policy, true, false);
  EXPECT_EQ(t1, all - vision);
  EXPECT_EQ(n1, all);
  for (auto& p : policy->named_parameters()) EXPECT_NE(p.value().requires_grad(), is_vision(p.key())) << p.key();
  try {
    apply_freezing(*policy, true, true);
    ADD_FAILURE() << "both frozen must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("freeze_language_model"), std::string::npos) << e.what();
  }
  GRPOConfig c = test::tiny_run_config(model, test::make_demo_slice(root, 2), root / "out");
  c.freeze_vision_modules = c.freeze_language_model = true;
  try {
    c.validate(1, 32768);
    ADD_FAILURE() << "validate must refuse both";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("freeze_vision_modules"), std::string::npos) << e.what();
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace medr1::rl
