// Med-R1 prompt-file loading (dataset.h).
#include "medr1/data/dataset.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "medr1/core/error.h"
#include "medr1/data/hf_dataset.h"

namespace medr1::data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    case json::value_t::binary: return "binary";
    case json::value_t::discarded: return "discarded";
    default: return "number";
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MEDR1_CHECK(in.good(), path, ": cannot open (", std::strerror(errno), ")");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "file: record 3" or "file: record 3 (line 5)".
std::string where(const std::string& file, int64_t rec, int64_t line) {
  std::string w = file + ": record " + std::to_string(rec);
  if (line > 0) w += " (line " + std::to_string(line) + ")";
  return w;
}

Record make_record(const json& obj, const std::string& file, int64_t file_index, int64_t line,
                   const LoadOptions& opts) {
  const std::string w = where(file, file_index, line);
  MEDR1_CHECK(obj.is_object(), w, ": expected object, got ", type_name(obj));
  Record r;
  r.file_index = file_index;
  r.source_file = file;
  auto get_string = [&](const char* key, bool required) -> std::optional<std::string> {
    auto it = obj.find(key);
    if (it == obj.end() || (!required && it->is_null())) {
      MEDR1_CHECK(!required, w, ": ", key, ": missing");
      return std::nullopt;
    }
    MEDR1_CHECK(it->is_string(), w, ": ", key, ": expected string, got ", type_name(*it));
    return it->get<std::string>();
  };
  r.image = *get_string("image", true);
  r.problem = *get_string("problem", true);
  r.solution = get_string("solution", opts.require_solution);
  r.image_path = resolve_image_path(r.image, opts.image_root);
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (it.key() == "image" || it.key() == "problem" || it.key() == "solution") continue;
    r.extra[it.key()] = it.value();
  }
  return r;
}

bool is_dataset_file(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".json" || ext == ".jsonl";
}

}  // namespace

std::string resolve_image_path(const std::string& image, const std::string& root) {
  if (root.empty() || image.empty() || fs::path(image).is_absolute()) return image;
  return (fs::path(root) / image).string();
}

std::vector<std::string> list_dataset_files(const std::string& path) {
  std::error_code ec;
  MEDR1_CHECK(fs::exists(path, ec), path, ": dataset not found (pass a .json/.jsonl file or a "
              "folder of them)");
  if (!fs::is_directory(path, ec) || is_hf_dataset(path)) return {path};
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(path)) {
    if (e.is_regular_file() && is_dataset_file(e.path())) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  MEDR1_CHECK(!files.empty(), path, ": folder holds no *.json or *.jsonl dataset files");
  return files;
}

std::vector<Record> load_records_file(const std::string& path, const LoadOptions& opts,
                                      int64_t first_index) {
  if (is_hf_dataset(path)) return load_hf_dataset(path, opts, first_index);
  const std::string text = read_file(path);
  std::vector<Record> out;
  // A UTF-8 byte-order mark (Windows editors) is skipped, as Python's utf-8-sig would.
  const size_t bom = text.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;
  const size_t first = text.find_first_not_of(" \t\r\n", bom);
  if (first == std::string::npos) return out;  // an empty file is an empty dataset
  if (text[first] == '[') {
    json arr;
    try {
      arr = json::parse(text.begin() + static_cast<std::ptrdiff_t>(bom), text.end());
    } catch (const json::parse_error& e) {
      fail(path, ": JSON parse error at byte ", e.byte, ": ", e.what());
    }
    out.reserve(arr.size());
    for (size_t i = 0; i < arr.size(); ++i) {
      out.push_back(make_record(arr[i], path, static_cast<int64_t>(i), 0, opts));
      out.back().index = first_index + static_cast<int64_t>(i);
    }
    return out;
  }
  // JSONL: one object per non-blank line.
  size_t pos = bom;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    ++line_no;
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const auto rec = static_cast<int64_t>(out.size());
    json obj;
    try {
      obj = json::parse(line);
    } catch (const json::parse_error& e) {
      fail(where(path, rec, line_no), ": JSON parse error at byte ", e.byte, " of the line: ",
           e.what());
    }
    out.push_back(make_record(obj, path, rec, line_no, opts));
    out.back().index = first_index + rec;
  }
  return out;
}

std::vector<Record> load_dataset(const std::string& path, const LoadOptions& opts) {
  std::vector<Record> all;
  for (const auto& f : list_dataset_files(path)) {
    auto recs = load_records_file(f, opts, static_cast<int64_t>(all.size()));
    all.insert(all.end(), std::make_move_iterator(recs.begin()),
               std::make_move_iterator(recs.end()));
  }
  return all;
}

json record_to_json(const Record& r) {
  json j = r.extra.is_object() ? r.extra : json::object();
  j["image"] = r.image;
  j["problem"] = r.problem;
  if (r.solution) j["solution"] = *r.solution;
  return j;
}

}  // namespace medr1::data
