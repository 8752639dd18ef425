// Evaluation summary over splits x settings: summary.json, a markdown table and an SVG heatmap.
// Mirrors AdvMed-R1 batch_eval_adversarial.py's evaluation_summary.json and printed
// "Test | Clean | FGSM | PGD" table, generalised to any settings (e.g. clean/fgsm/pgd x
// think/nothink). Rows are splits in first-seen order; a cell never run shows "—".
// Plain text output only: rendering the SVG to PNG is left to external tools (rsvg-convert).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "medr1/eval/metrics.h"

namespace medr1::eval {

struct SummaryEntry {
  std::string split;       // row: split display name
  std::string split_type;  // "modality" | "question_type" | ""
  std::string setting;     // column, e.g. "clean/think"
  double accuracy = 0.0;   // percent
  int64_t num_samples = 0;
  int64_t num_correct = 0;
  int64_t num_unparseable = 0;
  int64_t num_errors = 0;
  std::string output_path;  // the split's result JSON ("" if none)
};

// Entry for a finished split.
SummaryEntry summarize(const SplitMetrics& m, std::string output_path = "");

// Column name for an attack and prompt mode: "clean/think", "pgd/nothink".
std::string setting_name(std::string_view attack, bool think);
// Result file name of a split under a setting, AdvMed-R1 style "{name}_{attack}.json" with the
// setting's '/' turned into '_': ("CT(Computed Tomography)", "clean/think") ->
// "CT(Computed Tomography)_clean_think.json". Characters other than '/' and NUL are kept.
std::string result_file_name(std::string_view split, std::string_view setting);

// &, <, >, ", ' as entities; control characters XML 1.0 forbids become U+FFFD.
std::string xml_escape(std::string_view s);

class EvalReport {
 public:
  nlohmann::json meta = nlohmann::json::object();  // model_path, epsilon, ... (copied to summary)

  // Adds or replaces the (split, setting) cell.
  void add(SummaryEntry e);
  const std::vector<SummaryEntry>& entries() const { return entries_; }
  // Fixes the column order (settings not listed follow in first-seen order).
  void set_setting_order(std::vector<std::string> order) { setting_order_ = std::move(order); }

  std::vector<std::string> splits() const;    // rows, first-seen order
  std::vector<std::string> settings() const;  // columns
  std::optional<SummaryEntry> find(std::string_view split, std::string_view setting) const;
  // Mean accuracy over the splits that have this setting (macro); nullopt if none.
  std::optional<double> macro_accuracy(std::string_view setting) const;
  // Total correct / total samples * 100 over those splits (micro); nullopt if none.
  std::optional<double> micro_accuracy(std::string_view setting) const;

  // {"meta", "settings", "splits": [{"name","type"}], "results": [entries]}.
  nlohmann::json to_json() const;
  // Inverse of to_json (to merge runs or resume); errors name `where`.
  static EvalReport from_json(const nlohmann::json& j, const std::string& where = "summary.json");

  // "# title", meta lines, the accuracy table (Split | N | settings...; rows plus "Mean (macro)"
  // and "All (micro)"), then a details table (correct/N, unparseable, errors, file per cell).
  std::string to_markdown(const std::string& title = "medr1 evaluation") const;
  // Heatmap of accuracy: rows = splits, columns = settings, value written in each cell, 0-100
  // viridis scale with a legend, missing cells grey with "—".
  std::string to_svg_heatmap(const std::string& title = "Accuracy (%)") const;

  // Writes summary.json, report.md and accuracy_heatmap.svg into `dir` (created if needed).
  void write_all(const std::string& dir, const std::string& title = "medr1 evaluation") const;

 private:
  std::vector<SummaryEntry> entries_;
  std::vector<std::string> setting_order_;
};

// AdvMed-R1's eval_qwen2_5vl_adversarial.py writes one result JSON at --output_path. medr1-eval
// keeps its results folder beside it: "results/ct_pgd.json" -> "results/ct_pgd" (a path without
// .json gets "_results").
std::string output_dir_for_output_path(const std::string& output_path);
// Writes the run's one result JSON (the split x setting of `report`; AdvMed-R1's fields
// test_data_path, attack_type, epsilon, pgd_alpha, pgd_iters, accuracy, num_samples, num_correct
// plus medr1's) to output_path, atomically. Errors when the run had no result or several
// (--output_path is for one split and one setting; use
// --output-dir's files then).
void write_single_result(const EvalReport& report, const std::string& output_path);

}  // namespace medr1::eval
