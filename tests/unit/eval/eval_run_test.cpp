// run_evaluation over Med-R1's real split files (tests/data/omnimedvqa/Splits: real names with spaces,
// parentheses and the missing ')' of "OCT (Optical Coherence Tomography") with synthetic images written at the
// listed paths and the tiny Qwen2-VL checkpoint: every file found, every item scored or given an error record,
// result files / summary / report / heatmap written, a rerun resumes without regenerating, attacks write their
// figures and images.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "medr1/core/error.h"
#include "medr1/data/omnimedvqa.h"
#include "medr1/eval/evaluate.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace medr1;
using namespace medr1::eval;

namespace {

const std::string kSplits = std::string(MEDR1_TEST_DATA) + "/omnimedvqa/Splits";
const std::string kTiny = std::string(MEDR1_TEST_DATA) + "/qwen2vl-tiny";
const std::string kTokDir = std::string(MEDR1_TEST_DATA) + "/tokenizer/qwen2vl";
constexpr int64_t kLimit = 4;

bool have_tokenizer() { return fs::exists(kTokDir + "/tokenizer.json"); }

fs::path fresh(const std::string& name) {
  fs::path d = fs::path(MEDR1_BINARY_DIR) / "test_tmp" / "eval_run" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

vision::RgbImage synthetic(int w, int h, int seed) {
  vision::RgbImage img;
  img.width = w;
  img.height = h;
  img.data.resize(static_cast<size_t>(w * h * 3));
  for (size_t i = 0; i < img.data.size(); ++i) img.data[i] = static_cast<uint8_t>((i * 7 + static_cast<size_t>(seed) * 31) % 256);
  return img;
}

// Writes a PNG (whatever the extension says; the decoder sniffs the content) at the first kLimit images of
// every test split, except `skip` (left missing on purpose). Returns the number written.
int write_images(const fs::path& root, const std::string& skip) {
  int n = 0;
  for (const auto& s : data::list_split_files(kSplits, data::EvaluationType::both)) {
    const auto recs = data::load_split(s, root.string());
    for (size_t i = 0; i < recs.size() && static_cast<int64_t>(i) < kLimit; ++i) {
      if (recs[i].image == skip) continue;
      fs::create_directories(fs::path(recs[i].image_path).parent_path());
      write_png(recs[i].image_path, synthetic(40 + static_cast<int>(i) * 9, 50, static_cast<int>(i)));
      ++n;
    }
  }
  return n;
}

EvalOptions base_options(const fs::path& out, const fs::path& root) {
  EvalOptions o;
  o.model_dir = kTiny;
  o.tokenizer_dir = kTokDir;
  o.output_dir = out.string();
  o.dataset_root = root.string();
  o.templates = {"nothink"};
  o.max_new_tokens = 3;
  o.batch_size = 3;
  o.max_pixels = 56 * 84;
  o.limit = kLimit;
  o.progress = false;
  return o;
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

}  // namespace

TEST(EvalRun, RealSplitNamesEveryItemScoredOrErrorAndResume) {
  if (!have_tokenizer()) GTEST_SKIP() << "tokenizer.json not fetched (scripts/tokenizer_fixtures.sh)";
  const fs::path dir = fresh("clean");
  const fs::path root = dir / "root";
  // OCT's second record (a .jpg path) has no image: it must become an error item, not stop the run.
  const auto oct = data::load_split(
      data::list_split_files(kSplits, data::EvaluationType::modality, "test", {"OCT (Optical Coherence Tomography"})[0],
      "");
  const std::string missing = oct.at(1).image;
  EXPECT_GT(write_images(root, missing), 10);

  EvalOptions o = base_options(dir / "out", root);
  o.splits = splits_from_args("", kSplits, "both");
  ASSERT_EQ(o.splits.size(), 4u);
  const EvalSummary s = run_evaluation(o);

  const std::vector<std::string> expect_names = {"CT(Computed Tomography)", "OCT (Optical Coherence Tomography",
                                                 "Lesion Grading", "Modality Recognition"};
  EXPECT_EQ(s.report.splits(), expect_names);
  int64_t total_items = 0, total_errors = 0;
  for (const auto& name : expect_names) {
    const fs::path f = dir / "out" / (name + "_clean_nothink.json");
    ASSERT_TRUE(fs::exists(f)) << f;
    const json j = read_json(f);
    EXPECT_EQ(j.at("num_samples"), kLimit) << name;
    EXPECT_EQ(j.at("results").size(), static_cast<size_t>(kLimit));
    EXPECT_EQ(j.at("num_records_evaluated"), kLimit);
    std::set<int64_t> seen;
    for (const json& it : j.at("results")) {
      seen.insert(it.at("index").get<int64_t>());
      const bool has_error = it.contains("error");
      // Scored: an output string and a parsed ground truth; or an error record.
      EXPECT_TRUE(it.at("model_output").is_string());
      EXPECT_FALSE(it.at("gt_answer").is_null()) << name;
      if (has_error) {
        ++total_errors;
        EXPECT_EQ(it.at("image").get<std::string>(), missing);
        EXPECT_NE(it.at("error").get<std::string>().find("normal_test"), std::string::npos) << it.at("error");
        EXPECT_FALSE(it.at("correct").get<bool>());
      }
    }
    EXPECT_EQ(seen.size(), static_cast<size_t>(kLimit));
    total_items += j.at("num_samples").get<int64_t>();
    // The item JSONL holds the same number of lines.
    std::ifstream in(dir / "out" / "items" / (name + "_clean_nothink.jsonl"));
    int lines = 0;
    for (std::string line; std::getline(in, line);) lines += !line.empty();
    EXPECT_EQ(lines, kLimit);
  }
  EXPECT_EQ(total_items, 4 * kLimit);
  EXPECT_EQ(total_errors, 1);
  EXPECT_TRUE(fs::exists(dir / "out" / "summary.json"));
  EXPECT_TRUE(fs::exists(dir / "out" / "report.md"));
  EXPECT_TRUE(fs::exists(dir / "out" / "accuracy_heatmap.svg"));
  const json summary = read_json(dir / "out" / "summary.json");
  EXPECT_EQ(summary.at("results").size(), 4u);
  int64_t generated = 0;
  for (const auto& st : s.stats) generated += st.items;
  EXPECT_EQ(generated, 4 * kLimit);

  // Rerun: everything is in the JSONL, nothing is generated again, the results stay.
  const EvalSummary again = run_evaluation(o);
  for (const auto& st : again.stats) EXPECT_EQ(st.items, 0) << st.split;
  EXPECT_EQ(again.report.entries().size(), 4u);
  EXPECT_EQ(read_json(dir / "out" / "OCT (Optical Coherence Tomography_clean_nothink.json").at("num_errors"), 1);
}

TEST(EvalRun, AttacksOnOneSplitFile) {
  if (!have_tokenizer()) GTEST_SKIP() << "tokenizer.json not fetched (scripts/tokenizer_fixtures.sh)";
  const fs::path dir = fresh("attacks");
  const fs::path root = dir / "root";
  write_images(root, "");
  EvalOptions o = base_options(dir / "out", root);
  o.splits = splits_from_args(kSplits + "/modality/test/CT(Computed Tomography)_test.first20.json", "", "");
  ASSERT_EQ(o.splits.size(), 1u);
  EXPECT_EQ(o.splits[0].name, "CT(Computed Tomography)");
  o.limit = 2;
  o.attacks = {AttackType::clean, AttackType::fgsm, AttackType::pgd};
  o.templates = {"think", "nothink"};
  o.attack.iters = 2;
  o.save_images = 1;
  const EvalSummary s = run_evaluation(o);
  EXPECT_EQ(s.report.settings(), (std::vector<std::string>{"clean/think", "clean/nothink", "fgsm/think", "fgsm/nothink",
                                                           "pgd/think", "pgd/nothink"}));
  for (const char* setting : {"fgsm_think", "pgd_nothink"}) {
    const json j = read_json(dir / "out" / (std::string("CT(Computed Tomography)_") + setting + ".json"));
    EXPECT_EQ(j.at("num_samples"), 2);
    EXPECT_EQ(j.at("num_errors"), 0);
    EXPECT_GE(j.at("mean_attack_adversarial_loss").get<double>(), j.at("mean_attack_clean_loss").get<double>());
    std::ifstream in(dir / "out" / "items" / (std::string("CT(Computed Tomography)_") + setting + ".attack.jsonl"));
    int lines = 0;
    for (std::string line; std::getline(in, line);) {
      const json a = json::parse(line);
      EXPECT_LE(a.at("linf_u8").get<int64_t>(), 8);
      EXPECT_LE(a.at("linf").get<double>(), 8.0 / 255.0 + 1e-6);
      ++lines;
    }
    EXPECT_EQ(lines, 2);
  }
  const fs::path imgs = dir / "out" / "images" / "CT(Computed Tomography)_pgd_think";
  int pngs = 0;
  for (const auto& e : fs::directory_iterator(imgs)) pngs += e.path().extension() == ".png";
  EXPECT_EQ(pngs, 3);  // clean, adv, diff of the first record
  const std::string md = [&] {
    std::ifstream in(dir / "out" / "report.md");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  EXPECT_NE(md.find("pgd/nothink"), std::string::npos);
  EXPECT_NE(md.find("CT(Computed Tomography)"), std::string::npos);
}
