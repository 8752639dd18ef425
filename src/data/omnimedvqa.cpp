// Med-R1 OmniMedVQA Splits enumeration and loading (omnimedvqa.h).
#include "medr1/data/omnimedvqa.h"

#include <algorithm>
#include <filesystem>

#include "medr1/core/error.h"
#include "medr1/data/hf_dataset.h"

namespace medr1::data {

namespace fs = std::filesystem;

EvaluationType parse_evaluation_type(std::string_view s) {
  if (s == "modality") return EvaluationType::modality;
  if (s == "question_type") return EvaluationType::question_type;
  if (s == "both") return EvaluationType::both;
  fail("evaluation type '", s, "': expected modality, question_type or both");
}

const char* to_string(EvaluationType t) {
  switch (t) {
    case EvaluationType::modality: return "modality";
    case EvaluationType::question_type: return "question_type";
    case EvaluationType::both: return "both";
  }
  return "?";
}

std::string split_name_from_filename(std::string_view filename, std::string_view stage) {
  std::string_view s = filename;
  for (std::string_view ext : {std::string_view(".jsonl"), std::string_view(".json")}) {
    if (s.size() > ext.size() && s.substr(s.size() - ext.size()) == ext) {
      s.remove_suffix(ext.size());
      break;
    }
  }
  std::string suffix(1, '_');  // appended piecewise: GCC 12 -Wrestrict false positive on "_" + s
  suffix.append(stage);
  // The last "_<stage>" that ends the name or is followed by a '.'-suffix (".first20").
  size_t pos = s.rfind(suffix);
  while (pos != std::string_view::npos && pos > 0) {
    size_t end = pos + suffix.size();
    if (end == s.size() || s[end] == '.') return std::string(s.substr(0, pos));
    pos = s.rfind(suffix, pos - 1);
  }
  return std::string(s);
}

std::vector<SplitFile> list_split_files(const std::string& splits_dir, EvaluationType type,
                                        std::string_view stage,
                                        const std::vector<std::string>& only_names) {
  std::error_code ec;
  MEDR1_CHECK(fs::is_directory(splits_dir, ec), splits_dir,
              ": Splits folder not found (expected <dir>/modality/test/*.json as in Med-R1)");
  std::vector<std::string> types;
  if (type == EvaluationType::modality || type == EvaluationType::both) types.push_back("modality");
  if (type == EvaluationType::question_type || type == EvaluationType::both)
    types.push_back("question_type");
  std::vector<SplitFile> all;
  for (const auto& t : types) {
    const fs::path dir = fs::path(splits_dir) / t / std::string(stage);
    MEDR1_CHECK(fs::is_directory(dir, ec), dir.string(), ": split folder not found");
    std::vector<SplitFile> files;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string ext = e.path().extension().string();
      // A `datasets` folder (save_to_disk) counts as one split file, named like one.
      const bool hf = e.is_directory() && is_hf_dataset(e.path().string());
      if (!hf && (!e.is_regular_file() || (ext != ".json" && ext != ".jsonl"))) continue;
      const std::string fname = e.path().filename().string();
      files.push_back({t, std::string(stage), split_name_from_filename(fname, stage),
                       e.path().string()});
    }
    std::sort(files.begin(), files.end(),
              [](const SplitFile& a, const SplitFile& b) { return a.path < b.path; });
    all.insert(all.end(), files.begin(), files.end());
  }
  if (only_names.empty()) return all;
  std::vector<SplitFile> picked;
  for (const auto& n : only_names) {
    size_t before = picked.size();
    for (const auto& f : all)
      if (f.name == n) picked.push_back(f);
    if (picked.size() == before) {
      std::string avail;
      for (const auto& f : all) {
        avail.append(avail.empty() ? "'" : ", '");
        avail.append(f.name);
        avail.push_back('\'');
      }
      fail(splits_dir, ": no ", std::string(stage), " split named '", n, "' (available: ", avail,
           ")");
    }
  }
  return picked;
}

std::vector<Record> load_split(const SplitFile& split, const std::string& dataset_root) {
  LoadOptions opts;
  opts.image_root = dataset_root;
  opts.require_solution = false;  // eval: a record without one becomes an error item, not a lost split
  opts.hf_split = split.stage.empty() ? "test" : split.stage;  // a DatasetDict folder: that split
  auto recs = load_records_file(split.path, opts);
  for (auto& r : recs) {
    r.extra["split"] = split.name;
    r.extra["split_type"] = split.type;
  }
  return recs;
}

std::string source_dataset_of(std::string_view image) {
  constexpr std::string_view prefix = "Images/";
  if (image.substr(0, prefix.size()) != prefix) return "";
  image.remove_prefix(prefix.size());
  size_t slash = image.find('/');
  if (slash == std::string_view::npos) return "";
  return std::string(image.substr(0, slash));
}

}  // namespace medr1::data
