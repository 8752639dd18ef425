// Hugging Face `datasets` folders (data/hf_dataset.h) against the real datasets 5.2 library of the
// project venv
// ($MEDR1_PYTHON; those tests skip without it): folders save_to_disk wrote (a Dataset, a
// DatasetDict, two shards) read by our reader, with the embedded image bytes equal to the source
// files and decoding the same; folders our writer wrote loaded by datasets.load_from_disk (rows,
// bytes, PIL decode); and the errors on broken folders (missing / mistyped columns, a corrupt
// .arrow, a missing shard, no state.json).
#include "medr1/data/hf_dataset.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "medr1/core/error.h"
#include "medr1/data/dataset.h"
#include "medr1/data/omnimedvqa.h"
#include "medr1/vision/image_io.h"

namespace fs = std::filesystem;
using namespace medr1::data;
using nlohmann::json;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(MEDR1_BINARY_DIR) / "test_tmp" / "data_hf" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void write_file(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}
std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const medr1::Error& e) {
    return e.what();
  }
  return "";
}
std::string python() {
  const char* p = std::getenv("MEDR1_PYTHON");
  return p != nullptr && *p != '\0' ? std::string(p) : std::string();
}
const std::string kScripts = std::string(MEDR1_TEST_DATA) + "/hf_datasets/";

// Runs make_hf_datasets.py into a fresh folder (one per test: ctest runs tests in parallel
// processes).
fs::path make_fixtures(const std::string& name) {
  const fs::path d = fresh_dir(name);
  const std::string cmd = "'" + python() + "' '" + kScripts + "make_hf_datasets.py' '" +
                          d.string() + "' > '" + (d / "make.log").string() + "' 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << read_file(d / "make.log");
  return d;
}
// datasets.load_from_disk(folder) as read_hf_dataset.py dumps it.
json load_with_datasets(const fs::path& folder) {
  const fs::path out = folder.string() + ".read.json";
  const fs::path log = folder.string() + ".read.log";
  const std::string cmd = "'" + python() + "' '" + kScripts + "read_hf_dataset.py' '" +
                          folder.string() + "' '" + out.string() + "' > '" + log.string() +
                          "' 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << read_file(log);
  return json::parse(read_file(out));
}
std::string hex_of(const std::vector<uint8_t>& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t c : b) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}

#define REQUIRE_PYTHON() \
  if (python().empty())  \
  GTEST_SKIP() << "MEDR1_PYTHON is not set: no datasets library to compare with"

// The rows of `recs` equal the manifest's rows, bytes equal the image files, decoding the bytes
// equals decoding the file.
void expect_manifest_rows(const std::vector<Record>& recs, const json& manifest,
                          const fs::path& fixtures, const std::string& folder) {
  ASSERT_EQ(recs.size(), manifest.size()) << folder;
  for (size_t i = 0; i < recs.size(); ++i) {
    const Record& r = recs[i];
    const json& m = manifest[i];
    SCOPED_TRACE(folder + " row " + std::to_string(i));
    EXPECT_EQ(r.file_index, static_cast<int64_t>(i));
    EXPECT_EQ(r.problem, m["problem"].get<std::string>());
    if (m["solution"].is_null()) {
      EXPECT_FALSE(r.solution.has_value());
    } else {
      EXPECT_EQ(r.solution.value_or("?"), m["solution"].get<std::string>());
    }
    EXPECT_EQ(r.image, m["path"].is_null() ? folder + "#" + std::to_string(i)
                                           : m["path"].get<std::string>());
    EXPECT_EQ(r.image_path, r.image);
    const fs::path file = fixtures / "images" / m["file"].get<std::string>();
    ASSERT_TRUE(r.image_bytes);
    EXPECT_EQ(*r.image_bytes, bytes_of(read_file(file)));
    const auto a =
        medr1::vision::decode_image_rgb(r.image_bytes->data(), r.image_bytes->size(), r.image);
    const auto b = medr1::vision::load_image_rgb(file.string());
    EXPECT_EQ(a.width, b.width);
    EXPECT_EQ(a.height, b.height);
    EXPECT_EQ(a.data, b.data);
    EXPECT_EQ(r.extra,
              m["extra"]);  // question_id, modality, score, options; the binary `blob` is left out
  }
}

}  // namespace

TEST(HfDataset, ReadsADatasetSavedByTheDatasetsLibrary) {
  REQUIRE_PYTHON();
  const fs::path fx = make_fixtures("read_single");
  const json manifest = json::parse(read_file(fx / "manifest.json"));
  const std::string folder = (fx / "single").string();
  EXPECT_TRUE(is_hf_dataset(folder));
  EXPECT_FALSE(is_hf_dataset((fx / "images").string()));
  EXPECT_EQ(list_dataset_files(folder), std::vector<std::string>{folder});
  LoadOptions o;
  o.image_root = "/unused";  // embedded images are not files under the root
  const auto recs = load_dataset(folder, o);
  expect_manifest_rows(recs, manifest["single"], fx, folder);
  for (size_t i = 0; i < recs.size(); ++i) {
    EXPECT_EQ(recs[i].index, static_cast<int64_t>(i));
    EXPECT_EQ(recs[i].source_file, folder);
  }
  // record_to_json keeps the extra columns and the image's name.
  EXPECT_EQ(record_to_json(recs[0]).at("question_id"), 100);
  EXPECT_EQ(record_to_json(recs[0]).at("image"), "red.png");
}

TEST(HfDataset, ReadsADatasetDictSplitAndShards) {
  REQUIRE_PYTHON();
  const fs::path fx = make_fixtures("read_dict");
  const json manifest = json::parse(read_file(fx / "manifest.json"));
  const std::string dict = (fx / "dict").string();
  LoadOptions o;  // hf_split "train" by default (training)
  EXPECT_EQ(choose_hf_split(dict, o), "train");
  const std::string train = (fx / "dict" / "train").string(),
                    test = (fx / "dict" / "test").string();
  expect_manifest_rows(load_dataset(dict, o), manifest["dict/train"], fx, train);
  o.hf_split = "test";
  expect_manifest_rows(load_records_file(dict, o), manifest["dict/test"], fx, test);
  EXPECT_EQ(load_records_file(dict, o)[0].source_file, test);
  o.hf_split = "validation";
  EXPECT_EQ(error_of([&] { load_dataset(dict, o); }),
            dict + ": dataset_dict.json: no split 'validation' (splits: 'train', 'test')");
  // A one-split DatasetDict gives that split whatever is asked.
  write_file(fx / "dict" / "dataset_dict.json", R"({"splits": ["test"]})");
  expect_manifest_rows(load_dataset(dict, o), manifest["dict/test"], fx, test);

  // Two shards: rows in order across them; indices from first_index.
  const std::string sharded = (fx / "sharded").string();
  ASSERT_TRUE(fs::exists(fx / "sharded" / "data-00001-of-00002.arrow"));
  expect_manifest_rows(load_records_file(sharded, {}, 7), manifest["sharded"], fx, sharded);
  EXPECT_EQ(load_records_file(sharded, {}, 7).back().index, 11);
}

TEST(HfDataset, EvalSplitsAndTrainingNeedTheSolution) {
  REQUIRE_PYTHON();
  const fs::path fx = make_fixtures("solution");
  const std::string dict = (fx / "dict").string();
  LoadOptions o;
  o.require_solution = true;
  EXPECT_EQ(error_of([&] { load_dataset(dict, o); }), dict + " (train): row 1: solution: missing");
  EXPECT_EQ(error_of([&] { load_dataset((fx / "single").string(), o); }),
            (fx / "single").string() + ": row 1: solution: missing");
  // A `datasets` folder among the split files of a Splits/ tree is one split, read from its test
  // split.
  fs::create_directories(fx / "Splits" / "modality" / "test");
  fs::rename(fx / "dict", fx / "Splits" / "modality" / "test" / "CT_test");
  const auto splits = list_split_files((fx / "Splits").string(), EvaluationType::modality);
  ASSERT_EQ(splits.size(), 1u);
  EXPECT_EQ(splits[0].name, "CT");
  const auto recs = load_split(splits[0], "");
  ASSERT_EQ(recs.size(), 2u);  // the test split: rows 10 and 11, both with a solution
  EXPECT_EQ(recs[1].problem, "Q11 A)CT, B)MRI");
  EXPECT_EQ(recs[1].extra.at("split"), "CT");
}

TEST(HfDataset, ErrorsOnWrongColumns) {
  REQUIRE_PYTHON();
  const fs::path fx = make_fixtures("columns");
  const std::string a = (fx / "no_problem").string();
  EXPECT_EQ(error_of([&] { load_dataset(a); }),
            a + ": data-00000-of-00001.arrow: problem: missing (columns: image, solution)");
  const std::string b = (fx / "int_problem").string();
  EXPECT_EQ(error_of([&] { load_dataset(b); }),
            b + ": data-00000-of-00001.arrow: problem: expected string, got int64");
}

TEST(HfDataset, WrittenFolderLoadsInTheDatasetsLibrary) {
  REQUIRE_PYTHON();
  const fs::path fx = make_fixtures("write");
  const fs::path real = fs::path(MEDR1_TEST_DATA) / "images-real" / "images";
  // 230 records (3 record batches of <= 100 rows): images given as bytes or as files to embed, PNG
  // (RGB, L, RGBA, palette, 16-bit grey) and JPEG (RGB, grey, CMYK).
  const std::vector<fs::path> files = {fx / "images" / "red.png",   fx / "images" / "grey.png",
                                       fx / "images" / "alpha.png", fx / "images" / "photo.jpg",
                                       real / "green_palette.png",  real / "gray16.png",
                                       real / "gray.jpg",           real / "cmyk.jpg"};
  std::vector<Record> recs;
  for (int i = 0; i < 230; ++i) {
    Record r;
    const fs::path& f = files[static_cast<size_t>(i) % files.size()];
    r.image = "Images/Src/" + f.filename().string();
    if (i % 2 == 0) {
      r.image_bytes = std::make_shared<const std::vector<uint8_t>>(bytes_of(read_file(f)));
    } else {
      r.image_path = f.string();
    }
    char
        text[64];  // snprintf: GCC 12 -Wstringop-overflow false positive on "Q" + std::to_string(i)
    std::snprintf(text, sizeof text, "Q%d A)CT, B)MRI", i);
    r.problem = text;
    std::snprintf(text, sizeof text, "<answer> %c </answer>", 'A' + i % 4);
    if (i % 5 != 4) r.solution = text;
    r.extra["question_id"] = i;
    r.extra["modality"] = i % 3 == 0 ? json(nullptr) : json("CT");
    r.extra["score"] = i % 2 ? json(0.5 * i) : json(i);
    r.extra["flag"] = i % 2 == 0;
    r.extra["options"] = json::array({"A", "B"});
    recs.push_back(r);
  }
  const fs::path out = fx / "ours";
  write_hf_dataset(recs, out.string(), "train");

  // Our json files carry the keys datasets writes (a folder it saved is the reference).
  auto keys = [](const json& j) {
    std::vector<std::string> k;
    for (auto it = j.begin(); it != j.end(); ++it) k.push_back(it.key());
    return k;
  };
  EXPECT_EQ(keys(json::parse(read_file(out / "state.json"))),
            keys(json::parse(read_file(fx / "single" / "state.json"))));
  EXPECT_EQ(keys(json::parse(read_file(out / "dataset_info.json"))),
            keys(json::parse(read_file(fx / "single" / "dataset_info.json"))));

  const json got = load_with_datasets(out);
  ASSERT_EQ(got["type"], "Dataset");
  const json& ds = got["splits"][""];
  EXPECT_EQ(ds["split"], "train");
  EXPECT_EQ(ds["features"]["image"], "Image(mode=None, decode=True)");
  EXPECT_EQ(ds["features"]["problem"], "Value('string')");
  EXPECT_EQ(ds["features"]["question_id"], "Value('int64')");
  EXPECT_EQ(ds["features"]["score"], "Value('float64')");
  EXPECT_EQ(ds["features"]["flag"], "Value('bool')");
  EXPECT_EQ(ds["features"]["options"], "Value('string')");  // a list is written as its JSON text
  ASSERT_EQ(ds["num_rows"], 230);
  int64_t bytes_compared = 0;
  for (size_t i = 0; i < recs.size(); ++i) {
    SCOPED_TRACE("row " + std::to_string(i));
    const json& row = ds["rows"][i];
    const fs::path& f = files[i % files.size()];
    const std::vector<uint8_t> want = bytes_of(read_file(f));
    EXPECT_EQ(row["problem"], recs[i].problem);
    EXPECT_EQ(row["solution"], recs[i].solution ? json(*recs[i].solution) : json(nullptr));
    EXPECT_EQ(row["question_id"], static_cast<int>(i));
    EXPECT_EQ(row["modality"], recs[i].extra["modality"]);
    EXPECT_DOUBLE_EQ(row["score"].get<double>(), recs[i].extra["score"].get<double>());
    EXPECT_EQ(row["flag"], i % 2 == 0);
    EXPECT_EQ(row["options"], R"(["A","B"])");
    EXPECT_EQ(row["image"]["path"], recs[i].image);
    EXPECT_EQ(row["image"]["bytes_hex"], hex_of(want));
    bytes_compared += static_cast<int64_t>(want.size());
    const auto ours = medr1::vision::load_image_rgb(f.string());
    EXPECT_EQ(row["image"]["size"], json::array({ours.width, ours.height}));
    // PIL 13's convert("RGB") equals our (Pillow-exact) decoder on PNG; its own libjpeg-turbo may
    // round JPEG differently from the system one, so JPEG is compared by size only.
    if (f.extension() == ".png") {
      EXPECT_EQ(row["image"]["rgb_hex"], hex_of(ours.data)) << f;
    }
  }
  std::printf(
      "[ datasets.load_from_disk read %zu rows of our folder; %lld image bytes compared ]\n",
      recs.size(), static_cast<long long>(bytes_compared));

  // Our reader reads it back the same.
  const auto back = load_dataset(out.string());
  ASSERT_EQ(back.size(), recs.size());
  for (size_t i = 0; i < back.size(); ++i) {
    EXPECT_EQ(back[i].image, recs[i].image);
    EXPECT_EQ(*back[i].image_bytes, bytes_of(read_file(files[i % files.size()])));
    EXPECT_EQ(back[i].solution, recs[i].solution);
    EXPECT_EQ(back[i].extra["question_id"], static_cast<int>(i));
  }

  // A DatasetDict of two splits.
  const fs::path dd = fx / "ours_dict";
  write_hf_dataset_dict(
      {{"train", {recs.begin(), recs.begin() + 3}}, {"test", {recs.begin() + 3, recs.begin() + 5}}},
      dd.string());
  const json gd = load_with_datasets(dd);
  ASSERT_EQ(gd["type"], "DatasetDict");
  EXPECT_EQ(gd["splits"]["train"]["num_rows"], 3);
  EXPECT_EQ(gd["splits"]["test"]["num_rows"], 2);
  EXPECT_EQ(gd["splits"]["test"]["split"], "test");
  EXPECT_EQ(gd["splits"]["test"]["rows"][1]["problem"], recs[4].problem);
}

TEST(HfDataset, RoundTripOfOurOwnFolder) {
  const fs::path d = fresh_dir("roundtrip");
  write_file(d / "img.bin", "not decoded here");
  std::vector<Record> recs(3);
  recs[0].image = "a.png";
  recs[0].image_bytes =
      std::make_shared<const std::vector<uint8_t>>(std::vector<uint8_t>{0, 1, 2, 255});
  recs[0].problem = "Q0";
  recs[0].solution = "<answer> A </answer>";
  recs[1].image = "img.bin";
  recs[1].image_path = (d / "img.bin").string();  // read from the file and embedded
  recs[1].problem = "Q1 ünïcode";
  recs[1].extra["question_id"] = 5;
  recs[2].image = "c.png";
  recs[2].image_bytes =
      std::make_shared<const std::vector<uint8_t>>();  // empty bytes are still bytes
  recs[2].problem = "";
  write_hf_dataset(recs, (d / "ds").string());
  const json state = json::parse(read_file(d / "ds" / "state.json"));
  EXPECT_TRUE(state["_split"].is_null());
  EXPECT_EQ(state["_data_files"][0]["filename"], "data-00000-of-00001.arrow");
  EXPECT_EQ(state["_fingerprint"].get<std::string>().size(), 16u);
  const auto back = load_dataset((d / "ds").string());
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(*back[0].image_bytes, (std::vector<uint8_t>{0, 1, 2, 255}));
  EXPECT_EQ(*back[1].image_bytes, bytes_of("not decoded here"));
  EXPECT_TRUE(back[2].image_bytes->empty());
  EXPECT_EQ(back[1].problem, "Q1 ünïcode");
  EXPECT_EQ(back[0].solution.value_or(""), "<answer> A </answer>");
  EXPECT_FALSE(back[1].solution.has_value());
  EXPECT_EQ(back[1].extra.at("question_id"), 5);
  EXPECT_TRUE(back[0].extra.at("question_id").is_null());
  // The same bytes give the same fingerprint.
  write_hf_dataset(recs, (d / "ds2").string());
  EXPECT_EQ(json::parse(read_file(d / "ds2" / "state.json"))["_fingerprint"],
            state["_fingerprint"]);
  // No records: a valid empty dataset.
  write_hf_dataset({}, (d / "empty").string());
  EXPECT_TRUE(load_dataset((d / "empty").string()).empty());
  // An image file that is not there names the record.
  recs[1].image_path = (d / "gone.png").string();
  EXPECT_NE(
      error_of([&] { write_hf_dataset(recs, (d / "ds3").string()); }).find("record 1: image '"),
      std::string::npos);
  EXPECT_FALSE(fs::exists(d / "ds3" / "data-00000-of-00001.arrow.tmp"));  // no half file left
}

TEST(HfDataset, ErrorsOnDamagedFolders) {
  const fs::path d = fresh_dir("damaged");
  std::vector<Record> recs(250);
  for (size_t i = 0; i < recs.size(); ++i) {
    recs[i].image = "x" + std::to_string(i) + ".png";
    recs[i].image_bytes =
        std::make_shared<const std::vector<uint8_t>>(std::vector<uint8_t>(300, uint8_t(i)));
    recs[i].problem = "Q";
  }
  auto fresh = [&](const std::string& name) {
    const std::string f = (d / name).string();
    write_hf_dataset(recs, f);
    return f;
  };
  const std::string arrow = "data-00000-of-00001.arrow";
  // Truncated .arrow (half of it): an error naming the folder and file, no crash.
  {
    const std::string f = fresh("truncated");
    const std::string bytes = read_file(fs::path(f) / arrow);
    write_file(fs::path(f) / arrow, bytes.substr(0, bytes.size() / 2));
    const std::string e = error_of([&] { load_dataset(f); });
    EXPECT_EQ(e.rfind(f + ": " + arrow + ": record batch ", 0), 0u) << e;
  }
  // Garbage instead of an Arrow stream.
  {
    const std::string f = fresh("garbage");
    write_file(fs::path(f) / arrow, std::string(64, 'x'));
    const std::string e = error_of([&] { load_dataset(f); });
    EXPECT_EQ(e.rfind(f + ": " + arrow + ": not a readable Arrow IPC stream", 0), 0u) << e;
    write_file(fs::path(f) / arrow, "");
    EXPECT_EQ(error_of([&] {
                load_dataset(f);
              }).rfind(f + ": " + arrow + ": not a readable Arrow IPC stream", 0),
              0u);
  }
  // Every single corrupted byte in the first 2 KiB (schema and first batch's metadata): error or
  // the rows, no crash (ValidateFull on every batch).
  {
    const std::string f = fresh("flipped");
    const std::string good = read_file(fs::path(f) / arrow);
    int errors = 0;
    for (size_t pos = 0; pos < 2048 && pos < good.size(); pos += 7) {
      std::string bad = good;
      bad[pos] = static_cast<char>(bad[pos] ^ 0x5a);
      write_file(fs::path(f) / arrow, bad);
      try {
        const auto r = load_dataset(f);
        EXPECT_LE(r.size(), recs.size());
      } catch (const medr1::Error& e) {
        ++errors;
        EXPECT_EQ(std::string(e.what()).rfind(f, 0), 0u) << e.what();
      }
    }
    EXPECT_GT(errors, 0);
  }
  // A shard state.json lists that is not there.
  {
    const std::string f = fresh("missing_shard");
    json state = json::parse(read_file(fs::path(f) / "state.json"));
    state["_data_files"].push_back({{"filename", "data-00001-of-00002.arrow"}});
    write_file(fs::path(f) / "state.json", state.dump());
    EXPECT_EQ(error_of([&] { load_dataset(f); }),
              f + ": state.json: _data_files[1]: data-00001-of-00002.arrow: file not found");
    state.erase("_data_files");
    write_file(fs::path(f) / "state.json", state.dump());
    EXPECT_EQ(error_of([&] { load_dataset(f); }), f + ": state.json: _data_files: missing");
    write_file(fs::path(f) / "state.json", "{not json");
    EXPECT_EQ(error_of([&] { load_dataset(f); }).rfind(f + ": state.json: JSON parse error", 0),
              0u);
  }
  // dataset_info.json without state.json.
  {
    const std::string f = fresh("no_state");
    fs::remove(fs::path(f) / "state.json");
    EXPECT_TRUE(is_hf_dataset(f));
    EXPECT_EQ(error_of([&] { load_dataset(f); }),
              f + ": state.json: not found (a folder written by datasets' save_to_disk has it)");
  }
  // A DatasetDict whose split folder is gone.
  {
    const std::string f = (d / "dict").string();
    write_hf_dataset_dict({{"train", {recs.begin(), recs.begin() + 2}}}, f);
    fs::remove_all(fs::path(f) / "train");
    EXPECT_EQ(error_of([&] { load_dataset(f); }),
              (fs::path(f) / "train").string() +
                  ": state.json: not found (a folder written by datasets' save_to_disk has it)");
  }
}
