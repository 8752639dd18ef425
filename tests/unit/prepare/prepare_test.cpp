// medr1-prepare on a synthetic OmniMedVQA-shaped tree written by the test, and the JSON format
// against Med-R1's real split files (tests/data/omnimedvqa/Splits).
#include "medr1/prepare/prepare.h"

#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "medr1/core/error.h"
#include "medr1/data/dataset.h"
#include "medr1/vision/image_io.h"
#include "medr1/vision/image_processor.h"

namespace fs = std::filesystem;
using namespace medr1::prepare;
using nlohmann::json;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_png(const fs::path& p, int w, int h, int seed) {
  fs::create_directories(p.parent_path());
  std::vector<uint8_t> px(static_cast<size_t>(w * h * 3));
  for (size_t i = 0; i < px.size(); ++i)
    px[i] = static_cast<uint8_t>((i * 7 + static_cast<size_t>(seed) * 31) % 251);
  png_image pi;
  std::memset(&pi, 0, sizeof(pi));
  pi.version = PNG_IMAGE_VERSION;
  pi.width = static_cast<png_uint_32>(w);
  pi.height = static_cast<png_uint_32>(h);
  pi.format = PNG_FORMAT_RGB;
  ASSERT_NE(png_image_write_to_file(&pi, p.string().c_str(), 0, px.data(), 0, nullptr), 0);
  png_image_free(&pi);
}

struct Tree {
  fs::path root;
  int n_items = 0;
};

// 3 datasets, 3 modalities (+ one without modality_type), 3 question types, 2-4 options; one
// missing image, one corrupt image, one gt_answer matching no option, one real JPEG (copied from
// tests/data).
Tree make_tree(const fs::path& root) {
  fs::remove_all(root);
  const char* mods[] = {"CT(Computed Tomography)", "MR (Mag-netic Resonance Imaging)",
                        "OCT (Optical Coherence Tomography"};
  const char* qts[] = {"Modality Recognition", "Disease Diagnosis", "Anatomy Identification"};
  const char* dsets[] = {"DsA", "DsB", "DsC"};
  Tree t{root};
  for (int d = 0; d < 3; ++d) {
    json arr = json::array();
    for (int i = 0; i < 20; ++i) {
      const std::string img =
          std::string("Images/") + dsets[d] + "/img_" + std::to_string(i % 10) + ".png";
      const int nopt = 2 + (i % 3);
      json r = {{"dataset", dsets[d]},
                {"question_id", std::string(dsets[d]) + "_" + std::to_string(1000 + i)},
                {"question_type", qts[(i + d) % 3]},
                {"question", "Question " + std::to_string(i) + " caf\xc3\xa9?"},
                {"image_path", img},
                {"modality_type", mods[d]}};
      for (int k = 0; k < nopt; ++k)
        r[std::string("option_") + static_cast<char>('A' + k)] = "opt" + std::to_string(k);
      r["gt_answer"] = "opt" + std::to_string(i % nopt);
      arr.push_back(r);
      if (i < 10) write_png(root / img, 30 + i, 20 + d, i + d);
    }
    if (d == 0) arr[0]["gt_answer"] = "no such option";
    if (d == 1) {
      arr[1]["image_path"] = "Images/DsB/missing.png";
      arr[2]["image_path"] = "Images/DsB/corrupt.png";
      arr[3]["image_path"] = "Images/DsB/real.jpg";
      arr[4].erase("modality_type");
    }
    fs::create_directories(root / "QA_information/Open-access");
    std::ofstream(root / "QA_information/Open-access" / (std::string(dsets[d]) + ".json"))
        << arr.dump();
    t.n_items += 20;
  }
  std::ofstream(root / "Images/DsB/corrupt.png", std::ios::binary) << "\x89PNG\r\n\x1a\n garbage";
  fs::copy_file(fs::path(MEDR1_TEST_DATA) / "images-real/images/gray.jpg",
                root / "Images/DsB/real.jpg");
  return t;
}

PrepareOptions opts(const fs::path& root, const fs::path& out) {
  PrepareOptions o;
  o.root = root.string();
  o.output = out.string();
  o.num_workers = 2;
  return o;
}

}  // namespace

TEST(Prepare, ProblemAndSolutionMatchRealRecord) {
  QaItem q;
  q.question =
      "What is the quality of the retinal image using a three-class grading system that includes "
      "good, bad, and "
      "outlier classes?";
  q.options = {"It's a good retinal image.", "It's a outlier retinal image.",
               "it's a bad retinal image."};
  q.gt_answer = "it's a bad retinal image.";
  EXPECT_EQ(format_problem(q),
            "What is the quality of the retinal image using a three-class grading system that "
            "includes good, bad, "
            "and outlier classes? A)It's a good retinal image., B)It's a outlier retinal image., "
            "C)it's a bad "
            "retinal image.");
  EXPECT_EQ(answer_letter(q), 'C');
  EXPECT_EQ(modality_name(""), "unknown");
}

TEST(Prepare, JsonTextIsByteIdenticalToMedR1Files) {
  for (const char* f :
       {"question_type/test/Lesion Grading_test.json", "modality/train/unknown_train.json"}) {
    const fs::path p = fs::path(MEDR1_TEST_DATA) / "omnimedvqa/Splits" / f;
    const std::string text = slurp(p);
    std::vector<SplitRecord> recs;
    for (const auto& r : json::parse(text))
      recs.push_back({r["image"], r["problem"], r["solution"]});
    ASSERT_FALSE(recs.empty());
    EXPECT_EQ(to_json_text(recs), text) << f;
  }
  EXPECT_EQ(to_json_text({{"Images/x\xc3\xa9.png", "p", "s"}}).find("\\u00e9") != std::string::npos,
            true);
}

TEST(Prepare, SyntheticTreeFilesCountsBadItemsDeterminism) {
  const fs::path base =
      fs::temp_directory_path() / ("medr1_prepare_test_" + std::to_string(::getpid()));
  const Tree t = make_tree(base / "omni");
  const std::string rep_text = run_prepare(opts(t.root, base / "out1"));
  const json rep = json::parse(rep_text);
  EXPECT_EQ(rep["qa_items"], 60);
  // Files and counts: 59 kept (one without matching option); per group 80/20 with round().
  std::map<std::string, int> want = {
      {"modality/test/CT(Computed Tomography)_test.json", 4},  // 19 -> 4 / 15
      {"modality/train/CT(Computed Tomography)_train.json", 15},
      {"modality/test/MR (Mag-netic Resonance Imaging)_test.json", 4},  // 19 -> 4 / 15
      {"modality/train/MR (Mag-netic Resonance Imaging)_train.json", 15},
      {"modality/test/OCT (Optical Coherence Tomography_test.json", 4},  // 20
      {"modality/train/OCT (Optical Coherence Tomography_train.json", 16},
      {"modality/train/unknown_train.json", 1},
  };
  for (const auto& [f, n] : want) {
    ASSERT_TRUE(fs::exists(base / "out1/Splits" / f)) << f;
    EXPECT_EQ(json::parse(slurp(base / "out1/Splits" / f)).size(), static_cast<size_t>(n)) << f;
    EXPECT_EQ(rep["files"][f], n) << f;
  }
  EXPECT_FALSE(
      fs::exists(base / "out1/Splits/modality/test/unknown_test.json"));  // 1 item: round(0.2) = 0
  EXPECT_EQ(rep["files"].size(), 13u);
  int64_t qt_total = 0;
  for (const auto& [k, v] : rep["per_question_type"].items()) {
    const int64_t n = v;
    qt_total += n;
    const int64_t n_test =
        json::parse(slurp(base / "out1/Splits/question_type/test" / (k + "_test.json"))).size();
    EXPECT_EQ(n_test, std::llround(n * 0.2)) << k;
  }
  EXPECT_EQ(qt_total, 59);
  // Bad items.
  std::map<std::string, std::string> bad;
  for (const auto& b : rep["bad_items"]) bad[b["kind"]] = b["image"];
  EXPECT_EQ(rep["bad_items"].size(), 3u);
  EXPECT_EQ(bad["missing_image"], "Images/DsB/missing.png");
  EXPECT_EQ(bad["unreadable_image"], "Images/DsB/corrupt.png");
  EXPECT_EQ(bad["no_matching_option"], "Images/DsA/img_0.png");
  // Determinism: same seed -> same bytes; another seed -> another split.
  run_prepare(opts(t.root, base / "out2"));
  auto o3 = opts(t.root, base / "out3");
  o3.seed = 7;
  run_prepare(o3);
  bool any_diff = false;
  for (const auto& e : fs::recursive_directory_iterator(base / "out1/Splits")) {
    if (!e.is_regular_file()) continue;
    const auto rel = fs::relative(e.path(), base / "out1");
    EXPECT_EQ(slurp(e.path()), slurp(base / "out2" / rel)) << rel;
    any_diff |= slurp(e.path()) != slurp(base / "out3" / rel);
  }
  EXPECT_TRUE(any_diff);
  fs::remove_all(base);
}

TEST(Prepare, ResizeIsPillowBicubicAndResumes) {
  const fs::path base =
      fs::temp_directory_path() / ("medr1_prepare_resize_" + std::to_string(::getpid()));
  const Tree t = make_tree(base / "omni");
  auto o = opts(t.root, base / "out");
  o.resize = 384;
  o.image_output = (base / "img384").string();
  json rep = json::parse(run_prepare(o));
  // 10 PNGs per dataset minus the ones no record points at any more (DsB img_1..img_4 still used by
  // i>=10) + jpg.
  const int64_t written = rep["resize"]["written"];
  EXPECT_GT(written, 0);
  EXPECT_EQ(rep["resize"]["failed"], 2);  // missing + corrupt
  EXPECT_EQ(rep["resize"]["skipped_existing"], 0);
  for (const char* rel : {"Images/DsA/img_3.png", "Images/DsB/real.jpg"}) {
    const auto got = medr1::vision::load_image_rgb((base / "img384" / rel).string());
    const auto want = medr1::vision::resize_bicubic(
        medr1::vision::load_image_rgb((t.root / rel).string()), 384, 384);
    EXPECT_EQ(got.width, 384);
    EXPECT_EQ(got.height, 384);
    EXPECT_EQ(got.data, want.data) << rel;
  }
  const auto mtime = fs::last_write_time(base / "img384/Images/DsA/img_3.png");
  rep = json::parse(run_prepare(o));
  EXPECT_EQ(rep["resize"]["written"], 0);
  EXPECT_EQ(rep["resize"]["skipped_existing"], written);
  EXPECT_EQ(fs::last_write_time(base / "img384/Images/DsA/img_3.png"), mtime);
  fs::remove_all(base);
}

TEST(Prepare, BadFlagsAreErrors) {
  EXPECT_THROW(parse_access("public"), medr1::Error);
  PrepareOptions o;
  o.root = "/nonexistent";
  o.output = "/tmp/x";
  o.format = "parquet";
  EXPECT_THROW(run_prepare(o), medr1::Error);
  o.format = "json";
  EXPECT_THROW(run_prepare(o), medr1::Error);
}

// --format hf-dataset: a DatasetDict folder per split group, images embedded from the 384x384
// copies, as Med-R1's
// --dataset_name ./data/VQA/CT_384 is; read back by our reader (and by the real `datasets` where
// the venv has it).
TEST(Prepare, HfDatasetFoldersHoldTheSplitsWithResizedImages) {
  const fs::path base =
      fs::temp_directory_path() / ("medr1_prepare_hf_" + std::to_string(::getpid()));
  const Tree t = make_tree(base / "omni");
  auto o = opts(t.root, base / "out");
  o.resize = 384;
  o.image_output = (base / "img384").string();
  o.format = "hf-dataset";
  const json rep = json::parse(run_prepare(o));
  const std::string ct = "modality/CT(Computed Tomography)";
  const fs::path folder = base / "out" / "datasets" / ct;
  ASSERT_TRUE(fs::exists(folder / "dataset_dict.json")) << rep.dump(1);
  const json train_json = json::parse(
      slurp(base / "out" / "Splits" / "modality/train/CT(Computed Tomography)_train.json"));
  medr1::data::LoadOptions lo;
  lo.hf_split = "train";
  lo.require_solution = true;
  const auto recs = medr1::data::load_dataset(folder.string(), lo);
  ASSERT_EQ(recs.size(), train_json.size());
  EXPECT_EQ(rep["hf_datasets"][ct]["train"], train_json.size());
  for (size_t i = 0; i < recs.size(); ++i) {
    EXPECT_EQ(recs[i].problem, train_json[i]["problem"].get<std::string>());
    EXPECT_EQ(*recs[i].solution, train_json[i]["solution"].get<std::string>());
    ASSERT_TRUE(recs[i].image_bytes) << i;
    const auto img = medr1::vision::decode_image_rgb(recs[i].image_bytes->data(),
                                                     recs[i].image_bytes->size(), recs[i].image);
    EXPECT_EQ(img.width, 384);
    EXPECT_EQ(img.height, 384);
  }
  // The MR group (DsB) holds the missing and the corrupt image (which has no resized copy): not embedded, counted,
  // and listed among the bad items.
  const std::string mr = "modality/MR (Mag-netic Resonance Imaging)";
  EXPECT_EQ(rep["hf_datasets"][mr]["not_embedded_no_image_file"], 2);
  const char* py = std::getenv("MEDR1_PYTHON");
  if (py != nullptr && *py != '\0') {
    const std::string cmd = std::string(py) +
                            " -c \"import datasets,sys; d=datasets.load_from_disk(sys.argv[1]); " +
                            "print(d['train'].num_rows, d['train'][0]['image'].size)\" '" +
                            folder.string() + "' > '" + (base / "py.txt").string() + "' 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(base / "py.txt");
    EXPECT_EQ(slurp(base / "py.txt"), std::to_string(train_json.size()) + " (384, 384)\n");
  }
  fs::remove_all(base);
}
