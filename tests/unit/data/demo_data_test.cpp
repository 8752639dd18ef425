// The bundled demo set (data/demo, made by scripts/make_demo_data.py) loads through the data layer:
// Med-R1 Splits layout, every image present, every solution a letter among the listed options.
#include <gtest/gtest.h>

#include <filesystem>

#include "medr1/data/answer.h"
#include "medr1/data/dataset.h"
#include "medr1/data/omnimedvqa.h"

using namespace medr1::data;

namespace {
const std::string kDemo = std::string(MEDR1_SOURCE_DIR) + "/data/demo";

void check_records(const std::vector<Record>& recs) {
  for (const auto& r : recs) {
    EXPECT_TRUE(std::filesystem::exists(r.image_path)) << r.image_path;
    auto a = extract_option_answer(r.solution.value_or(""));
    ASSERT_TRUE(a.has_value()) << r.source_file << " " << r.file_index;
    ASSERT_EQ(a->size(), 1u);
    EXPECT_NE(r.problem.find(*a + ")"), std::string::npos) << r.problem;
  }
}
}  // namespace

TEST(DemoData, TrainTestCounts) {
  LoadOptions o;
  o.image_root = kDemo;
  o.require_solution = true;
  auto train = load_dataset(kDemo + "/train.json", o);
  auto test = load_dataset(kDemo + "/test.json", o);
  // Generator defaults: 5 modalities x 40 images (8 test), two questions per image.
  EXPECT_EQ(train.size(), 320u);
  EXPECT_EQ(test.size(), 80u);
  check_records(test);
  auto easy = load_dataset(kDemo + "/test_easy.json", o);
  EXPECT_EQ(easy.size(), 40u);
  check_records(easy);
}

TEST(DemoData, SplitsLayout) {
  auto files = list_split_files(kDemo + "/Splits", EvaluationType::both);
  ASSERT_EQ(files.size(), 7u);
  EXPECT_EQ(files[0].name, "CT(Computed Tomography)");
  EXPECT_EQ(files[2].name, "MR (Mag-netic Resonance Imaging)");
  EXPECT_EQ(files[4].name, "ultrasound");
  EXPECT_EQ(files[5].name, "Anatomy Identification");
  EXPECT_EQ(files[6].name, "Modality Recognition");
  size_t n_modality = 0;
  for (const auto& f : files) {
    auto recs = load_split(f, kDemo);
    check_records(recs);
    if (f.type == "modality") {
      EXPECT_EQ(recs.size(), 16u) << f.name;
      n_modality += recs.size();
    } else {
      EXPECT_EQ(recs.size(), 40u) << f.name;
    }
  }
  EXPECT_EQ(n_modality, 80u);
}
