// medr1-eval data-parallel end to end: 2 gloo ranks (built-in launcher --nproc-per-node 2, or torchrun's
// variables set by hand) over two Med-R1 split files write the same per-split result JSONs (accuracy,
// counts, per-item records in index order, the error record of an item whose image is missing) and the
// same summary.json as one process; the FGSM setting too; a rerun of the 2-rank job resumes from the
// per-rank item JSONL without generating anything, and a run with another world size resumes from the
// first one's items. Runs the medr1-eval binary of MEDR1_BINARY_DIR on the vendored tiny Qwen2-VL (skips
// when it or the vendored tokenizer is missing); every run has a timeout.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/dist_test_util.h"

namespace medr1::dist {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using testing::free_port;
using testing::rank_env;
using testing::read_text;
using testing::ScratchDir;
using testing::wait_for;

const fs::path kEval = fs::path(MEDR1_BINARY_DIR) / "medr1-eval";
const fs::path kTokDir = fs::path(MEDR1_TEST_DATA) / "tokenizer" / "qwen2vl";
const fs::path kDemo = fs::path(MEDR1_SOURCE_DIR) / "data" / "demo";
const std::vector<std::string> kSplitNames = {"Demo Phantom", "Modality Recognition"};
const std::string kMissing = "Images/missing/none_test.png";

bool prerequisites() { return fs::exists(kEval) && fs::exists(kTokDir / "tokenizer.json"); }

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

json read_json(const fs::path& p) {
  std::ifstream f(p);
  return json::parse(f);
}

// A Med-R1 Splits/ folder with one modality and one question-type test file of 5 demo records each (odd,
// so the round-robin shards differ in size); the third record of the first points at a missing image.
fs::path write_splits(const fs::path& root) {
  const json all = read_json(kDemo / "test_easy.json");
  json a = json::array(), b = json::array();
  for (size_t i = 0; i < 5; ++i) a.push_back(all.at(i));
  for (size_t i = 5; i < 10; ++i) b.push_back(all.at(i));
  a[2]["image"] = kMissing;
  const fs::path splits = root / "Splits";
  fs::create_directories(splits / "modality" / "test");
  fs::create_directories(splits / "question_type" / "test");
  std::ofstream(splits / "modality" / "test" / (kSplitNames[0] + "_test.json")) << a.dump(1);
  std::ofstream(splits / "question_type" / "test" / (kSplitNames[1] + "_test.json")) << b.dump(1);
  return splits;
}

// Greedy, 3 new tokens, batch 1 (a batch of one computes the same thing whatever the shard, so outputs
// must match exactly), 1 thread per process (2 ranks share 2 cores).
std::vector<std::string> eval_args(const fs::path& splits, const fs::path& out, const std::string& attacks) {
  std::vector<std::string> a = {"--model", (fs::path(MEDR1_TEST_DATA) / "qwen2vl-tiny").string(),
                                "--tokenizer", kTokDir.string(), "--splits-dir", splits.string(),
                                "--evaluation-type", "both", "--dataset-root", kDemo.string(),
                                "--output-dir", out.string(), "--template", "nothink",
                                "--max-new-tokens", "3", "--batch-size", "1", "--max-pixels", "3136",
                                "--threads", "1", "--no-progress", "--attacks"};
  if (attacks.find(' ') == std::string::npos) {
    a.push_back(attacks);
  } else {
    a.push_back(attacks.substr(0, attacks.find(' ')));
    a.push_back(attacks.substr(attacks.find(' ') + 1));
  }
  return a;
}

// One process over clean + fgsm (the reference of the 2-rank runs); made once per test process.
struct Reference {
  ScratchDir dir;
  fs::path splits, out;
  double seconds = 0;
  int rc = -1;
  std::string log;
  Reference() {
    splits = write_splits(dir.path);
    out = dir.path / "single";
    const auto t0 = Clock::now();
    rc = wait_for(testing::spawn(kEval, eval_args(splits, out, "clean fgsm"), {}, dir.path / "single.log"), 55);
    seconds = seconds_since(t0);
    log = read_text(dir.path / "single.log");
  }
};

const Reference& reference() {
  static Reference r;
  return r;
}

// The per-split result file without its timing (items/s is only written by a 1-rank run).
json result_without_timing(const fs::path& p) {
  json j = read_json(p);
  j.erase("items_per_s");
  return j;
}

// summary.json without world_size and the output paths (they name the run's folder).
json summary_without_run(const fs::path& p) {
  json j = read_json(p);
  j.at("meta").erase("world_size");
  for (json& r : j.at("results")) r.erase("output_path");
  return j;
}

// Checks every result file of `settings` and summary.json of `out` against the 1-process reference.
// summary.json is compared when the run covered the reference's settings (clean and fgsm).
void expect_same_results(const fs::path& out, const std::vector<std::string>& settings, bool compare_summary) {
  const Reference& ref = reference();
  int64_t errors = 0;
  for (const std::string& name : kSplitNames) {
    for (const std::string& setting : settings) {
      const std::string file = name + "_" + setting + ".json";
      ASSERT_TRUE(fs::exists(out / file)) << out / file;
      const json one = result_without_timing(ref.out / file), two = result_without_timing(out / file);
      EXPECT_EQ(two.at("accuracy"), one.at("accuracy")) << file;
      EXPECT_EQ(two.at("num_correct"), one.at("num_correct")) << file;
      EXPECT_EQ(two.at("num_samples"), 5) << file;
      // Per-item records: same items, same outputs, in index order.
      const json& r = two.at("results");
      ASSERT_EQ(r.size(), 5u) << file;
      for (size_t i = 0; i < r.size(); ++i) {
        EXPECT_EQ(r[i].at("index").get<int64_t>(), static_cast<int64_t>(i)) << file;
        EXPECT_TRUE(r[i].at("model_output").is_string()) << file;
        if (r[i].contains("error")) {
          ++errors;
          EXPECT_EQ(r[i].at("image").get<std::string>(), kMissing) << file;
          EXPECT_NE(r[i].at("error").get<std::string>().find("none_test.png"), std::string::npos) << r[i];
        }
      }
      EXPECT_EQ(two.at("results"), one.at("results")) << file;
      EXPECT_EQ(two, one) << file;
    }
  }
  // One error item (the missing image) per setting, in the first split.
  EXPECT_EQ(errors, static_cast<int64_t>(settings.size()));
  if (compare_summary) {
    EXPECT_EQ(summary_without_run(out / "summary.json"), summary_without_run(ref.out / "summary.json"));
  }
}

// Every per-rank item JSONL (and attack log) under out/items, with its content.
std::vector<std::pair<fs::path, std::string>> item_files(const fs::path& out) {
  std::vector<std::pair<fs::path, std::string>> files;
  for (const auto& e : fs::recursive_directory_iterator(out / "items"))
    if (e.is_regular_file() && e.path().extension() == ".jsonl") files.emplace_back(e.path(), read_text(e.path()));
  std::sort(files.begin(), files.end());
  return files;
}

TEST(EvalDdp, LauncherTwoRanksEqualSingleProcessAndResumeGeneratesNothing) {
  if (!prerequisites()) GTEST_SKIP() << "needs " << kEval << " and " << kTokDir / "tokenizer.json";
  const Reference& ref = reference();
  ASSERT_EQ(ref.rc, 0) << ref.log;
  ScratchDir dir;
  const fs::path out = dir.path / "ddp";
  std::vector<std::string> args = eval_args(ref.splits, out, "clean fgsm");
  args.insert(args.end(), {"--nproc-per-node", "2", "--master-port", std::to_string(free_port())});
  const auto t0 = Clock::now();
  const int rc = wait_for(testing::spawn(kEval, args, {}, dir.path / "ddp.log"), 55);
  const double t_ddp = seconds_since(t0);
  const std::string log = read_text(dir.path / "ddp.log");
  ASSERT_EQ(rc, 0) << log;
  std::printf("[eval-ddp] single %.2f s, launcher 2 ranks %.2f s (clean + fgsm, 2 splits x 5 items)\n", ref.seconds,
              t_ddp);
  // Both ranks worked on every (split, setting): rank 0 got 3 items of each split, rank 1 got 2.
  for (const std::string& name : kSplitNames) {
    for (const char* setting : {"clean/nothink", "fgsm/nothink"}) {
      EXPECT_NE(log.find(name + " " + setting + ": 3 items"), std::string::npos) << log;
      EXPECT_NE(log.find(name + " " + setting + ": 2 items"), std::string::npos) << log;
    }
  }
  EXPECT_TRUE(fs::exists(out / "items" / "rank0-of-2") && fs::exists(out / "items" / "rank1-of-2"));
  expect_same_results(out, {"clean_nothink", "fgsm_nothink"}, true);
  const json meta = read_json(out / "summary.json").at("meta");
  EXPECT_EQ(meta.at("world_size"), 2);

  // Rerun of the same 2-rank job: every item is already in the rank JSONL files, nothing is generated and the
  // files stay byte for byte; the result files are rebuilt the same.
  const auto before = item_files(out);
  ASSERT_EQ(before.size(), 2u * 2u * 2u + 2u * 2u);  // 2 ranks x 2 splits x 2 settings items + fgsm attack logs
  args.back() = std::to_string(free_port());
  const int rc2 = wait_for(testing::spawn(kEval, args, {}, dir.path / "resume.log"), 55);
  const std::string log2 = read_text(dir.path / "resume.log");
  ASSERT_EQ(rc2, 0) << log2;
  EXPECT_EQ(log2.find(" items in "), std::string::npos) << log2;
  EXPECT_EQ(item_files(out), before);
  expect_same_results(out, {"clean_nothink", "fgsm_nothink"}, true);
}

TEST(EvalDdp, TorchrunVariablesByHandEqualSingleProcess) {
  if (!prerequisites()) GTEST_SKIP() << "needs " << kEval << " and " << kTokDir / "tokenizer.json";
  const Reference& ref = reference();
  ASSERT_EQ(ref.rc, 0) << ref.log;
  ScratchDir dir;
  const fs::path out = dir.path / "ddp";
  const int port = free_port();
  const auto args = eval_args(ref.splits, out, "clean");
  const auto t0 = Clock::now();
  const pid_t r0 = testing::spawn(kEval, args, rank_env(0, port), dir.path / "r0.log");
  const pid_t r1 = testing::spawn(kEval, args, rank_env(1, port), dir.path / "r1.log");
  const int rc0 = wait_for(r0, 55), rc1 = wait_for(r1, 10);
  std::printf("[eval-ddp] torchrun-style 2 ranks %.2f s (clean)\n", seconds_since(t0));
  ASSERT_EQ(rc0, 0) << read_text(dir.path / "r0.log");
  ASSERT_EQ(rc1, 0) << read_text(dir.path / "r1.log");
  expect_same_results(out, {"clean_nothink"}, false);
  // Only rank 0 writes the merged results.
  EXPECT_NE(read_text(dir.path / "r0.log").find("results in"), std::string::npos);
  EXPECT_EQ(read_text(dir.path / "r1.log").find("results in"), std::string::npos);
}

// Resume across world sizes: a 2-rank job started in the output folder of a finished 1-process run takes
// every item from items/*.jsonl; a 1-process run after it (the 1-process files removed) takes them from
// items/rank<r>-of-2/. Neither generates anything, and the results stay those of the reference.
TEST(EvalDdp, ResumeAcrossWorldSizesGeneratesNothing) {
  if (!prerequisites()) GTEST_SKIP() << "needs " << kEval << " and " << kTokDir / "tokenizer.json";
  const Reference& ref = reference();
  ASSERT_EQ(ref.rc, 0) << ref.log;
  ScratchDir dir;
  const fs::path out = dir.path / "out";
  fs::copy(ref.out, out, fs::copy_options::recursive);
  std::vector<std::string> args = eval_args(ref.splits, out, "clean fgsm");
  args.insert(args.end(), {"--nproc-per-node", "2", "--master-port", std::to_string(free_port())});
  const int rc = wait_for(testing::spawn(kEval, args, {}, dir.path / "ddp.log"), 55);
  const std::string log = read_text(dir.path / "ddp.log");
  ASSERT_EQ(rc, 0) << log;
  EXPECT_EQ(log.find(" items in "), std::string::npos) << log;
  EXPECT_NE(log.find("3 items resumed from a run with another world size"), std::string::npos) << log;
  EXPECT_NE(log.find("2 items resumed from a run with another world size"), std::string::npos) << log;
  expect_same_results(out, {"clean_nothink", "fgsm_nothink"}, true);
  EXPECT_EQ(read_json(out / "summary.json").at("meta").at("world_size"), 2);

  for (const auto& e : fs::directory_iterator(out / "items"))
    if (e.is_regular_file()) fs::remove(e.path());
  const auto one_args = eval_args(ref.splits, out, "clean fgsm");
  const int rc1 = wait_for(testing::spawn(kEval, one_args, {}, dir.path / "one.log"), 55);
  const std::string log1 = read_text(dir.path / "one.log");
  ASSERT_EQ(rc1, 0) << log1;
  EXPECT_EQ(log1.find(" items in "), std::string::npos) << log1;
  EXPECT_NE(log1.find("5 items resumed from a run with another world size"), std::string::npos) << log1;
  expect_same_results(out, {"clean_nothink", "fgsm_nothink"}, true);
  // The fgsm result keeps its attack figures (mean losses come from the adopted attack logs).
  const json fgsm = read_json(out / (kSplitNames[1] + "_fgsm_nothink.json"));
  EXPECT_TRUE(fgsm.contains("mean_attack_clean_loss")) << fgsm.dump().substr(0, 400);
}

}  // namespace
}  // namespace medr1::dist
