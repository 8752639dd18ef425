// Med-R1 prompt files: a JSON array or JSONL of {"image", "problem", "solution"?, ...} records
// (the format of Med-R1 Splits/*.json and src/eval_vqa/prompts/*.json, read there with json.load).
// `--dataset` is one file or a folder of them (*.json / *.jsonl, sorted). Image paths are resolved
// against a dataset root like AdvMed-R1's --dataset_root (absolute paths stay). Images are not
// opened here (vision/image_io does that), so loading 18k records stays cheap.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace medr1::data {

struct Record {
  int64_t index = 0;          // position in the whole loaded dataset (0-based, files in order)
  int64_t file_index = 0;     // position inside source_file (0-based; used in error messages)
  std::string image;          // "image" as written in the file, e.g. "Images/Chest CT Scan/..."
  std::string image_path;     // `image` resolved against the dataset root
  // The encoded image file (PNG/JPEG...) when the dataset embeds it (a `datasets` folder's Image column, see
  // hf_dataset.h); callers decode these bytes instead of opening image_path. Null for JSON records.
  std::shared_ptr<const std::vector<uint8_t>> image_bytes;
  std::string problem;        // question with options, "... A)CT, B)MRI, ..."
  std::optional<std::string> solution;  // "<answer> C </answer>" (absent in inference-only files)
  nlohmann::json extra = nlohmann::json::object();  // every other field, kept as is
  std::string source_file;    // the file it came from
};

struct LoadOptions {
  // Relative image paths are joined to this; "" keeps them as written (relative to the cwd,
  // like Med-R1's eval scripts and AdvMed-R1's default --dataset_root ".").
  std::string image_root;
  bool require_solution = false;  // evaluation and training need it; inference does not
  // A `datasets` DatasetDict folder: the split to read (TRL's dataset_train_split default "train"; eval and
  // inference pass "test"); when absent and the folder has only one split, that one is read.
  std::string hf_split = "train";
};

// Joins a relative `image` to `root` ("" -> unchanged); absolute paths are returned unchanged.
std::string resolve_image_path(const std::string& image, const std::string& root);

// `path` is a file -> {path}; a folder -> its *.json and *.jsonl files (not recursive), sorted by
// name; a Hugging Face `datasets` folder (hf_dataset.h) -> {path}. Errors: missing path, a folder
// without such files.
std::vector<std::string> list_dataset_files(const std::string& path);

// A `datasets` folder (is_hf_dataset) is read by load_hf_dataset. Otherwise: if its first non-blank character is '[' it is a JSON array, otherwise JSONL (one
// object per non-blank line). Record.index counts from `first_index`. Errors name the file, the
// record index (and JSONL line) and the field, e.g.
//   "data/test.json: record 3: problem: missing"
//   "data/test.jsonl: record 2 (line 4): image: expected string, got number".
std::vector<Record> load_records_file(const std::string& path, const LoadOptions& opts = {},
                                      int64_t first_index = 0);

// list_dataset_files + load_records_file over each; indices run across files.
std::vector<Record> load_dataset(const std::string& path, const LoadOptions& opts = {});

// The record back as a Med-R1 JSON object (extra fields first, then image/problem/solution as
// written in the file).
nlohmann::json record_to_json(const Record& r);

}  // namespace medr1::data
