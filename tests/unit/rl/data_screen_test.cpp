// The training-data screen (rl/data_screen.h): one record of each kind of bad data, each recorded with
// its kind and file position, counted, and skipped or kept as documented; then a GRPO run over such a
// split trains on the good records and leaves data_issues.jsonl + data_summary.json.
#include "medr1/rl/data_screen.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "grpo_trainer_test_util.h"
#include "medr1/core/error.h"
#include "medr1/data/dataset.h"
#include "medr1/rl/grpo_trainer.h"
#include "medr1/rl/rollout.h"
#include "medr1/tokenizer/tokenizer.h"
#include "medr1/vision/image_io.h"
#include "medr1/vision/image_processor.h"

namespace medr1::rl {
namespace {

namespace fs = std::filesystem;

const fs::path kDemo = fs::path(MEDR1_SOURCE_DIR) / "data" / "demo";
const char* kGoodImage = "Images/Synthetic CT Phantom/ct_000.png";
const char* kProblem = "Which imaging modality is shown in this image? A)CT, B)MRI, C)X-Ray, D)Fundus Photography";

// The bad-data split: one record per kind, then two good ones. Writes a corrupt PNG and a big image
// under root/Images.
std::string write_bad_split(const fs::path& root) {
  fs::create_directories(root / "Images");
  for (const char* img : {kGoodImage, "Images/Synthetic CT Phantom/ct_001.png"}) {
    fs::create_directories((root / img).parent_path());
    fs::copy_file(kDemo / img, root / img, fs::copy_options::overwrite_existing);
  }
  std::ofstream(root / "Images" / "corrupt.png", std::ios::binary) << "\x89PNG\r\n\x1a\n not really a png";
  vision::RgbImage big;
  big.width = big.height = 1200;
  big.data.assign(static_cast<size_t>(1200 * 1200 * 3), 90);
  vision::write_png((root / "Images" / "big.png").string(), big);
  auto rec = [](const std::string& image, const std::string& problem, const char* solution) {
    nlohmann::json j = {{"image", image}, {"problem", problem}};
    if (solution) j["solution"] = solution;
    return j;
  };
  nlohmann::json a = nlohmann::json::array({
      rec(kGoodImage, kProblem, nullptr),                                       // 0 no_solution
      rec(kGoodImage, kProblem, "<answer> F </answer>"),                         // 1 answer_not_in_options
      rec("Images/absent.png", kProblem, "<answer> A </answer>"),                // 2 image_missing
      rec("Images/corrupt.png", kProblem, "<answer> A </answer>"),               // 3 image_unreadable
      rec("Images/big.png", kProblem, "<answer> A </answer>"),                   // 4 prompt_too_long
      rec(kGoodImage, "Which imaging modality is shown in this image? A)CT", "<answer> A </answer>"),  // 5 one_option
      rec(kGoodImage, kProblem, "A"),                                            // 6 solution_unparseable
      rec(kGoodImage, kProblem, "<answer> A </answer>"),                         // 7 good
      rec("Images/Synthetic CT Phantom/ct_001.png", kProblem, "<answer> B </answer>"),  // 8 good
  });
  const fs::path p = root / "bad_split.json";
  std::ofstream(p) << a.dump(1);
  return p.string();
}

tokenizer::Tokenizer test_tokenizer() {
  return tokenizer::Tokenizer::from_file(
      (fs::path(MEDR1_SOURCE_DIR) / "tests" / "data" / "tokenizer" / "qwen2vl" / "tokenizer.json").string());
}

TEST(DataScreen, OptionLetters) {
  EXPECT_EQ(option_letters("What is it? A)CT, B)MRI, C)X-Ray"), "ABC");
  EXPECT_EQ(option_letters("A)only"), "A");
  EXPECT_EQ(option_letters("No options here (see B)"), "");
  EXPECT_EQ(option_letters("x A)a, A)again, B)b"), "AB");
}

TEST(DataScreen, EachKindIsRecordedCountedAndSkippedOrKept) {
  if (!fs::exists(fs::path(MEDR1_SOURCE_DIR) / "tests/data/tokenizer/qwen2vl/tokenizer.json"))
    GTEST_SKIP() << "tokenizer fixture missing (scripts/tokenizer_fixtures.sh)";
  const fs::path root = test::make_temp_dir("data_screen");
  data::LoadOptions lo;
  lo.image_root = root.string();
  std::vector<data::Record> records = data::load_dataset(write_bad_split(root), lo);
  ASSERT_EQ(records.size(), 9u);
  const tokenizer::Tokenizer tok = test_tokenizer();
  ScreenOptions so;
  so.ipc.max_pixels = 401408;  // Med-R1's: the 1200x1200 image is resized to fit it
  so.max_prompt_length = 400;
  DataScreen s = screen_training_records(records, tok, so);
  EXPECT_EQ(s.total, 9);
  std::vector<int64_t> kept;
  for (const auto& r : s.kept) kept.push_back(r.index);
  EXPECT_EQ(kept, (std::vector<int64_t>{5, 6, 7, 8}));
  const std::map<std::string, int64_t> skipped = {{"answer_not_in_options", 1}, {"image_missing", 1},
                                                  {"image_unreadable", 1}, {"no_solution", 1},
                                                  {"prompt_too_long", 1}};
  const std::map<std::string, int64_t> flagged = {{"one_option", 1}, {"solution_unparseable", 1}};
  EXPECT_EQ(s.skipped, skipped);
  EXPECT_EQ(s.flagged, flagged);
  ASSERT_EQ(s.issues.size(), 7u);
  const std::vector<std::string> kinds = {"no_solution",     "answer_not_in_options", "image_missing",
                                          "image_unreadable", "prompt_too_long",       "one_option",
                                          "solution_unparseable"};
  for (size_t i = 0; i < kinds.size(); ++i) {
    EXPECT_EQ(s.issues[i].kind, kinds[i]);
    EXPECT_EQ(s.issues[i].file_index, static_cast<int64_t>(i));
    EXPECT_NE(s.issues[i].source_file.find("bad_split.json"), std::string::npos);
  }
  const auto [bh, bw] = vision::smart_resize(1200, 1200, 28, so.ipc.min_pixels, so.ipc.max_pixels);
  const std::string big_tokens = std::to_string((bh / 28) * (bw / 28)) + " image tokens";
  EXPECT_NE(s.issues[4].detail.find(big_tokens), std::string::npos) << s.issues[4].detail;
  EXPECT_NE(s.issues[4].detail.find("would cut its image tokens"), std::string::npos);
  EXPECT_NE(s.issues[3].detail.find("corrupt.png"), std::string::npos) << s.issues[3].detail;
  std::printf("bad-data screen: %s\n", s.summary_line().c_str());
  EXPECT_EQ(s.summary_line(),
            "9 records: 4 kept, 5 skipped (answer_not_in_options 1, image_missing 1, image_unreadable 1, "
            "no_solution 1, prompt_too_long 1); flagged, kept: one_option 1, solution_unparseable 1");

  // Longer than max_prompt_length but only text before the image is cut: kept, flagged prompt_truncated.
  // The good record's length as the rollout builds it: template tokens - 1 pad + the image's tokens.
  const std::vector<int32_t> ids = tok.encode(build_train_prompt(kProblem, PromptMode::think, true));
  const auto pad = tok.token_to_id("<|image_pad|>");
  const int64_t first_pad = std::find(ids.begin(), ids.end(), *pad) - ids.begin();
  ScreenOptions tight = so;
  tight.ipc.max_pixels = 3136;  // 56x56: 4 image tokens
  const int64_t length = static_cast<int64_t>(ids.size()) - 1 + 4;
  tight.max_prompt_length = length - first_pad;  // cuts exactly the tokens before the image
  DataScreen t = screen_training_records({records[7]}, tok, tight);
  ASSERT_EQ(t.kept.size(), 1u);
  ASSERT_EQ(t.issues.size(), 1u);
  EXPECT_EQ(t.issues[0].kind, "prompt_truncated");
  tight.max_prompt_length -= 1;  // one more token: the first image token
  DataScreen u = screen_training_records({records[7]}, tok, tight);
  EXPECT_TRUE(u.kept.empty());
  ASSERT_EQ(u.issues.size(), 1u);
  EXPECT_EQ(u.issues[0].kind, "prompt_too_long");
  fs::remove_all(root);
}

TEST(DataScreen, TrainingRunSkipsBadRecordsAndWritesTheReport) {
  const auto root = test::make_temp_dir("data_screen_run");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig c = test::tiny_run_config(model, write_bad_split(root / "data"), root / "run");
  c.dataset_root = (root / "data").string();
  c.max_pixels = 401408;
  c.max_prompt_length = 400;
  c.max_steps = 2;
  RewardRegistry reg = test::toy_registry();
  TrainerHooks h;
  h.progress_bar = false;
  h.rewards = &reg;
  TrainResult r = train(c, h);
  EXPECT_EQ(r.global_step, 2);
  const nlohmann::json summary = nlohmann::json::parse(std::ifstream(root / "run" / "data_summary.json"));
  EXPECT_EQ(summary["total"], 9);
  EXPECT_EQ(summary["kept"], 4);
  EXPECT_EQ(summary["skipped"]["image_unreadable"], 1);
  EXPECT_EQ(summary["flagged"]["one_option"], 1);
  std::ifstream issues(root / "run" / "data_issues.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(issues, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("kind") && j.contains("record") && j.contains("detail") && j.contains("skipped"));
    ++n;
  }
  EXPECT_EQ(n, 7);
  // Every record bad: a clear error naming the counts, before any step.
  const fs::path all_bad = root / "all_bad.json";
  std::ofstream(all_bad) << nlohmann::json::array({{{"image", "Images/absent.png"}, {"problem", kProblem},
                                                    {"solution", "<answer> A </answer>"}}})
                                .dump();
  GRPOConfig b = c;
  b.dataset_name = all_bad.string();
  b.output_dir = (root / "run_bad").string();
  try {
    train(b, h);
    ADD_FAILURE() << "a split of unusable records trained";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no usable records: 1 records: 0 kept, 1 skipped (image_missing 1)"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace medr1::rl
