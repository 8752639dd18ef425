// DAPO dynamic sampling in real GRPO steps on the tiny Qwen2-VL checkpoint (toy reward: completion byte
// length mod 3, so some groups of G = 2 agree and some do not).
//  - drop: step 1 trains exactly the groups with reward spread of the same step without dynamic sampling
//    (same seeds, same weights: the same completions), with their rewards and advantages, and logs the kept
//    ratio those groups give;
//  - refill: every trained group has spread, the step holds GA x B of them when the prompts allow, and the
//    prompts consumed are gen_batches x GA x B;
//  - a reward that never differs: drop and refill train no group (refill stops at max_num_gen_batches),
//    the weights stay as they were, and nothing crashes;
//  - the config refuses unknown modes, G = 1 and SFT.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "grpo_trainer_test_util.h"
#include "medr1/core/error.h"
#include "medr1/io/safetensors.h"
#include "medr1/rl/advantages.h"
#include "medr1/rl/grpo_trainer.h"

namespace medr1::rl {
namespace {

namespace fs = test::fs;

// (prompt_index, generation) -> completions.jsonl row of `step`.
std::map<std::pair<int64_t, int64_t>, nlohmann::json> rows_of_step(const fs::path& out, int64_t step) {
  std::map<std::pair<int64_t, int64_t>, nlohmann::json> rows;
  std::ifstream f(out / "completions.jsonl");
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.at("step").get<int64_t>() != step) continue;
    rows[{j.at("prompt_index").get<int64_t>(), j.at("generation").get<int64_t>()}] = j;
  }
  return rows;
}

// prompt_index -> whether its G rewards differ.
std::map<int64_t, bool> spread_by_prompt(const std::map<std::pair<int64_t, int64_t>, nlohmann::json>& rows,
                                         int64_t G) {
  std::map<int64_t, std::vector<double>> rewards;
  for (const auto& [key, row] : rows) rewards[key.first].push_back(row.at("reward").get<double>());
  std::map<int64_t, bool> out;
  for (const auto& [p, r] : rewards) {
    EXPECT_EQ(static_cast<int64_t>(r.size()), G) << "prompt " << p;
    out[p] = groups_with_reward_spread(r, G).at(0);
  }
  return out;
}

GRPOConfig dynamic_config(const std::string& model, const std::string& data, const fs::path& out) {
  GRPOConfig c = test::tiny_run_config(model, data, out);
  c.reward_funcs = {"accuracy"};  // the toy length score alone: groups agree often enough
  c.per_device_train_batch_size = 2;
  c.gradient_accumulation_steps = 2;
  c.max_steps = 1;
  c.log_completions = true;
  c.beta = 0.0;
  return c;
}

// A temp folder with the tiny model, and hooks scoring with `reg` (model "": the tokenizer fixture is missing).
struct DynamicRun {
  fs::path root;
  std::string model;
  RewardRegistry reg;
  TrainerHooks h;
  DynamicRun(const std::string& tag, RewardRegistry r)
      : root(test::make_temp_dir(tag)), model(test::make_tiny_model_dir(root)), reg(std::move(r)) {
    h.progress_bar = false;
    h.rewards = &reg;
  }
  DynamicRun(const DynamicRun&) = delete;
  DynamicRun& operator=(const DynamicRun&) = delete;
  ~DynamicRun() { fs::remove_all(root); }
};

TEST(GroupsWithRewardSpread, StdAboveZeroNanIgnored) {
  const double nan = std::nan("");
  EXPECT_EQ(groups_with_reward_spread({1, 1, 0, 1, nan, 1, nan, nan, 2, 2.5}, 2),
            (std::vector<bool>{false, true, false, false, true}));
  EXPECT_EQ(groups_with_reward_spread({0.5, 0.5, 0.5, 0.5, 0.5, 0.25}, 3), (std::vector<bool>{false, true}));
  EXPECT_THROW(groups_with_reward_spread({1, 2, 3}, 2), Error);
}

TEST(GrpoTrainerDynamic, DropTrainsExactlyTheGroupsWithSpread) {
  DynamicRun run("grpo_dyn_drop", test::toy_registry());
  if (run.model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing";
  const fs::path& root = run.root;
  const std::string& model = run.model;
  const TrainerHooks& h = run.h;
  const std::string data = test::make_demo_slice(root, 8);

  GRPOConfig plain = dynamic_config(model, data, root / "plain");
  const TrainResult rp = train(plain, h);
  const auto all = rows_of_step(root / "plain", 1);
  ASSERT_EQ(all.size(), 8u);  // 4 prompts x G 2
  const std::map<int64_t, bool> spread = spread_by_prompt(all, 2);
  int64_t with_spread = 0;
  for (const auto& [p, s] : spread) with_spread += s ? 1 : 0;
  std::printf("step 1 without dynamic sampling: %lld of %zu groups have reward spread\n",
              static_cast<long long>(with_spread), spread.size());
  // The toy reward must give both kinds, or the test shows nothing (seeded: fixed outcome).
  ASSERT_GT(with_spread, 0);
  ASSERT_LT(with_spread, 4);

  GRPOConfig drop = dynamic_config(model, data, root / "drop");
  drop.dynamic_sampling = "drop";
  const TrainResult rd = train(drop, h);
  const auto kept = rows_of_step(root / "drop", 1);
  EXPECT_EQ(static_cast<int64_t>(kept.size()), 2 * with_spread);
  for (const auto& [key, row] : kept) {
    ASSERT_TRUE(spread.at(key.first)) << "dropped-group prompt " << key.first << " was trained";
    const nlohmann::json& ref = all.at(key);
    EXPECT_EQ(row.at("completion"), ref.at("completion"));
    EXPECT_EQ(row.at("reward").get<double>(), ref.at("reward").get<double>());
    EXPECT_NEAR(row.at("advantage").get<double>(), ref.at("advantage").get<double>(), 1e-6);
  }
  const nlohmann::json& rec = rd.log_history.at(0);
  EXPECT_DOUBLE_EQ(rec.at("dynamic_sampling/gen_batches").get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(rec.at("dynamic_sampling/kept_group_ratio").get<double>(),
                   static_cast<double>(with_spread) / 4.0);
  EXPECT_DOUBLE_EQ(rec.at("dynamic_sampling/groups_trained").get<double>(), static_cast<double>(with_spread));
  EXPECT_FALSE(rp.log_history.at(0).contains("dynamic_sampling/gen_batches"));
}

TEST(GrpoTrainerDynamic, RefillFillsTheBatchWithGroupsWithSpread) {
  DynamicRun run("grpo_dyn_refill", test::toy_registry());
  if (run.model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing";
  const fs::path& root = run.root;
  const std::string& model = run.model;
  const TrainerHooks& h = run.h;
  GRPOConfig c = dynamic_config(model, test::make_demo_slice(root, 32), root / "out");
  c.dynamic_sampling = "refill";
  c.max_num_gen_batches = 8;  // 32 prompts: the sampler has 8 batches of GA x B = 4 per epoch
  c.max_steps = 2;
  const TrainResult r = train(c, h);
  ASSERT_EQ(r.log_history.size(), 2u);
  double consumed = 0;
  for (int64_t step = 1; step <= 2; ++step) {
    const nlohmann::json& rec = r.log_history.at(static_cast<size_t>(step - 1));
    const double gen_batches = rec.at("dynamic_sampling/gen_batches").get<double>();
    const double trained = rec.at("dynamic_sampling/groups_trained").get<double>();
    std::printf("step %lld: %g generation batches, kept ratio %.3f, %g groups trained\n",
                static_cast<long long>(step), gen_batches, rec.at("dynamic_sampling/kept_group_ratio").get<double>(),
                trained);
    const auto rows = rows_of_step(root / "out", step);
    EXPECT_EQ(static_cast<double>(rows.size()), 2 * trained);
    for (const auto& [p, s] : spread_by_prompt(rows, 2)) EXPECT_TRUE(s) << "step " << step << " prompt " << p;
    // Groups with spread over all the generation batches: a full batch of them ended the refill early;
    // else the budget ran out and the step trains what it found.
    const double kept_groups = std::round(rec.at("dynamic_sampling/kept_group_ratio").get<double>() * gen_batches * 4);
    EXPECT_GE(gen_batches, 1.0);
    EXPECT_LE(gen_batches, 8.0);
    if (gen_batches < 8) {
      EXPECT_EQ(trained, 4.0);
      EXPECT_GE(kept_groups, 4.0);
    }
    EXPECT_EQ(trained, std::min(4.0, kept_groups));
    consumed += gen_batches * 4;
  }
  // The sampler moved by every prompt the generation batches drew (epoch = consumed / 32).
  EXPECT_NEAR(r.log_history.at(1).at("epoch").get<double>(), consumed / 32.0, 1e-9);
}

// A refill run resumed from checkpoint-1 ends bit-identical to the uninterrupted one (the sampler position
// after the extra generation batches and the rollout seeds are restored).
TEST(GrpoTrainerDynamic, RefillResumeIsBitIdentical) {
  DynamicRun run("grpo_dyn_resume", test::toy_registry());
  if (run.model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing";
  const fs::path& root = run.root;
  const std::string& model = run.model;
  const TrainerHooks& h = run.h;
  GRPOConfig c = dynamic_config(model, test::make_demo_slice(root, 12), root / "full");
  c.dynamic_sampling = "refill";
  c.max_steps = 3;
  c.save_steps = 1;
  c.log_completions = false;
  const TrainResult r1 = train(c, h);
  GRPOConfig more = c;
  more.output_dir = (root / "resumed").string();
  more.resume = (root / "full" / "checkpoint-1").string();
  const TrainResult r2 = train(more, h);
  ASSERT_EQ(r2.global_step, 3);
  const auto a = io::load_safetensors((root / "full" / "model.safetensors").string());
  const auto b = io::load_safetensors((root / "resumed" / "model.safetensors").string());
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(t.equal(b.at(name))) << name << " differs after resume";
  for (size_t i = 1; i < 3; ++i)
    EXPECT_EQ(r1.log_history.at(i).at("dynamic_sampling/gen_batches"),
              r2.log_history.at(i).at("dynamic_sampling/gen_batches"));
  std::printf("refill gen_batches per step: %g %g %g\n", r1.log_history[0]["dynamic_sampling/gen_batches"].get<double>(),
              r1.log_history[1]["dynamic_sampling/gen_batches"].get<double>(),
              r1.log_history[2]["dynamic_sampling/gen_batches"].get<double>());
}

TEST(GrpoTrainerDynamic, NoSpreadAnywhereTrainsNothingAndStopsAtTheBudget) {
  RewardRegistry constant = default_registry();
  constant.add("accuracy", [](const RewardInputs& in) { return std::vector<double>(in.completions.size(), 1.0); });
  DynamicRun run("grpo_dyn_none", std::move(constant));
  if (run.model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing";
  const fs::path& root = run.root;
  const std::string& model = run.model;
  const TrainerHooks& h = run.h;
  const std::string data = test::make_demo_slice(root, 16);
  for (const char* mode : {"drop", "refill"}) {
    GRPOConfig c = dynamic_config(model, data, root / mode);
    c.dynamic_sampling = mode;
    c.max_num_gen_batches = 3;
    c.save_only_model = true;
    const TrainResult r = train(c, h);
    const nlohmann::json& rec = r.log_history.at(0);
    EXPECT_DOUBLE_EQ(rec.at("dynamic_sampling/gen_batches").get<double>(), std::string(mode) == "drop" ? 1.0 : 3.0)
        << mode;
    EXPECT_DOUBLE_EQ(rec.at("dynamic_sampling/kept_group_ratio").get<double>(), 0.0) << mode;
    EXPECT_DOUBLE_EQ(rec.at("dynamic_sampling/groups_trained").get<double>(), 0.0) << mode;
    EXPECT_DOUBLE_EQ(rec.at("grad_norm").get<double>(), 0.0) << mode;
    // No group trained, no update: the saved weights are the initial ones.
    const auto before = io::load_safetensors((fs::path(model) / "model.safetensors").string());
    const auto after = io::load_safetensors((root / mode / "model.safetensors").string());
    ASSERT_EQ(before.size(), after.size());
    for (const auto& [name, t] : before) EXPECT_TRUE(t.equal(after.at(name))) << mode << " " << name;
  }
}

TEST(GrpoTrainerDynamic, ConfigRefusesWhatCannotWork) {
  GRPOConfig c;
  c.output_dir = "/tmp/x";
  c.model_name_or_path = "/tmp/m";
  c.dynamic_sampling = "sometimes";
  EXPECT_THROW(c.validate(), Error);
  c.dynamic_sampling = "refill";
  c.validate();
  c.max_num_gen_batches = -1;
  EXPECT_THROW(c.validate(), Error);
  c.max_num_gen_batches = 0;
  c.num_generations = 1;
  c.per_device_train_batch_size = 1;
  EXPECT_THROW(c.validate(), Error);
  c.num_generations = 4;
  c.per_device_train_batch_size = 4;
  c.top_entropy_quantile = 0.2;
  c.validate();                   // one process: fine
  EXPECT_THROW(c.validate(2), Error);  // ranks keep different micro-batch counts
  c.top_entropy_quantile = 1.0;
  c.algo = "sft";
  EXPECT_THROW(c.validate(), Error);
}

}  // namespace
}  // namespace medr1::rl
