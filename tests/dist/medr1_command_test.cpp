// Med-R1's README training command as written (README.md of Med-R1, MEDR1_REFERENCE.md §1.1), run
// through the real torchrun of the project's venv (`torchrun --no-python ... medr1-train` in place
// of grpo_vqa_nothink.py): every flag it passes is accepted (--report_to wandb warns once,
// --attn_implementation flash_attention_2 logs what ran,
// --bf16, --gradient_checkpointing false, --save_only_model true), 2 ranks over gloo, on the tiny
// fixture for 2 steps. And: a second medr1-train on the same output_dir is refused, naming the
// holder.
#include <gtest/gtest.h>
#include <sys/file.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "dist/train_test_util.h"

namespace medr1::dist::testing {
namespace {

fs::path torchrun_path() {
  const char* py = std::getenv("MEDR1_PYTHON");
  if (py == nullptr || *py == '\0') return {};
  const fs::path p = fs::path(py).parent_path() / "torchrun";
  return fs::exists(p) ? p : fs::path{};
}

int count_lines(const fs::path& p) {
  std::ifstream f(p);
  std::string line;
  int n = 0;
  while (std::getline(f, line))
    if (!line.empty()) ++n;
  return n;
}

TEST(MedR1Command, ReadmeCommandRunsUnderTheRealTorchrun) {
  const fs::path torchrun = torchrun_path();
  if (torchrun.empty()) GTEST_SKIP() << "no torchrun beside MEDR1_PYTHON";
  if (!fs::exists(kTrain) || !fs::exists(kTokenizer))
    GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  ScratchDir dir;
  Fixture fx(dir.path);
  const fs::path out = dir.path / "output" / "Modality_CT";
  // Med-R1 README.md, verbatim but for the paths and the script (grpo_vqa_nothink.py ->
  // medr1-train, nothink template); then the test's size: 2 steps, 16 new tokens, images under
  // data/demo.
  std::vector<std::string> args = {
      "--nproc_per_node=2", "--nnodes=1", "--node_rank=0", "--master_addr=127.0.0.1",
      "--master_port=" + std::to_string(free_port()), "--no-python", kTrain.string(),
      "--output_dir", out.string(), "--model_name_or_path", fx.model.string(), "--dataset_name",
      fx.data.string(), "--max_prompt_length", "1024", "--per_device_train_batch_size", "1",
      "--gradient_accumulation_steps", "2", "--logging_steps", "1", "--bf16", "--report_to",
      "wandb", "--gradient_checkpointing", "false", "--attn_implementation", "flash_attention_2",
      "--max_pixels", "401408", "--num_train_epochs", "2", "--run_name", "Qwen2.5-VL-3B-GRPO-CT",
      "--save_steps", "200", "--save_only_model", "true", "--num_generations", "4",
      // the test's size
      "--prompt_template", "nothink", "--dataset_root",
      (fs::path(MEDR1_SOURCE_DIR) / "data" / "demo").string(), "--max_steps", "2",
      "--max_completion_length", "16", "--seed", "7"};
  const fs::path log = dir.path / "torchrun.log";
  const pid_t pid = spawn(torchrun, args, {}, log);
  const int rc = wait_for(pid, 240);
  const std::string text = read_text(log);
  std::printf("[torchrun log]\n%s\n", text.c_str());
  ASSERT_EQ(rc, 0) << text;
  EXPECT_EQ(count_lines(out / "metrics.jsonl"), 2);
  EXPECT_TRUE(fs::exists(out / "config.json"));
  EXPECT_TRUE(fs::exists(out / "model.safetensors") ||
              fs::exists(out / "model.safetensors.index.json"));
  EXPECT_NE(text.find("rank 0 of 2 (gloo, cpu)"), std::string::npos) << text;
  EXPECT_NE(text.find("rank 1 of 2 (gloo, cpu)"), std::string::npos) << text;
  EXPECT_NE(text.find("report_to wandb: Weights & Biases is not built into medr1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("attn_implementation: flash_attention_2 -> sdpa "
                      "(at::scaled_dot_product_attention) on cpu"),
            std::string::npos)
      << text;
  bool events = false;
  for (const auto& e : fs::recursive_directory_iterator(out))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) events = true;
  EXPECT_TRUE(events) << "no TensorBoard event file under " << out;
}

// The run folder's lock (io/output_lock.h: "<output_dir>/.medr1.lock", flock) held by another
// process: medr1-train exits 1 at start with a message naming the holder and writes nothing into
// the folder.
TEST(MedR1Command, SecondTrainOnTheSameOutputDirIsRefused) {
  if (!fs::exists(kTrain) || !fs::exists(kTokenizer))
    GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  ScratchDir dir;
  Fixture fx(dir.path);
  const fs::path out = dir.path / "run";
  fs::create_directories(out);
  const std::string lock = (out / ".medr1.lock").string();
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const std::string holder =
      "pid 4242 on node7, medr1-train --output_dir run, since 2026-12-02T10:00:00Z\n";
  ASSERT_EQ(::write(fd, holder.data(), holder.size()), static_cast<ssize_t>(holder.size()));
  const fs::path log = dir.path / "second.log";
  const pid_t pid = spawn(kTrain, fx.grpo_args(out, 1, 1), {}, log);
  const int rc = wait_for(pid, 60);
  const std::string text = read_text(log);
  EXPECT_EQ(rc, 1) << text;
  EXPECT_NE(
      text.find("output folder " + out.string() +
                " is in use by another run (pid 4242 on node7, medr1-train --output_dir run, since "
                "2026-12-02T10:00:00Z): wait for it to finish or stop it"),
      std::string::npos)
      << text;
  EXPECT_FALSE(fs::exists(out / "metrics.jsonl"));
  EXPECT_FALSE(fs::exists(out / "resolved_config.json"));
  ::close(fd);
  // Lock released: the same command now runs.
  const pid_t again = spawn(kTrain, fx.grpo_args(out, 1, 1), {}, dir.path / "again.log");
  EXPECT_EQ(wait_for(again, 120), 0) << read_text(dir.path / "again.log");
}

}  // namespace
}  // namespace medr1::dist::testing
