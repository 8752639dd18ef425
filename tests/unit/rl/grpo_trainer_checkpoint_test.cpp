// Trainer checkpoints: the folder holds every file transformers needs and reloads with identical logits;
// kill -9 in the middle of a checkpoint write (medr1-train child) leaves the previous checkpoint intact and
// --resume latest reproduces the uninterrupted run's losses exactly; a NaN loss stops the run naming the step.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>

#include "grpo_trainer_test_util.h"
#include "medr1/core/error.h"
#include "medr1/io/json_util.h"
#include "medr1/io/safetensors.h"
#include "medr1/model/weight_loader.h"
#include "medr1/rl/grpo_trainer.h"
#include "medr1/rl/train_state.h"

namespace medr1::rl {
namespace {

namespace fs = test::fs;

at::Tensor probe_logits(model::Qwen2VLForConditionalGeneration& m) {
  at::NoGradGuard ng;
  model::Qwen2VLInputs in;
  in.input_ids = at::tensor(std::vector<int64_t>{151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30}).view({1, -1});
  return m->forward(in).logits;
}

TEST(GrpoTrainerCheckpoint, FolderIsCompleteAndReloadsWithIdenticalLogits) {
  const auto root = test::make_temp_dir("grpo_ckpt");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig c = test::tiny_run_config(model, test::make_demo_slice(root, 4), root / "run");
  c.max_steps = 2;
  c.save_steps = 2;
  RewardRegistry reg = test::toy_registry();
  TrainerHooks h;
  h.progress_bar = false;
  h.rewards = &reg;
  TrainResult r = train(c, h);
  ASSERT_EQ(r.last_checkpoint, (root / "run" / "checkpoint-2").string());
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                        "preprocessor_config.json", "chat_template.json", "generation_config.json",
                        "trainer_state.json", "optimizer.safetensors"})
    EXPECT_TRUE(fs::exists(fs::path(r.last_checkpoint) / f)) << f;
  auto ck = model::load_qwen2_vl(r.last_checkpoint);
  auto fin = model::load_qwen2_vl((root / "run").string());
  auto init = model::load_qwen2_vl(model);
  at::Tensor lc = probe_logits(ck), lf = probe_logits(fin), l0 = probe_logits(init);
  EXPECT_TRUE(at::equal(lc, lf));                           // checkpoint == final model (both after step 2)
  EXPECT_GT((lc - l0).abs().max().item<double>(), 1e-4);    // and it trained
  // metrics.jsonl has one record per step with the documented keys.
  std::ifstream mf(root / "run" / "metrics.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(mf, line)) {
    auto j = nlohmann::json::parse(line);
    for (const char* k : {"loss", "reward", "reward_std", "rewards/accuracy", "rewards/format", "kl",
                          "completion_length", "clip_ratio", "learning_rate", "grad_norm", "step_time",
                          "rollout_tokens_per_s", "train_tokens_per_s"})
      EXPECT_TRUE(j.contains(k)) << k;
    ++n;
  }
  EXPECT_EQ(n, 2);
  fs::remove_all(root);
}

std::vector<double> losses(const fs::path& metrics) {
  std::vector<double> out;
  std::ifstream f(metrics);
  std::string line;
  while (std::getline(f, line)) out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return out;
}

// medr1-train started in a child (stdout / stderr quiet), returning its pid.
pid_t spawn_app(const std::vector<std::string>& args) {
  const std::string bin = std::string(MEDR1_BINARY_DIR) + "/medr1-train";
  pid_t pid = fork();
  if (pid == 0) {
    setenv("MEDR1_LOG", "warn", 1);
    const int null_fd = ::open("/dev/null", O_WRONLY);
    if (null_fd >= 0) ::dup2(null_fd, 2);
    std::vector<char*> argv{const_cast<char*>(bin.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// medr1-train in a child; kill_step: MEDR1_TEST_KILL_DURING_SAVE; file_size_limit > 0: RLIMIT_FSIZE (bytes, as
// `ulimit -f` or a full quota); stderr_path: the child's stderr goes there.
int run_app(const std::vector<std::string>& args, const char* kill_step, rlim_t file_size_limit = 0,
            const std::string& stderr_path = "") {
  const std::string bin = std::string(MEDR1_BINARY_DIR) + "/medr1-train";
  pid_t pid = fork();
  if (pid == 0) {
    if (!stderr_path.empty()) {
      const int fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) ::dup2(fd, 2);
    }
    if (file_size_limit > 0) {
      const struct rlimit lim = {file_size_limit, file_size_limit};
      ::setrlimit(RLIMIT_FSIZE, &lim);
    }
    if (kill_step) setenv(kKillDuringSaveEnv, kill_step, 1);
    setenv("MEDR1_LOG", "warn", 1);
    std::vector<char*> argv{const_cast<char*>(bin.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(GrpoTrainerCheckpoint, KillDuringCheckpointWriteThenResumeMatchesUninterruptedLosses) {
  const std::string bin = std::string(MEDR1_BINARY_DIR) + "/medr1-train";
  if (!fs::exists(bin)) GTEST_SKIP() << bin << " not built (cmake --build --target medr1-train)";
  const auto root = test::make_temp_dir("grpo_kill");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig c = test::tiny_run_config(model, test::make_demo_slice(root, 3), root / "x");
  c.max_steps = 5;
  c.save_steps = 2;
  c.num_train_epochs = 1;  // 3 prompts, 5 steps: crosses an epoch boundary (sampler state)
  c.algo = "sft";  // the app uses the Med-R1 rewards, all 0 on an untrained model; SFT moves the weights
  const fs::path cfg_path = root / "cfg.json";
  std::ofstream(cfg_path) << to_json(c).dump(2);
  const auto full = root / "full", killed = root / "killed";
  ASSERT_EQ(run_app({"--config", cfg_path.string(), "--output_dir", full.string()}, nullptr), 0);
  const int st = run_app({"--config", cfg_path.string(), "--output_dir", killed.string()}, "4");
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "status " << st;
  EXPECT_TRUE(fs::exists(killed / "checkpoint-2" / "trainer_state.json"));
  EXPECT_FALSE(fs::exists(killed / "checkpoint-4"));
  EXPECT_TRUE(fs::exists(killed / ".tmp-checkpoint-4"));  // the half-written one
  ASSERT_EQ(run_app({"--config", cfg_path.string(), "--output_dir", killed.string(), "--resume", "latest"}, nullptr),
            0);
  EXPECT_FALSE(fs::exists(killed / ".tmp-checkpoint-4"));
  const auto a = losses(full / "metrics.jsonl"), b = losses(killed / "metrics.jsonl");
  ASSERT_EQ(a.size(), 5u);
  ASSERT_EQ(b.size(), 5u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "step " << i + 1;
  EXPECT_NE(a[2], a[3]);  // the losses really vary across steps
  fs::remove_all(root);
}

// The disk fills during a save (RLIMIT_FSIZE of 1 MB, below the weights file, as a quota would): the run stops
// with an error naming the file and the cause, the previous checkpoint stays complete, no checkpoint-4 folder
// appears (only the temp folder), and --resume latest continues from checkpoint-2 to a complete checkpoint-4.
TEST(GrpoTrainerCheckpoint, DiskFullDuringSaveIsAClearErrorAndKeepsThePreviousCheckpoint) {
  const std::string bin = std::string(MEDR1_BINARY_DIR) + "/medr1-train";
  if (!fs::exists(bin)) GTEST_SKIP() << bin << " not built (cmake --build --target medr1-train)";
  const auto root = test::make_temp_dir("grpo_disk_full");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig c = test::tiny_run_config(model, test::make_demo_slice(root, 3), root / "x");
  c.max_steps = 2;
  c.save_steps = 2;
  c.algo = "sft";
  const fs::path cfg_path = root / "cfg.json";
  std::ofstream(cfg_path) << to_json(c).dump(2);
  const auto out = root / "run";
  ASSERT_EQ(run_app({"--config", cfg_path.string(), "--output_dir", out.string()}, nullptr), 0);
  ASSERT_TRUE(fs::exists(out / "checkpoint-2" / "trainer_state.json"));
  ASSERT_GT(fs::file_size(out / "checkpoint-2" / "model.safetensors"), 1u << 20);
  const auto before = fs::last_write_time(out / "checkpoint-2" / "model.safetensors");
  const std::string err_path = (root / "stderr.txt").string();
  const int st = run_app({"--config", cfg_path.string(), "--output_dir", out.string(), "--resume", "latest",
                          "--max_steps", "4"},
                         nullptr, rlim_t{1} << 20, err_path);
  std::ifstream ef(err_path);
  const std::string err((std::istreambuf_iterator<char>(ef)), std::istreambuf_iterator<char>());
  std::printf("disk full during the step-4 save: exit status %d, stderr tail: %s\n", st,
              err.substr(err.size() > 400 ? err.size() - 400 : 0).c_str());
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) != 0) << "status " << st;
  EXPECT_NE(err.find("File too large"), std::string::npos) << err;
  EXPECT_NE(err.find(".tmp-checkpoint-4"), std::string::npos) << err;  // names the file being written
  EXPECT_NE(err.find("step 4: saving checkpoint-4 failed"), std::string::npos) << err;
  EXPECT_NE(err.find("checkpoint-2, is intact (--resume latest continues from it)"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(out / "checkpoint-4"));
  EXPECT_FALSE(fs::exists(out / ".tmp-checkpoint-4" / "trainer_state.json"));  // nothing looks complete
  EXPECT_TRUE(fs::exists(out / "checkpoint-2" / "trainer_state.json"));
  EXPECT_EQ(fs::last_write_time(out / "checkpoint-2" / "model.safetensors"), before);
  auto m = model::load_qwen2_vl((out / "checkpoint-2").string());  // still loads
  EXPECT_TRUE(probe_logits(m).isfinite().all().item<bool>());
  ASSERT_EQ(run_app({"--config", cfg_path.string(), "--output_dir", out.string(), "--resume", "latest",
                     "--max_steps", "4"},
                    nullptr),
            0);
  EXPECT_TRUE(fs::exists(out / "checkpoint-4" / "trainer_state.json"));
  EXPECT_FALSE(fs::exists(out / ".tmp-checkpoint-4"));
  fs::remove_all(root);
}

// kill -9 at 20 moments of a run: 16 at seeded random times over the uninterrupted run's duration (startup, steps,
// saves, the final save, or after the end) and 4 inside the checkpoint writes of steps 1-4. Each time every
// checkpoint-N folder left is complete, the newest loads (weights and trainer state), and --resume latest ends
// with the uninterrupted run's losses and final weights, bit for bit.
TEST(GrpoTrainerCheckpoint, KillNineAtTwentyMomentsThenResumeEndsBitIdentical) {
  const std::string bin = std::string(MEDR1_BINARY_DIR) + "/medr1-train";
  if (!fs::exists(bin)) GTEST_SKIP() << bin << " not built (cmake --build --target medr1-train)";
  const auto root = test::make_temp_dir("grpo_kill20");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig c = test::tiny_run_config(model, test::make_demo_slice(root, 3), root / "x");
  c.max_steps = 5;
  c.save_steps = 1;  // a checkpoint write in every step: many kills land in one
  c.num_train_epochs = 1;
  c.algo = "sft";
  const fs::path cfg_path = root / "cfg.json";
  std::ofstream(cfg_path) << to_json(c).dump(2);
  auto args = [&](const fs::path& out, bool resume) {
    std::vector<std::string> a = {"--config", cfg_path.string(), "--output_dir", out.string()};
    if (resume) a.insert(a.end(), {"--resume", "latest"});
    return a;
  };
  const auto full = root / "full";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run_app(args(full, false), nullptr), 0);
  const double t_full = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto want_losses = losses(full / "metrics.jsonl");
  const auto want_weights = io::load_safetensors((full / "model.safetensors").string());
  ASSERT_EQ(want_losses.size(), 5u);
  std::mt19937 rng(20261203);
  std::uniform_real_distribution<double> when(0.0, 1.1 * t_full);
  std::printf("uninterrupted run %.2f s; kill -9 at:\n", t_full);
  int in_save = 0, before_any = 0, after_end = 0;
  for (int k = 0; k < 20; ++k) {
    const auto out = root / ("k" + std::to_string(k));
    std::string moment;
    if (k < 4) {  // inside the checkpoint write of step k + 1 (weights written, state not yet)
      const std::string step = std::to_string(k + 1);
      const int st = run_app(args(out, false), step.c_str());
      ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "status " << st;
      moment = "inside the step-" + step + " save";
      ++in_save;
    } else {
      const double t = when(rng);
      const pid_t pid = spawn_app(args(out, false));
      std::this_thread::sleep_for(std::chrono::duration<double>(t));
      ::kill(pid, SIGKILL);
      int st = 0;
      ::waitpid(pid, &st, 0);
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.2f s", t);
      moment = buf;
      if (WIFEXITED(st)) {
        moment += " (had finished)";
        ++after_end;
      }
    }
    // Every checkpoint folder left is complete; the newest loads.
    int64_t newest = 0;
    if (fs::exists(out))
      for (const auto& e : fs::directory_iterator(out)) {
        const std::string n = e.path().filename().string();
        if (n.rfind("checkpoint-", 0) != 0) continue;
        for (const char* f : {"trainer_state.json", "optimizer.safetensors", "model.safetensors", "config.json"})
          EXPECT_TRUE(fs::exists(e.path() / f)) << e.path() << " lacks " << f << " (kill " << k << ")";
        newest = std::max<int64_t>(newest, std::stoll(n.substr(11)));
      }
    if (newest > 0) {
      const auto dir = resolve_resume_dir("latest", out.string());
      ASSERT_TRUE(dir.has_value());
      const TrainerState ts = parse_trainer_state(io::read_json_file((fs::path(*dir) / "trainer_state.json").string()),
                                                  *dir + "/trainer_state.json");
      EXPECT_EQ(ts.global_step, newest);
      auto m = model::load_qwen2_vl(*dir);
      EXPECT_TRUE(probe_logits(m).isfinite().all().item<bool>());
    } else {
      ++before_any;
    }
    ASSERT_EQ(run_app(args(out, true), nullptr), 0) << "resume after kill " << k;
    const auto got_losses = losses(out / "metrics.jsonl");
    const auto got_weights = io::load_safetensors((out / "model.safetensors").string());
    bool same = got_losses == want_losses && got_weights.size() == want_weights.size();
    for (const auto& [n, t] : want_weights) same = same && got_weights.count(n) && at::equal(t, got_weights.at(n));
    std::printf("  %2d  %-24s newest complete checkpoint %lld -> resumed run %s\n", k, moment.c_str(),
                static_cast<long long>(newest), same ? "bit-identical" : "DIFFERENT");
    EXPECT_TRUE(same) << "kill " << k << " at " << moment;
    fs::remove_all(out);
  }
  std::printf("20 kills: %d inside a save by the hook, %d before the first checkpoint, %d after the run ended\n",
              in_save, before_any, after_end);
  fs::remove_all(root);
}

TEST(GrpoTrainerCheckpoint, NanLossStopsNamingTheStep) {
  const auto root = test::make_temp_dir("grpo_nan");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  {
    auto m = model::load_qwen2_vl(model);
    at::NoGradGuard ng;
    m->model->norm->weight.fill_(std::numeric_limits<float>::quiet_NaN());
    model::save_qwen2_vl(m, model);
  }
  GRPOConfig c = test::tiny_run_config(model, test::make_demo_slice(root, 2), root / "run");
  c.algo = "sft";
  TrainerHooks h;
  h.progress_bar = false;
  try {
    train(c, h);
    FAIL() << "expected a NaN error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("step 1: loss is"), std::string::npos) << msg;
    EXPECT_NE(msg.find("nan"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(root / "run" / "model.safetensors"));
  fs::remove_all(root);
}

}  // namespace
}  // namespace medr1::rl
