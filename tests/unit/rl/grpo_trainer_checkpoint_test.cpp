// Trainer checkpoints: the folder holds every file transformers needs and reloads with identical logits;
// kill -9 in the middle of a checkpoint write (medr1-train child) leaves the previous checkpoint intact and
// --resume latest reproduces the uninterrupted run's losses exactly; a NaN loss stops the run naming the step.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>

#include "grpo_trainer_test_util.h"
#include "medr1/core/error.h"
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

int run_app(const std::vector<std::string>& args, const char* kill_step) {
  const std::string bin = std::string(MEDR1_BINARY_DIR) + "/medr1-train";
  pid_t pid = fork();
  if (pid == 0) {
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
