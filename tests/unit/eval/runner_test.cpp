// run_split: scores, writes JSONL + result JSON, resumes without regenerating, isolates failures.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "medr1/core/error.h"
#include "medr1/eval/runner.h"

namespace fs = std::filesystem;
using namespace medr1::eval;
using medr1::data::Record;

namespace {
std::vector<Record> records(int n) {
  std::vector<Record> v;
  for (int i = 0; i < n; ++i) {
    Record r;
    r.index = 100 + i;
    r.image = "Images/S/" + std::to_string(i) + ".png";
    r.problem = "Q";
    r.problem += std::to_string(i);  // not "Q" + to_string: GCC 12 -O3 false -Wstringop-overflow
    r.solution = std::string("<answer> ") + "ABCD"[i % 4] + " </answer>";
    v.push_back(r);
  }
  return v;
}
// Answers A for every record: correct exactly where i % 4 == 0.
std::vector<std::string> say_a(const std::vector<const Record*>& b) {
  return std::vector<std::string>(b.size(), "<think>x</think><answer> A </answer>");
}
fs::path fresh(const std::string& name) {
  fs::path d = fs::path(MEDR1_BINARY_DIR) / "test_tmp" / "runner" / name;
  fs::remove_all(d);
  return d;
}
}  // namespace

TEST(Runner, ScoresAndWritesFiles) {
  SplitRunOptions o;
  o.output_dir = fresh("basic").string();
  o.batch_size = 3;
  o.show_progress = false;
  o.meta = {{"model_path", "m"}};
  auto res = run_split("CT(Computed Tomography)", records(8), say_a, o);
  EXPECT_EQ(res.metrics.num_samples, 8);
  EXPECT_EQ(res.metrics.num_correct, 2);  // indices 0 and 4
  EXPECT_DOUBLE_EQ(res.metrics.accuracy(), 25.0);
  EXPECT_EQ(fs::path(res.json_path).filename(), "CT(Computed Tomography)_clean_think.json");
  EXPECT_EQ(fs::path(res.jsonl_path).filename(), "CT(Computed Tomography)_clean_think.jsonl");
  std::ifstream in(res.json_path);
  auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("num_correct"), 2);
  EXPECT_EQ(j.at("model_path"), "m");
  EXPECT_EQ(j.at("results").size(), 8u);
  EXPECT_EQ(j.at("results")[4].at("index"), 104);
  EXPECT_EQ(j.at("results")[4].at("correct"), true);
}

TEST(Runner, ResumeSkipsDoneItemsAfterKill) {
  SplitRunOptions o;
  o.output_dir = fresh("resume").string();
  o.show_progress = false;
  auto recs = records(6);
  // A killed earlier run: items 100 and 101 done, 102 half-written.
  fs::create_directories(o.output_dir);
  {
    std::ofstream f(fs::path(o.output_dir) / "S_clean_think.jsonl", std::ios::binary);
    f << item_to_json(score_item(recs[0], "<answer> A </answer>")).dump() << "\n"
      << item_to_json(score_item(recs[1], "<answer> B </answer>")).dump() << "\n"
      << "{\"index\":102,\"question\":\"Q";
  }
  std::vector<int64_t> asked;
  auto gen = [&](const std::vector<const Record*>& b) {
    for (const auto* r : b) asked.push_back(r->index);
    return say_a(b);
  };
  auto res = run_split("S", recs, gen, o);
  EXPECT_EQ(asked, (std::vector<int64_t>{102, 103, 104, 105}));
  EXPECT_EQ(res.n_resumed, 2);
  EXPECT_EQ(res.n_generated, 4);
  EXPECT_EQ(res.metrics.num_samples, 6);
  EXPECT_EQ(res.metrics.num_correct, 3);  // 100 and 101 from the old run, 104 now
  asked.clear();
  auto again = run_split("S", recs, gen, o);  // everything done: nothing regenerated
  EXPECT_TRUE(asked.empty());
  EXPECT_EQ(again.metrics.num_correct, 3);
}

TEST(Runner, FailingRecordBecomesErrorItem) {
  SplitRunOptions o;
  o.output_dir = fresh("errors").string();
  o.batch_size = 4;
  o.show_progress = false;
  int calls = 0;
  auto gen = [&](const std::vector<const Record*>& b) {
    ++calls;
    for (const auto* r : b)
      if (r->index == 102) throw medr1::Error("cannot read image " + r->image);
    return say_a(b);
  };
  auto res = run_split("S", records(4), gen, o);
  EXPECT_EQ(calls, 1 + 4);  // the batch, then each record alone
  EXPECT_EQ(res.metrics.num_errors, 1);
  EXPECT_EQ(res.metrics.num_samples, 4);
  EXPECT_EQ(res.metrics.num_correct, 1);
  const auto& bad = res.metrics.results[2];
  EXPECT_EQ(bad.index, 102);
  EXPECT_EQ(bad.error.value_or(""), "cannot read image Images/S/2.png");
  auto wrong = [](const std::vector<const Record*>&) { return std::vector<std::string>{}; };
  o.output_dir = fresh("wrong_count").string();
  EXPECT_THROW(run_split("S", records(2), wrong, o), medr1::Error);
}

// A record without a solution (load_split keeps it): an error item naming its file and record, counted in
// the split's errors, never sent to the generator; the other records are scored as usual.
TEST(Runner, RecordWithoutSolutionIsAnErrorItemAndNotGenerated) {
  SplitRunOptions o;
  o.output_dir = fresh("no_solution").string();
  o.batch_size = 2;
  o.show_progress = false;
  std::vector<Record> recs = records(4);
  recs[1].solution.reset();
  recs[1].source_file = "Splits/modality/test/CT_test.json";
  recs[1].file_index = 1;
  std::vector<int64_t> seen;
  auto gen = [&](const std::vector<const Record*>& b) {
    for (const auto* r : b) seen.push_back(r->index);
    return say_a(b);
  };
  auto res = run_split("S", recs, gen, o);
  EXPECT_EQ(seen, (std::vector<int64_t>{100, 102, 103}));
  EXPECT_EQ(res.metrics.num_samples, 4);
  EXPECT_EQ(res.metrics.num_errors, 1);
  EXPECT_EQ(res.metrics.num_correct, 1);  // record 100 (A)
  bool found = false;
  for (const auto& item : res.metrics.results)
    if (item.index == 101) {
      found = true;
      EXPECT_EQ(item.error.value_or(""), "Splits/modality/test/CT_test.json: record 1: no \"solution\": cannot be scored");
    }
  EXPECT_TRUE(found);
  // resume: nothing regenerated, the error item stays one line
  seen.clear();
  o.resume = true;
  auto again = run_split("S", recs, gen, o);
  EXPECT_TRUE(seen.empty());
  EXPECT_EQ(again.metrics.num_samples, 4);
  EXPECT_EQ(again.metrics.num_errors, 1);
}
