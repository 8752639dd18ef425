// Med-R1 prompt-file loading: JSON array, JSONL, folders, resolved image paths, error messages.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <fstream>

#include "medr1/core/error.h"
#include "medr1/data/dataset.h"

namespace fs = std::filesystem;
using namespace medr1::data;

namespace {
fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(MEDR1_BINARY_DIR) / "test_tmp" / "data" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
void write(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const medr1::Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Dataset, JsonArrayWithExtrasAndOptionalSolution) {
  auto d = fresh_dir("array");
  write(d / "a.json", R"([
    {"image": "Images/Chest CT Scan/test/normal/10 (2).png", "problem": "Q1 A)CT, B)MRI",
     "solution": "<answer> A </answer>", "modality_type": "CT", "question_id": 7},
    {"image": "/abs/x.png", "problem": "Q2"}
  ])");
  LoadOptions o;
  o.image_root = "/data/OmniMedVQA";
  auto recs = load_dataset((d / "a.json").string(), o);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].index, 0);
  EXPECT_EQ(recs[0].image, "Images/Chest CT Scan/test/normal/10 (2).png");
  EXPECT_EQ(recs[0].image_path, "/data/OmniMedVQA/Images/Chest CT Scan/test/normal/10 (2).png");
  EXPECT_EQ(recs[0].problem, "Q1 A)CT, B)MRI");
  EXPECT_EQ(recs[0].solution.value_or(""), "<answer> A </answer>");
  EXPECT_EQ(recs[0].extra.at("modality_type"), "CT");
  EXPECT_EQ(recs[0].extra.at("question_id"), 7);
  EXPECT_FALSE(recs[0].extra.contains("image"));
  EXPECT_EQ(recs[1].image_path, "/abs/x.png");  // absolute stays
  EXPECT_FALSE(recs[1].solution.has_value());
  EXPECT_EQ(recs[1].source_file, (d / "a.json").string());
  auto back = record_to_json(recs[0]);
  EXPECT_EQ(back.at("question_id"), 7);
  EXPECT_EQ(back.at("solution"), "<answer> A </answer>");
}

TEST(Dataset, JsonlSkipsBlankLines) {
  auto d = fresh_dir("jsonl");
  write(d / "a.jsonl",
        "{\"image\": \"i0.png\", \"problem\": \"p0\", \"solution\": \"<answer> B </answer>\"}\n"
        "\n"
        "{\"image\": \"i1.png\", \"problem\": \"p1\"}\n");
  auto recs = load_records_file((d / "a.jsonl").string());
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[1].index, 1);
  EXPECT_EQ(recs[1].image_path, "i1.png");  // no root: kept as written
  EXPECT_EQ(recs[1].problem, "p1");
}

TEST(Dataset, FolderSortedAndIndicesContinue) {
  auto d = fresh_dir("folder");
  write(d / "b.jsonl", "{\"image\": \"b.png\", \"problem\": \"pb\"}\n");
  write(d / "a.json", R"([{"image": "a0.png", "problem": "pa0"}, {"image": "a1.png", "problem": "pa1"}])");
  write(d / "notes.txt", "ignored");
  auto files = list_dataset_files(d.string());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(fs::path(files[0]).filename(), "a.json");
  LoadOptions o;
  o.image_root = "root";
  auto recs = load_dataset(d.string(), o);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[2].problem, "pb");
  EXPECT_EQ(recs[2].index, 2);
  EXPECT_EQ(recs[2].file_index, 0);
  EXPECT_EQ(recs[2].image_path, "root/b.png");
}

TEST(Dataset, ErrorsNameFileRecordAndField) {
  auto d = fresh_dir("errors");
  write(d / "missing.json", R"([{"image": "a.png", "problem": "p"}, {"image": "b.png"}])");
  std::string e = error_of([&] { load_records_file((d / "missing.json").string()); });
  EXPECT_NE(e.find("missing.json: record 1: problem: missing"), std::string::npos) << e;

  write(d / "type.jsonl", "{\"image\": \"a.png\", \"problem\": \"p\"}\n\n{\"image\": 3, \"problem\": \"p\"}\n");
  e = error_of([&] { load_records_file((d / "type.jsonl").string()); });
  EXPECT_NE(e.find("type.jsonl: record 1 (line 3): image: expected string, got number"),
            std::string::npos) << e;

  write(d / "nosol.json", R"([{"image": "a.png", "problem": "p"}])");
  LoadOptions o;
  o.require_solution = true;
  e = error_of([&] { load_records_file((d / "nosol.json").string(), o); });
  EXPECT_NE(e.find("record 0: solution: missing"), std::string::npos) << e;

  write(d / "bad.json", "[{\"image\": \"a.png\",");
  e = error_of([&] { load_records_file((d / "bad.json").string()); });
  EXPECT_NE(e.find("bad.json: JSON parse error"), std::string::npos) << e;

  e = error_of([&] { list_dataset_files((d / "nope").string()); });
  EXPECT_NE(e.find("nope: dataset not found"), std::string::npos) << e;
  auto empty = fresh_dir("empty_folder");
  e = error_of([&] { list_dataset_files(empty.string()); });
  EXPECT_NE(e.find("no *.json or *.jsonl"), std::string::npos) << e;
}

TEST(Dataset, Utf8BomAndEmptyFile) {
  auto d = fresh_dir("bom");
  write(d / "bom.json", "\xEF\xBB\xBF[{\"image\": \"a.png\", \"problem\": \"p\"}]");
  write(d / "bom.jsonl", "\xEF\xBB\xBF{\"image\": \"a.png\", \"problem\": \"q\"}\n");
  write(d / "empty.json", "  \n");
  EXPECT_EQ(load_records_file((d / "bom.json").string()).at(0).problem, "p");
  EXPECT_EQ(load_records_file((d / "bom.jsonl").string()).at(0).problem, "q");
  EXPECT_TRUE(load_records_file((d / "empty.json").string()).empty());
}
