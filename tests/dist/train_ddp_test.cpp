// medr1-train data-parallel end to end (issue 6): 2 gloo ranks over a global batch end with the same
// weights as one process with gradient accumulation over that batch (SFT; GRPO with the same logged
// rewards), whether started by the built-in launcher (--nproc-per-node 2) or by hand with torchrun's
// variables; a rank killed mid-run makes the other exit non-zero with a dist message, the last checkpoint
// intact. Runs the medr1-train binary of MEDR1_BINARY_DIR (skips when it or the vendored tokenizer is
// missing); every run has a timeout.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/dist_test_util.h"
#include "dist/train_test_util.h"

namespace medr1::dist {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing::Fixture;
using testing::free_port;
using testing::kTokenizer;
using testing::kTrain;
using testing::max_abs_diff;
using testing::rank_env;
using testing::read_metrics;
using testing::read_text;
using testing::ScratchDir;
using testing::seconds_since;
using testing::wait_for;

pid_t spawn(const std::vector<std::string>& args, const testing::Env& env, const fs::path& log) {
  return testing::spawn(kTrain, args, env, log);
}

bool prerequisites() { return testing::train_prerequisites(); }

// One process, GA 2 over a global batch of 2 prompts per step (the reference of the 2-rank runs); run once
// per test process (same fixture content in every test) to keep the suite short.
fs::path single_reference(const Fixture& fx, const fs::path&, double* seconds) {
  static ScratchDir shared;
  static double cached_s = -1;
  const fs::path root = shared.path;
  const fs::path out = root / "single";
  if (cached_s >= 0) {
    *seconds = cached_s;
    return out / "model.safetensors";
  }
  const auto t0 = Clock::now();
  const int rc = wait_for(spawn(fx.args(out, 2, 2), {}, root / "single.log"), 55);
  *seconds = cached_s = seconds_since(t0);
  EXPECT_EQ(rc, 0) << read_text(root / "single.log");
  return out / "model.safetensors";
}

TEST(TrainDdp, LauncherTwoRanksEqualsSingleProcessWithAccumulation) {
  if (!prerequisites()) GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  ScratchDir dir;
  Fixture fx(dir.path);
  double t_single = 0;
  const fs::path ref = single_reference(fx, dir.path, &t_single);

  std::vector<std::string> args = fx.args(dir.path / "ddp", 1, 2);
  args.insert(args.end(), {"--nproc-per-node", "2", "--master-port", std::to_string(free_port())});
  const auto t0 = Clock::now();
  const int rc = wait_for(spawn(args, {}, dir.path / "ddp.log"), 55);
  const double t_ddp = seconds_since(t0);
  ASSERT_EQ(rc, 0) << read_text(dir.path / "ddp.log");
  ASSERT_TRUE(fs::exists(ref));
  const double start_move = max_abs_diff(ref, fx.model / "model.safetensors");
  const double diff = max_abs_diff(ref, dir.path / "ddp" / "model.safetensors");
  std::printf("[ddp] single GA2 %.2f s, launcher 2 ranks %.2f s; weights moved by %.3g; max |ddp - single| = %.3g\n",
              t_single, t_ddp, start_move, diff);
  EXPECT_GT(start_move, 1e-4);  // training really changed the weights (else equality would be vacuous)
  EXPECT_LT(diff, 1e-5);
  // Only rank 0 wrote the metrics: one line per step, with the averaged loss.
  std::ifstream m(dir.path / "ddp" / "metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(m, line)) ++lines;
  EXPECT_EQ(lines, 2);
}

TEST(TrainDdp, TorchrunVariablesByHandEqualSingleProcess) {
  if (!prerequisites()) GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  ScratchDir dir;
  Fixture fx(dir.path);
  double t_single = 0;
  const fs::path ref = single_reference(fx, dir.path, &t_single);
  const int port = free_port();
  const auto t0 = Clock::now();
  const pid_t r0 = spawn(fx.args(dir.path / "ddp", 1, 2), rank_env(0, port), dir.path / "r0.log");
  const pid_t r1 = spawn(fx.args(dir.path / "ddp", 1, 2), rank_env(1, port), dir.path / "r1.log");
  const int rc0 = wait_for(r0, 55), rc1 = wait_for(r1, 10);
  const double t_ddp = seconds_since(t0);
  ASSERT_EQ(rc0, 0) << read_text(dir.path / "r0.log");
  ASSERT_EQ(rc1, 0) << read_text(dir.path / "r1.log");
  const double diff = max_abs_diff(ref, dir.path / "ddp" / "model.safetensors");
  std::printf("[ddp] torchrun-style 2 ranks %.2f s; max |ddp - single| = %.3g\n", t_ddp, diff);
  EXPECT_LT(diff, 1e-5);
}

// GRPO: rollouts are seeded by (seed, step, dataset index), so 2 ranks x GA 1 sample the same completions
// as 1 process x GA 2 over the same 2 prompts per step; rewards, advantages, the KL against the reference
// and the update must then agree.
TEST(TrainDdp, GrpoTwoRanksEqualsSingleProcessWithAccumulation) {
  if (!prerequisites()) GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  ScratchDir dir;
  Fixture fx(dir.path);
  const auto t0 = Clock::now();
  const int rc1 = wait_for(spawn(fx.grpo_args(dir.path / "single", 2, 2), {}, dir.path / "single.log"), 55);
  const double t_single = seconds_since(t0);
  ASSERT_EQ(rc1, 0) << read_text(dir.path / "single.log");
  std::vector<std::string> args = fx.grpo_args(dir.path / "ddp", 1, 2);
  args.insert(args.end(), {"--nproc-per-node", "2", "--master-port", std::to_string(free_port())});
  const auto t1 = Clock::now();
  const int rc2 = wait_for(spawn(args, {}, dir.path / "ddp.log"), 55);
  const double t_ddp = seconds_since(t1);
  ASSERT_EQ(rc2, 0) << read_text(dir.path / "ddp.log");

  const fs::path ref = dir.path / "single" / "model.safetensors";
  const double start_move = max_abs_diff(ref, fx.model / "model.safetensors");
  const double diff = max_abs_diff(ref, dir.path / "ddp" / "model.safetensors");
  std::printf("[ddp] GRPO single GA2 %.2f s, launcher 2 ranks %.2f s; weights moved by %.3g; max |ddp - single| = "
              "%.3g\n", t_single, t_ddp, start_move, diff);
  EXPECT_GT(start_move, 1e-4);  // GRPO really changed the weights (else equality would be vacuous)
  EXPECT_LT(diff, 1e-6);

  // The logged metrics of every step agree: rewards exactly (same completions), the losses and the KL to
  // float rounding (they are averaged over ranks instead of accumulated).
  const auto one = read_metrics(dir.path / "single" / "metrics.jsonl");
  const auto two = read_metrics(dir.path / "ddp" / "metrics.jsonl");
  ASSERT_EQ(one.size(), 2u);
  ASSERT_EQ(two.size(), 2u);
  double reward_std_sum = 0;
  for (size_t k = 0; k < one.size(); ++k) {
    for (const char* key : {"reward", "reward_std", "rewards/accuracy", "completion_length", "step"})
      EXPECT_EQ(two[k].at(key), one[k].at(key)) << "step " << k + 1 << " " << key;
    for (const char* key : {"loss", "kl", "grad_norm", "clip_ratio", "learning_rate"})
      EXPECT_NEAR(two[k].at(key).get<double>(), one[k].at(key).get<double>(),
                  1e-6 * (1 + std::abs(one[k].at(key).get<double>())))
          << "step " << k + 1 << " " << key;
    reward_std_sum += one[k].at("reward_std").get<double>();
  }
  EXPECT_GT(reward_std_sum, 0.0) << "all rewards of a group equal: zero advantages, nothing to compare";
}

// LoRA: only the adapters are trainable, so only they are averaged over the ranks; the adapters of 2 ranks x GA 1
// equal those of 1 process x GA 2, and the base weights are never written.
TEST(TrainDdp, LoraTwoRanksEqualsSingleProcessWithAccumulation) {
  if (!prerequisites()) GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  ScratchDir dir;
  Fixture fx(dir.path);
  auto lora = [](std::vector<std::string> a) {
    a.insert(a.end(), {"--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0",
                       "--learning_rate", "1e-2"});
    return a;
  };
  const int rc1 = wait_for(spawn(lora(fx.grpo_args(dir.path / "single", 2, 2)), {}, dir.path / "single.log"), 55);
  ASSERT_EQ(rc1, 0) << read_text(dir.path / "single.log");
  std::vector<std::string> args = lora(fx.grpo_args(dir.path / "ddp", 1, 2));
  args.insert(args.end(), {"--nproc-per-node", "2", "--master-port", std::to_string(free_port())});
  const int rc2 = wait_for(spawn(args, {}, dir.path / "ddp.log"), 55);
  ASSERT_EQ(rc2, 0) << read_text(dir.path / "ddp.log");
  const fs::path ref = dir.path / "single" / "adapter_model.safetensors";
  ASSERT_TRUE(fs::exists(ref));
  EXPECT_FALSE(fs::exists(dir.path / "ddp" / "model.safetensors"));
  double b_max = 0;
  for (const auto& [k, v] : testing::read_f32_safetensors(ref))
    if (k.find(".lora_B.") != std::string::npos)
      for (float x : v) b_max = std::max(b_max, static_cast<double>(std::abs(x)));
  const double diff = max_abs_diff(ref, dir.path / "ddp" / "adapter_model.safetensors");
  std::printf("[ddp] LoRA GRPO: max |lora_B| after 2 steps %.3g (0 at the start); max |ddp - single| = %.3g\n", b_max,
              diff);
  EXPECT_GT(b_max, 1e-4);  // the adapters really trained
  EXPECT_LT(diff, 1e-6);
}

// DAPO dynamic sampling under data parallelism: refill decides together (every rank draws the same
// generation batches, so the sampler positions stay equal) and the ranks may train different numbers of
// micro-batches, none included; the run ends, every trained group has reward spread, and the epoch is the
// prompts drawn over the shard. Reward: an external Python scorer (completion length mod 3), so some
// groups of G = 4 one-token completions agree and some do not.
TEST(TrainDdp, DynamicSamplingRefillTwoRanksDecideTogether) {
  if (!prerequisites()) GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  ScratchDir dir;
  Fixture fx(dir.path);
  const fs::path scorer = dir.path / "score.py";
  std::ofstream(scorer) << "import json, sys\n"
                           "for line in sys.stdin:\n"
                           "    d = json.loads(line)\n"
                           "    print(json.dumps({'rewards': [len(c) % 3 / 2 for c in d['completions']]}), flush=True)\n";
  std::vector<std::string> args = fx.grpo_args(dir.path / "ddp", 2, 3);
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "--reward_funcs") args[i + 1] = "external:python3 " + scorer.string();
  args.insert(args.end(), {"--dynamic_sampling", "refill", "--max_num_gen_batches", "3", "--log_completions", "true",
                           "--nproc-per-node", "2", "--master-port", std::to_string(free_port())});
  const int rc = wait_for(spawn(args, {}, dir.path / "ddp.log"), 90);
  ASSERT_EQ(rc, 0) << read_text(dir.path / "ddp.log");
  const std::vector<nlohmann::json> m = read_metrics(dir.path / "ddp" / "metrics.jsonl");
  ASSERT_EQ(m.size(), 3u);
  double drawn = 0;  // prompts per rank
  for (const nlohmann::json& r : m) {
    const double gb = r.at("dynamic_sampling/gen_batches").get<double>();
    std::printf("[ddp] refill step %lld: %g generation batches, kept ratio %.3f, groups trained per rank %.2f\n",
                static_cast<long long>(r.at("step").get<int64_t>()), gb,
                r.at("dynamic_sampling/kept_group_ratio").get<double>(),
                r.at("dynamic_sampling/groups_trained").get<double>());
    EXPECT_EQ(gb, std::round(gb)) << "the ranks drew different numbers of generation batches";
    EXPECT_GE(gb, 1.0);
    EXPECT_LE(gb, 3.0);
    EXPECT_LE(r.at("dynamic_sampling/groups_trained").get<double>(), 2.0);
    drawn += gb * 2;  // GA 2 x B 1 prompts per generation batch
  }
  EXPECT_NEAR(m.back().at("epoch").get<double>(), drawn / 2.0, 1e-9);  // 4 records: 2 per rank
  // Rank 0's rows, a group's 4 in a row: each trained group's rewards differ, and a prompt drawn twice in
  // a step (refill crossed an epoch) got new samples the second time.
  std::vector<nlohmann::json> rows;
  std::ifstream f(dir.path / "ddp" / "completions.jsonl");
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(rows.size() % 4, 0u);
  std::map<std::pair<int64_t, int64_t>, std::vector<std::string>> seen;  // (step, prompt) -> completions
  for (size_t g = 0; g < rows.size(); g += 4) {
    std::vector<double> r;
    std::string texts;
    for (size_t i = g; i < g + 4; ++i) {
      EXPECT_EQ(rows[i].at("prompt_index"), rows[g].at("prompt_index"));
      EXPECT_EQ(rows[i].at("generation").get<size_t>(), i - g);
      r.push_back(rows[i].at("reward").get<double>());
      texts += rows[i].at("completion").get<std::string>() + "\x1f";
    }
    const std::pair<int64_t, int64_t> key{rows[g].at("step").get<int64_t>(), rows[g].at("prompt_index").get<int64_t>()};
    EXPECT_GT(*std::max_element(r.begin(), r.end()), *std::min_element(r.begin(), r.end()))
        << "step " << key.first << " prompt " << key.second << " has no reward spread but was trained";
    for (const std::string& before : seen[key]) EXPECT_NE(before, texts) << "step " << key.first << " prompt " << key.second << " trained twice on the same samples";
    seen[key].push_back(texts);
  }
}

TEST(TrainDdp, KilledRankMakesTheOtherFailWithMessage) {
  if (!prerequisites()) GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  ScratchDir dir;
  Fixture fx(dir.path);
  const int port = free_port();
  const fs::path out = dir.path / "ddp";
  const pid_t r0 = spawn(fx.args(out, 1, 100000, 2), rank_env(0, port), dir.path / "r0.log");
  const pid_t r1 = spawn(fx.args(out, 1, 100000, 2), rank_env(1, port), dir.path / "r1.log");
  // Wait until two steps are logged (and checkpointed), then kill rank 1.
  const auto t0 = Clock::now();
  while (seconds_since(t0) < 40) {
    if (fs::exists(out / "checkpoint-2" / "trainer_state.json")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(fs::exists(out / "checkpoint-2")) << read_text(dir.path / "r0.log");
  kill(r1, SIGKILL);
  const auto t_kill = Clock::now();
  EXPECT_EQ(wait_for(r1, 10), 128 + SIGKILL);
  const int rc0 = wait_for(r0, 30);
  const double t_exit = seconds_since(t_kill);
  const std::string log = read_text(dir.path / "r0.log");
  std::printf("[ddp] rank 0 exited %d, %.2f s after rank 1 was killed\n", rc0, t_exit);
  EXPECT_NE(rc0, 0);
  EXPECT_NE(rc0, -1) << "rank 0 hung";
  EXPECT_NE(log.find("dist:"), std::string::npos) << log;
  // The last checkpoint is complete (atomic save behind barriers): weights and trainer state.
  int last = 0;
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("checkpoint-", 0) == 0) last = std::max(last, std::stoi(n.substr(11)));
  }
  ASSERT_GE(last, 2);
  const fs::path ck = out / ("checkpoint-" + std::to_string(last));
  EXPECT_TRUE(fs::exists(ck / "model.safetensors") || fs::exists(ck / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(ck / "trainer_state.json"));
}

}  // namespace
}  // namespace medr1::dist
