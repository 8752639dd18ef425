// Med-R1 Splits enumeration and loading over the vendored real split files
// (tests/data/omnimedvqa/Splits: copies of Med-R1 Splits files, see MEDR1_REFERENCE.md §1.10).
#include <gtest/gtest.h>

#include "medr1/core/error.h"
#include "medr1/data/answer.h"
#include "medr1/data/omnimedvqa.h"

using namespace medr1::data;

namespace {
const std::string kSplits = std::string(MEDR1_TEST_DATA) + "/omnimedvqa/Splits";
}

TEST(OmniMedVQA, SplitNameFromFileName) {
  EXPECT_EQ(split_name_from_filename("CT(Computed Tomography)_test.json"), "CT(Computed Tomography)");
  EXPECT_EQ(split_name_from_filename("CT(Computed Tomography)_test.first20.json"),
            "CT(Computed Tomography)");
  EXPECT_EQ(split_name_from_filename("MR (Mag-netic Resonance Imaging)_test.json"),
            "MR (Mag-netic Resonance Imaging)");
  EXPECT_EQ(split_name_from_filename("OCT (Optical Coherence Tomography_test.first20.json"),
            "OCT (Optical Coherence Tomography");
  EXPECT_EQ(split_name_from_filename("X-Ray_train.first20.json", "train"), "X-Ray");
  EXPECT_EQ(split_name_from_filename("unknown_train.json", "train"), "unknown");
  // Med-R1 src/eval_vqa/prompts names.
  EXPECT_EQ(split_name_from_filename("Kvasir_filtered_test.json"), "Kvasir_filtered");
  // "_test" inside a name is kept; without the suffix the stem stays whole.
  EXPECT_EQ(split_name_from_filename("my_test_set_test.json"), "my_test_set");
  EXPECT_EQ(split_name_from_filename("custom.jsonl"), "custom");
}

TEST(OmniMedVQA, ListsModalityTestSplitsSorted) {
  auto files = list_split_files(kSplits, EvaluationType::modality);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].name, "CT(Computed Tomography)");
  EXPECT_EQ(files[1].name, "OCT (Optical Coherence Tomography");
  EXPECT_EQ(files[0].type, "modality");
  EXPECT_EQ(files[0].stage, "test");
  EXPECT_EQ(files[1].path, kSplits + "/modality/test/OCT (Optical Coherence Tomography_test.first20.json");
}

TEST(OmniMedVQA, ListsBothAndFilters) {
  auto both = list_split_files(kSplits, parse_evaluation_type("both"));
  ASSERT_EQ(both.size(), 4u);
  EXPECT_EQ(both[2].name, "Lesion Grading");
  EXPECT_EQ(both[2].type, "question_type");
  EXPECT_EQ(both[3].name, "Modality Recognition");
  auto picked = list_split_files(kSplits, EvaluationType::both, "test",
                                 {"Modality Recognition", "CT(Computed Tomography)"});
  ASSERT_EQ(picked.size(), 2u);
  EXPECT_EQ(picked[0].name, "Modality Recognition");
  try {
    list_split_files(kSplits, EvaluationType::modality, "test", {"CT"});
    FAIL() << "expected an error";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'CT(Computed Tomography)'"), std::string::npos) << e.what();
  }
  auto train = list_split_files(kSplits, EvaluationType::modality, "train");
  ASSERT_EQ(train.size(), 2u);
  EXPECT_EQ(train[0].name, "X-Ray");
  EXPECT_EQ(train[1].name, "unknown");
  EXPECT_THROW(list_split_files(kSplits, EvaluationType::question_type, "train"), medr1::Error);
  EXPECT_THROW(parse_evaluation_type("task"), medr1::Error);
}

TEST(OmniMedVQA, LoadsRealRecords) {
  auto files = list_split_files(kSplits, EvaluationType::question_type);
  auto recs = load_split(files[0], "/data/OmniMedVQA");  // Lesion Grading, full file
  ASSERT_EQ(recs.size(), 436u);
  EXPECT_EQ(recs[0].image, "Images/DRIMDB/drimdb_bad (24).jpg");
  EXPECT_EQ(recs[0].image_path, "/data/OmniMedVQA/Images/DRIMDB/drimdb_bad (24).jpg");
  EXPECT_EQ(recs[0].solution.value_or(""), "<answer> C </answer>");
  EXPECT_EQ(recs[0].extra.at("split"), "Lesion Grading");
  EXPECT_EQ(recs[435].image, "Images/Diabetic Retinopathy/4/405_left.jpeg");
  EXPECT_EQ(source_dataset_of(recs[435].image), "Diabetic Retinopathy");
  // Letter counts computed with Python's re over the same file: C 122, A 108, B 107, D 99.
  int counts[4] = {0, 0, 0, 0};
  for (const auto& r : recs) {
    auto a = extract_option_answer(*r.solution);
    ASSERT_TRUE(a.has_value()) << r.index;
    ASSERT_EQ(a->size(), 1u);
    counts[(*a)[0] - 'A']++;
  }
  EXPECT_EQ(counts[0], 108);
  EXPECT_EQ(counts[1], 107);
  EXPECT_EQ(counts[2], 122);
  EXPECT_EQ(counts[3], 99);
  auto ct = load_split(list_split_files(kSplits, EvaluationType::modality)[0], "");
  ASSERT_EQ(ct.size(), 20u);
  EXPECT_EQ(ct[0].image_path, "Images/Chest CT Scan/test/adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib/000139 (9).png");
  EXPECT_EQ(source_dataset_of("Images/x.png"), "");
  EXPECT_EQ(source_dataset_of("data/Images/a/b.png"), "");
}
