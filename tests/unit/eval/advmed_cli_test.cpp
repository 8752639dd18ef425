// medr1-eval takes AdvMed-R1's flags as written (eval_qwen2_5vl_adversarial.py: --model_path
// --test_data
// --dataset_root --output_path --attack_type --epsilon --pgd_alpha --pgd_iters
// --attn_implementation
// --save_sample_images --batch_size; batch_eval_adversarial.py: --splits_dir --output_dir
// --evaluation_type
// --modalities) and writes AdvMed-R1's single result JSON at --output_path; a second evaluation on
// the same output folder is refused (io/output_lock.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "medr1/core/error.h"
#include "medr1/eval/evaluate.h"
#include "medr1/io/output_lock.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kSrc = MEDR1_SOURCE_DIR;
const std::string kEval = std::string(MEDR1_BINARY_DIR) + "/medr1-eval";
const std::string kTiny = std::string(MEDR1_TEST_DATA) + "/qwen2vl-tiny";
const std::string kTokDir = std::string(MEDR1_TEST_DATA) + "/tokenizer/qwen2vl";

bool ready() { return fs::exists(kEval) && fs::exists(kTokDir + "/tokenizer.json"); }

fs::path fresh(const std::string& name) {
  fs::path d = fs::path(MEDR1_BINARY_DIR) / "test_tmp" / "advmed_cli" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

int run(const std::string& args, const fs::path& log) {
  const std::string cmd =
      kEval + " --tokenizer " + kTokDir + " " + args + " > '" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(AdvMedCli, SingleFileFlagsWriteTheResultJsonAtOutputPath) {
  if (!ready()) GTEST_SKIP() << "medr1-eval or the tokenizer fixture missing";
  const fs::path d = fresh("single");
  const fs::path out = d / "results" / "CT_fgsm.json";
  const int rc = run(
      "--model_path " + kTiny + " --test_data " + kSrc + "/data/demo/test.json --dataset_root " +
          kSrc + "/data/demo --output_path " + out.string() +
          " --attack_type fgsm --epsilon 0.03 --pgd_alpha 0.01 --pgd_iters 2 --attn_implementation "
          "sdpa"
          " --save_sample_images 1 --batch_size 2 --limit 2 --max_new_tokens 4 --max_pixels 3136"
          " --no-progress",
      d / "log.txt");
  const std::string log = slurp(d / "log.txt");
  ASSERT_EQ(rc, 0) << log;
  EXPECT_NE(log.find("attn_implementation: sdpa (at::scaled_dot_product_attention) on cpu"),
            std::string::npos)
      << log;
  std::ifstream in(out);
  ASSERT_TRUE(in.good()) << out;
  const json j = json::parse(in);
  EXPECT_EQ(j.at("attack_type"), "fgsm");
  EXPECT_DOUBLE_EQ(j.at("epsilon").get<double>(), 0.03);
  EXPECT_DOUBLE_EQ(j.at("pgd_alpha").get<double>(), 0.01);
  EXPECT_EQ(j.at("pgd_iters"), 2);
  EXPECT_EQ(j.at("num_samples"), 2);
  EXPECT_EQ(j.at("test_data_path"), kSrc + "/data/demo/test.json");
  ASSERT_EQ(j.at("detailed_results").size(), 2u);
  for (const char* k : {"model_output", "model_answer", "ground_truth", "gt_answer", "correct"})
    EXPECT_TRUE(j["detailed_results"][0].contains(k)) << k;
  int correct = 0;
  for (const auto& r : j["detailed_results"]) correct += r["correct"].get<bool>();
  EXPECT_EQ(j.at("num_correct").get<int>(), correct);
  // The results folder beside it (<output_path minus .json>) holds the rest, sample images
  // included.
  EXPECT_TRUE(fs::exists(d / "results" / "CT_fgsm" / "summary.json"));
  EXPECT_TRUE(fs::exists(d / "results" / "CT_fgsm" / "images"));
}

TEST(AdvMedCli, BatchFlagsAndSeveralResultsRefuseOutputPath) {
  if (!ready()) GTEST_SKIP() << "medr1-eval or the tokenizer fixture missing";
  const fs::path d = fresh("batch");
  const std::string splits = std::string(MEDR1_TEST_DATA) + "/omnimedvqa/Splits";
  // Images missing on purpose: every item becomes an error record, the run itself succeeds.
  int rc = run("--model_path " + kTiny + " --splits_dir " + splits +
                   " --evaluation_type modality --modalities " +
                   "'CT(Computed Tomography)' --dataset_root " + d.string() + " --output_dir " +
                   (d / "out").string() +
                   " --attacks clean --batch_size 2 --limit 1 --max_new_tokens 2 --no-progress",
               d / "log.txt");
  ASSERT_EQ(rc, 0) << slurp(d / "log.txt");
  EXPECT_TRUE(fs::exists(d / "out" / "summary.json"));
  rc = run("--model_path " + kTiny + " --test_data " + kSrc +
               "/data/demo/test.json --output_path " + (d / "two.json").string() +
               " --attacks clean fgsm --limit 1 --max_new_tokens 2 --no-progress",
           d / "log2.txt");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(slurp(d / "log2.txt").find("needs exactly one split and one setting"),
            std::string::npos)
      << slurp(d / "log2.txt");
}

TEST(AdvMedCli, SecondEvaluationOnTheSameOutputFolderIsRefused) {
  if (!ready()) GTEST_SKIP() << "medr1-eval or the tokenizer fixture missing";
  const fs::path d = fresh("lock");
  const medr1::io::OutputLock held = medr1::io::lock_output_dir((d / "out").string());
  medr1::eval::EvalOptions o;
  o.model_dir = kTiny;
  o.tokenizer_dir = kTokDir;
  o.output_dir = (d / "out").string();
  o.splits = medr1::eval::splits_from_args(kSrc + "/data/demo/test.json", "", "");
  o.progress = false;
  try {
    medr1::eval::run_evaluation(o);
    FAIL() << "the second evaluation was not refused";
  } catch (const medr1::Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("output folder " + o.output_dir +
                                   " is in use by another run (pid " + std::to_string(::getpid())),
        std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(d / "out" / "summary.json"));
}

}  // namespace
