// medr1-train data-parallel end to end (issue 6): 2 gloo ranks over a global batch end with the same
// weights as one process with gradient accumulation over that batch (SFT; GRPO with the same logged
// rewards), whether started by the built-in launcher (--nproc-per-node 2) or by hand with torchrun's
// variables; a rank killed mid-run makes the other exit non-zero with a dist message, the last checkpoint
// intact. Runs the medr1-train binary of MEDR1_BINARY_DIR (skips when it or the npm-fetched tokenizer is
// missing); every run has a timeout.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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

namespace medr1::dist {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing::free_port;
using testing::rank_env;
using testing::read_text;
using testing::ScratchDir;
using testing::wait_for;

const fs::path kTrain = fs::path(MEDR1_BINARY_DIR) / "medr1-train";
const fs::path kTokenizer = fs::path(MEDR1_TEST_DATA) / "tokenizer" / "qwen2vl" / "tokenizer.json";

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The vendored tiny Qwen2-VL (fp32 weights) + tokenizer, and the first 4 demo records.
struct Fixture {
  fs::path model, data;
  explicit Fixture(const fs::path& root) {
    const fs::path src = fs::path(MEDR1_TEST_DATA) / "qwen2vl-tiny";
    model = root / "model";
    fs::create_directories(model);
    for (const char* f : {"config.json", "model.safetensors", "preprocessor_config.json", "generation_config.json",
                          "tokenizer_config.json", "chat_template.json"})
      fs::copy_file(src / f, model / f, fs::copy_options::overwrite_existing);
    fs::copy_file(kTokenizer, model / "tokenizer.json", fs::copy_options::overwrite_existing);
    for (const auto& e : fs::directory_iterator(model))
      fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
    std::ifstream f(fs::path(MEDR1_SOURCE_DIR) / "data" / "demo" / "train_easy.json");
    const nlohmann::json all = nlohmann::json::parse(f);
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < 4 && i < all.size(); ++i) out.push_back(all[i]);
    data = root / "train.json";
    std::ofstream(data) << out.dump(1);
    // GRPO prompts: the same 4 records, each solution a bare word (no <answer> tag: the accuracy reward then
    // compares it with the whole stripped completion). The words are among the two likeliest first tokens
    // of the tiny model on these prompts, so with top_k 2 some completions of a group match and others
    // do not: non-zero advantages, a real GRPO update (the test checks the rewards are not all zero).
    nlohmann::json grpo = out;
    const char* words[] = {"strained", "Pump", "strained", "Pump"};
    for (size_t i = 0; i < grpo.size(); ++i) grpo[i]["solution"] = words[i];
    grpo_data = root / "train_grpo.json";
    std::ofstream(grpo_data) << grpo.dump(1);
  }
  fs::path grpo_data;
  // SFT (the tiny model's GRPO rewards are all zero, so GRPO would not move the weights), fp32,
  // B = 1 prompt per micro-batch, lr high enough that two steps move every weight.
  std::vector<std::string> args(const fs::path& out, int ga, int steps, int save_steps = 1000) const {
    return {"--algo", "sft", "--output_dir", out.string(), "--model_name_or_path", model.string(),
            "--dataset_name", data.string(), "--dataset_root", (fs::path(MEDR1_SOURCE_DIR) / "data" / "demo").string(),
            "--prompt_template", "nothink", "--per_device_train_batch_size", "1",
            "--gradient_accumulation_steps", std::to_string(ga), "--max_steps", std::to_string(steps),
            "--save_steps", std::to_string(save_steps), "--learning_rate", "1e-3", "--max_pixels", "3136",
            "--min_pixels", "3136", "--max_completion_length", "4", "--seed", "7", "--logging_steps", "1"};
  }
  // GRPO, fp32: 4 generations of 1 token per prompt sampled from the top 2, accuracy reward, KL beta 0.04
  // (the Med-R1 default), B = 1 prompt per micro-batch.
  std::vector<std::string> grpo_args(const fs::path& out, int ga, int steps) const {
    return {"--algo", "grpo", "--output_dir", out.string(), "--model_name_or_path", model.string(),
            "--dataset_name", grpo_data.string(), "--dataset_root",
            (fs::path(MEDR1_SOURCE_DIR) / "data" / "demo").string(), "--prompt_template", "nothink",
            "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", std::to_string(ga),
            "--max_steps", std::to_string(steps), "--save_steps", "1000", "--learning_rate", "1e-3",
            "--max_pixels", "3136", "--min_pixels", "3136", "--max_completion_length", "1", "--num_generations",
            "4", "--top_k", "2", "--temperature", "1.0", "--beta", "0.04", "--reward_funcs", "accuracy", "--seed",
            "7", "--logging_steps", "1"};
  }
};

pid_t spawn(const std::vector<std::string>& args, const testing::Env& env, const fs::path& log) {
  return testing::spawn(kTrain, args, env, log);
}

// A minimal safetensors reader (F32 tensors only): name -> values.
std::map<std::string, std::vector<float>> read_f32_safetensors(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), static_cast<std::streamsize>(n));
  const nlohmann::json h = nlohmann::json::parse(header);
  std::map<std::string, std::vector<float>> out;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    EXPECT_EQ(it->at("dtype").get<std::string>(), "F32") << it.key();
    const auto off = it->at("data_offsets").get<std::vector<uint64_t>>();
    std::vector<float> v((off[1] - off[0]) / 4);
    f.seekg(static_cast<std::streamoff>(8 + n + off[0]));
    f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
    out[it.key()] = std::move(v);
  }
  return out;
}

// max |a - b| over all tensors (names and sizes must match).
double max_abs_diff(const fs::path& a, const fs::path& b) {
  const auto ta = read_f32_safetensors(a), tb = read_f32_safetensors(b);
  EXPECT_EQ(ta.size(), tb.size());
  double m = 0;
  for (const auto& [name, va] : ta) {
    auto it = tb.find(name);
    if (it == tb.end() || it->second.size() != va.size()) {
      ADD_FAILURE() << name << " missing or resized";
      continue;
    }
    for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(static_cast<double>(va[i]) - it->second[i]));
  }
  return m;
}

bool prerequisites() { return fs::exists(kTrain) && fs::exists(kTokenizer); }

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

std::vector<nlohmann::json> read_metrics(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream f(p);
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
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
