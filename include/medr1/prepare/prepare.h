// medr1-prepare: the OmniMedVQA release (<root>/Images/...,
// <root>/QA_information/{Open,Restricted}-access/*.json)
// -> Med-R1's Splits/{modality,question_type}/{train,test}/<Name>_<stage>.json. Names are the
// records' modality_type ("unknown" when absent / empty) and question_type, typos kept as
// OmniMedVQA spells them
// ("MR (Mag-netic Resonance Imaging)", "OCT (Optical Coherence Tomography"). Records are
// {"image", "problem", "solution"}: problem = question + " " + ", ".join("L)option_L"), solution =
// "<answer> L </answer>". Bad items (no option equals gt_answer, image missing, image unreadable)
// are listed in the report; the record without a matching option is EXCLUDED (it has no solution),
// records with a bad image are KEPT (the path is valid for users who add the images later) but
// listed.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace medr1::prepare {

enum class Access { open, restricted, all };
Access parse_access(const std::string& s);  // "open" | "restricted" | "all"

struct QaItem {
  std::string dataset, question_id, question_type, question, gt_answer, image_path, modality_type;
  std::vector<std::string> options;  // option_A, option_B, ... in order (absent ones stop the list)
  std::string source_file;           // QA json it came from (for error messages and the report)
};

struct SplitRecord {
  std::string image, problem, solution;
};

struct BadItem {
  std::string kind;  // "no_matching_option" | "missing_image" | "unreadable_image"
  std::string question_id, image, source_file, detail;
};

// Splits contents: "modality/test/X-Ray_test.json" -> records, in the written order.
struct SplitContents {
  std::map<std::string, std::vector<SplitRecord>> files;
  std::vector<BadItem> bad;
  std::map<std::string, int64_t> per_modality, per_question_type;  // kept records per group
};

std::string format_problem(const QaItem& q);
// Letter of the option equal to gt_answer ('\0' if none).
char answer_letter(const QaItem& q);
std::string modality_name(const std::string& modality_type);

// All QA items of <root>/QA_information/<Open|Restricted>-access/*.json, files sorted by name.
std::vector<QaItem> load_qa(const std::string& root, Access access);

// The split contents (seeded, deterministic on every machine: SplitMix64 Fisher-Yates over items
// sorted by question_id, per group). check_images: stat + decode every image under root (listed as
// bad items).
SplitContents build_splits(const std::vector<QaItem>& items, uint64_t seed, double test_ratio,
                           const std::string& root, bool check_images, int num_workers);

// Serialises each file as Python json.dump(records, f, indent=4) does (ensure_ascii, no trailing
// newline).
std::string to_json_text(const std::vector<SplitRecord>& records);
void write_json_splits(const SplitContents& c, const std::string& output_dir);

struct ResizeStats {
  int64_t written = 0, skipped_existing = 0, failed = 0;
};
// 384x384 (size x size) RGB copies, Pillow-exact bicubic, saved as PNG bytes under the same
// relative path in image_output (temp name + rename; an existing output is skipped).
ResizeStats resize_images(const std::vector<std::string>& rel_paths, const std::string& root,
                          const std::string& image_output, int64_t size, int num_workers);

struct PrepareOptions {
  std::string root, output, format = "json", image_output;
  uint64_t seed = 42;
  double test_ratio = 0.2;
  Access access = Access::open;
  int64_t resize = 0;
  int num_workers = 0;  // 0 = hardware_concurrency
};

// Whole job; writes Splits/, prepare_report.json in output, prints the table on stdout; returns the
// report.
std::string run_prepare(const PrepareOptions& o);

}  // namespace medr1::prepare
