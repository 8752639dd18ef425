// Per-split evaluation arithmetic and the Med-R1-compatible result JSON.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "medr1/core/error.h"
#include "medr1/eval/metrics.h"

using namespace medr1::eval;
using medr1::data::Record;

namespace {
Record rec(int64_t i, const std::string& sol) {
  Record r;
  r.index = i;
  r.image = "Images/X/" + std::to_string(i) + ".png";
  r.problem = "Q" + std::to_string(i) + " A)CT, B)MRI";
  r.solution = sol;
  return r;
}
}  // namespace

TEST(Metrics, AccuracyCountsEveryRecord) {
  SplitMetrics m("CT(Computed Tomography)", "modality", "clean/think");
  m.add(score_item(rec(0, "<answer> A </answer>"), "<think>t</think><answer> A </answer>"));
  m.add(score_item(rec(1, "<answer> B </answer>"), "<answer> b </answer>"));  // case ignored
  m.add(score_item(rec(2, "<answer> B </answer>"), "<answer> A </answer>"));
  m.add(score_item(rec(3, "<answer> A </answer>"), "I think it is A"));        // unparseable
  m.add(error_item(rec(4, "<answer> A </answer>"), "image not found"));
  m.add(score_item(rec(5, "A"), "<answer> A </answer>"));                      // GT unparseable
  m.add(score_item(rec(6, "<answer> C </answer>"), "<answer> C </answer>"));
  m.add(score_item(rec(7, "<answer> D </answer>"), ""));                       // unparseable
  EXPECT_EQ(m.num_samples, 8);
  EXPECT_EQ(m.num_correct, 3);
  EXPECT_EQ(m.num_unparseable, 2);
  EXPECT_EQ(m.num_errors, 1);
  EXPECT_EQ(m.num_gt_unparseable, 1);
  EXPECT_DOUBLE_EQ(m.accuracy(), 37.5);
  EXPECT_DOUBLE_EQ(m.unparseable_rate(), 25.0);
  SplitMetrics empty;
  EXPECT_DOUBLE_EQ(empty.accuracy(), 0.0);
}

TEST(Metrics, ResultJsonMatchesMedR1Fields) {
  SplitMetrics m("X-Ray", "modality", "clean/nothink");
  m.add(score_item(rec(2, "<answer> B </answer>"), "<answer> A </answer>"));
  m.add(score_item(rec(1, "<answer> B </answer>"), "<answer> B </answer>"));
  m.add(error_item(rec(0, "<answer> A </answer>"), "OOM"));
  auto j = m.to_json({{"model_path", "/ckpt"}, {"attack_type", "clean"}});
  EXPECT_NEAR(j.at("accuracy").get<double>(), 100.0 / 3.0, 1e-12);
  EXPECT_EQ(j.at("num_samples"), 3);
  EXPECT_EQ(j.at("num_correct"), 1);
  EXPECT_EQ(j.at("num_errors"), 1);
  EXPECT_EQ(j.at("model_path"), "/ckpt");
  EXPECT_EQ(j.at("split"), "X-Ray");
  const auto& res = j.at("results");
  ASSERT_EQ(res.size(), 3u);
  EXPECT_EQ(res[0].at("index"), 0);  // sorted by index
  EXPECT_EQ(res[0].at("error"), "OOM");
  EXPECT_TRUE(res[0].at("extracted_answer").is_null());
  EXPECT_EQ(res[1].at("question"), "Q1 A)CT, B)MRI");
  EXPECT_EQ(res[1].at("ground_truth"), "<answer> B </answer>");
  EXPECT_EQ(res[1].at("model_output"), "<answer> B </answer>");
  EXPECT_EQ(res[1].at("extracted_answer"), "B");
  EXPECT_EQ(res[1].at("gt_answer"), "B");
  EXPECT_EQ(res[1].at("correct"), true);
  EXPECT_EQ(res[1].at("image"), "Images/X/1.png");
  EXPECT_FALSE(res[1].contains("error"));
  EXPECT_EQ(res[2].at("correct"), false);
}

TEST(Metrics, ItemJsonRoundTrip) {
  auto a = score_item(rec(9, "<answer> C </answer>"), "<answer> C </answer>");
  auto b = item_from_json(item_to_json(a));
  EXPECT_EQ(b.index, 9);
  EXPECT_EQ(b.extracted_answer.value_or(""), "C");
  EXPECT_TRUE(b.correct);
  EXPECT_FALSE(b.error.has_value());
  auto e = item_from_json(item_to_json(error_item(rec(1, "<answer> C </answer>"), "boom")));
  EXPECT_EQ(e.error.value_or(""), "boom");
  EXPECT_FALSE(e.extracted_answer.has_value());
  EXPECT_THROW(item_from_json({{"index", 1}}, "out.jsonl: line 1"), medr1::Error);
}

TEST(Metrics, ResumedItemsAndAtomicJson) {
  std::vector<nlohmann::json> lines = {
      item_to_json(score_item(rec(0, "<answer> A </answer>"), "<answer> A </answer>")),
      item_to_json(score_item(rec(1, "<answer> B </answer>"), "no tags"))};
  SplitMetrics m("s", "", "clean/think");
  m.add_json_items(lines, "out.jsonl");
  EXPECT_EQ(m.num_samples, 2);
  EXPECT_EQ(m.num_correct, 1);
  EXPECT_EQ(m.num_unparseable, 1);
  lines.push_back({{"index", 2}});
  try {
    m.add_json_items(lines, "out.jsonl");
    FAIL() << "expected an error";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("out.jsonl: item 2"), std::string::npos) << e.what();
  }
  namespace fs = std::filesystem;
  const fs::path p = fs::path(MEDR1_BINARY_DIR) / "test_tmp" / "metrics" / "CT(x)_clean_think.json";
  fs::remove(p);
  write_json_atomic(p.string(), m.to_json());
  std::ifstream in(p);
  auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("num_samples"), 2);  // the failed call added nothing
  EXPECT_FALSE(fs::exists(p.string() + ".tmp"));
}
