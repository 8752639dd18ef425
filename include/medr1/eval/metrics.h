// Per-split evaluation accounting and the per-split result JSON.
// Result files follow Med-R1 src/eval_vqa/test_qwen2*_vqa*.py ({"accuracy", "results": [{question,
// ground_truth, model_output, extracted_answer}]}) and add AdvMed-R1's num_samples/num_correct and
// per-item correct, gt_answer, image, index and error. Accuracy = correct / N * 100 over every
// record of the split (an item that failed or gave no parseable answer counts as wrong, as in
// Med-R1, where None never equals the ground truth).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "medr1/data/answer.h"
#include "medr1/data/dataset.h"

namespace medr1::eval {

struct ItemResult {
  int64_t index = 0;                            // Record.index
  std::string question;                         // the record's problem (without the template)
  std::string image;                            // the record's image as written in the file
  std::string ground_truth;                     // the record's solution, "<answer> C </answer>"
  std::string model_output;                     // decoded generation ("" if it failed)
  std::optional<std::string> extracted_answer;  // answer parsed from model_output
  std::optional<std::string> gt_answer;         // answer parsed from ground_truth
  bool correct = false;
  std::optional<std::string> error;             // why this item has no output (OOM, bad image…)
};

// Judges `model_output` against the record's solution (data::judge_answer).
ItemResult score_item(const data::Record& rec, std::string model_output,
                      const data::AnswerOptions& opts = {});
// An item that failed: counted, wrong, with `error` kept for the report.
ItemResult error_item(const data::Record& rec, std::string error);

// One results[] entry; optional values are JSON null (Python None), "error" only when set.
nlohmann::json item_to_json(const ItemResult& r);
// Inverse of item_to_json (e.g. lines read back by a resumed JsonlWriter). Errors name `where`.
ItemResult item_from_json(const nlohmann::json& j, const std::string& where = "item");

class SplitMetrics {
 public:
  SplitMetrics() = default;
  SplitMetrics(std::string name, std::string type, std::string setting)
      : name(std::move(name)), type(std::move(type)), setting(std::move(setting)) {}

  std::string name;     // split display name, e.g. "CT(Computed Tomography)"
  std::string type;     // "modality" | "question_type" | "" (plain dataset)
  std::string setting;  // column of the report, e.g. "clean/think"

  int64_t num_samples = 0;
  int64_t num_correct = 0;
  int64_t num_unparseable = 0;     // output present but no <answer>\w+</answer> in it
  int64_t num_errors = 0;          // items with error set
  int64_t num_gt_unparseable = 0;  // solutions the regex cannot read (data problem; always wrong)
  std::vector<ItemResult> results;

  void add(ItemResult r);
  // Adds items read back from a resumed JSONL (JsonlWriter::existing()); `where` names the file.
  // All or nothing: on a malformed item it throws and adds none.
  void add_json_items(const std::vector<nlohmann::json>& items, const std::string& where);
  double accuracy() const;          // num_correct / num_samples * 100; 0 when empty
  double unparseable_rate() const;  // num_unparseable / num_samples * 100; 0 when empty

  // {"split", "split_type", "setting", "accuracy", "num_samples", "num_correct",
  //  "num_unparseable", "unparseable_rate", "num_errors", "num_gt_unparseable", <meta members>,
  //  "results": [...] sorted by index}.
  nlohmann::json to_json(const nlohmann::json& meta = nlohmann::json::object()) const;
};

// Writes `j` (indent 2) to `path` via a temporary file and rename, so a reader never sees half a
// file (the per-split result JSON and summary.json are rewritten after every split).
void write_json_atomic(const std::string& path, const nlohmann::json& j);

}  // namespace medr1::eval
