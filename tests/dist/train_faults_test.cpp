// Issue 14, faults a training run meets: a NaN loss (fault injection
// MEDR1_FAULT_NONFINITE_LOSS="STEP[:RANK]") stops the run naming the step, the quantity and the
// rank, before the optimizer step, with the last checkpoint intact and no non-finite weight
// written; with --skip_nonfinite_steps true the step's update is skipped and logged; on 2 ranks a
// NaN on one rank stops both (no hang), each naming that rank.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "dist/train_test_util.h"

namespace medr1::dist::testing {
namespace {

std::vector<std::string> with(std::vector<std::string> args, const std::string& key,
                              const std::string& value) {
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == key) {
      args[i + 1] = value;
      return args;
    }
  args.push_back(key);
  args.push_back(value);
  return args;
}

bool all_finite(const fs::path& safetensors) {
  for (const auto& [name, v] : read_f32_safetensors(safetensors))
    for (float x : v)
      if (!std::isfinite(x)) return false;
  return true;
}

std::vector<nlohmann::json> metrics(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream f(p);
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(TrainFaults, NanLossStopsNamingStepAndKeepsTheLastCheckpoint) {
  if (!train_prerequisites()) GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  ScratchDir dir;
  Fixture fx(dir.path);
  const fs::path out = dir.path / "run";
  const auto args = with(fx.grpo_args(out, 1, 3), "--save_steps", "1");
  const pid_t pid = spawn(kTrain, args, {{"MEDR1_FAULT_NONFINITE_LOSS", "2"}}, dir.path / "log");
  const int rc = wait_for(pid, 120);
  const std::string log = read_text(dir.path / "log");
  EXPECT_EQ(rc, 1) << log;
  EXPECT_NE(log.find("step 2: loss is nan (micro-batch 1 of 1) on rank(s) 0; stopped before the "
                     "optimizer step"),
            std::string::npos)
      << log;
  EXPECT_TRUE(fs::exists(out / "checkpoint-1" / "trainer_state.json"));
  EXPECT_FALSE(fs::exists(out / "checkpoint-2"));
  EXPECT_TRUE(all_finite(out / "checkpoint-1" / "model.safetensors"));
  EXPECT_EQ(metrics(out / "metrics.jsonl").size(), 1u);
}

TEST(TrainFaults, SkipNonfiniteStepsSkipsTheUpdateAndGoesOn) {
  if (!train_prerequisites()) GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  ScratchDir dir;
  Fixture fx(dir.path);
  const fs::path out = dir.path / "run";
  auto args =
      with(with(fx.grpo_args(out, 1, 3), "--save_steps", "1"), "--skip_nonfinite_steps", "true");
  const pid_t pid = spawn(kTrain, args, {{"MEDR1_FAULT_NONFINITE_LOSS", "2"}}, dir.path / "log");
  const int rc = wait_for(pid, 120);
  const std::string log = read_text(dir.path / "log");
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(
      log.find("step 2: loss is nan (micro-batch 1 of 1) on rank(s) 0; optimizer update skipped"),
      std::string::npos)
      << log;
  const auto m = metrics(out / "metrics.jsonl");
  ASSERT_EQ(m.size(), 3u);
  EXPECT_FALSE(m[0].contains("nonfinite_step_skipped"));
  EXPECT_EQ(m[1].value("nonfinite_step_skipped", 0.0), 1.0);
  EXPECT_FALSE(m[2].contains("nonfinite_step_skipped"));
  // The skipped step left the weights as they were; the steps around it moved them.
  EXPECT_EQ(max_abs_diff(out / "checkpoint-1" / "model.safetensors",
                         out / "checkpoint-2" / "model.safetensors"),
            0.0);
  EXPECT_GT(max_abs_diff(out / "checkpoint-2" / "model.safetensors",
                         out / "checkpoint-3" / "model.safetensors"),
            0.0);
  EXPECT_TRUE(all_finite(out / "model.safetensors"));
}

TEST(TrainFaults, NanOnOneRankStopsBothRanksNamingIt) {
  if (!train_prerequisites()) GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  ScratchDir dir;
  Fixture fx(dir.path);
  const fs::path out = dir.path / "run";
  const int port = free_port();
  const auto args = fx.grpo_args(out, 1, 2);
  const Env fault = {{"MEDR1_FAULT_NONFINITE_LOSS", "1:1"}};
  Env e0 = rank_env(0, port), e1 = rank_env(1, port);
  e0.insert(e0.end(), fault.begin(), fault.end());
  e1.insert(e1.end(), fault.begin(), fault.end());
  const pid_t r0 = spawn(kTrain, args, e0, dir.path / "r0.log");
  const pid_t r1 = spawn(kTrain, args, e1, dir.path / "r1.log");
  const int rc0 = wait_for(r0, 90), rc1 = wait_for(r1, 30);
  const std::string l0 = read_text(dir.path / "r0.log"), l1 = read_text(dir.path / "r1.log");
  EXPECT_EQ(rc0, 1) << l0;
  EXPECT_EQ(rc1, 1) << l1;
  EXPECT_NE(
      l0.find("step 1: the loss is non-finite on rank(s) 1; stopped before the optimizer step"),
      std::string::npos)
      << l0;
  EXPECT_NE(l1.find("step 1: loss is nan (micro-batch 1 of 1) on rank(s) 1; stopped"),
            std::string::npos)
      << l1;
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
}

}  // namespace
}  // namespace medr1::dist::testing
