// Resumable evaluation of one split: the loop shared by medr1-eval (and medr1-infer's scoring).
// Per (split, setting) it appends each scored item to "<split>_<setting>.jsonl" (JsonlWriter: a
// rerun skips done items, a killed run loses at most the item being written), shows a progress
// bar, and at the end writes the Med-R1-style "<split>_<setting>.json" (SplitMetrics::to_json).
// Generation itself is a callback, so this file needs no model code and tests run without one.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "medr1/data/answer.h"
#include "medr1/data/dataset.h"
#include "medr1/eval/metrics.h"

namespace medr1::eval {

// Decoded outputs for a batch of records, one per record, in order. Throwing marks the batch as
// failed: it is retried one record at a time, and records that still throw become error items.
using GenerateFn = std::function<std::vector<std::string>(const std::vector<const data::Record*>&)>;

struct SplitRunOptions {
  std::string output_dir;     // where the .jsonl and .json go (created if needed)
  std::string split_type;     // "modality" | "question_type" | ""
  std::string setting = "clean/think";
  int batch_size = 1;
  int fsync_every = 1;        // JsonlWriterOptions::fsync_every
  bool resume = true;         // false: start the split over
  bool show_progress = true;  // progress bar on stderr
  data::AnswerOptions answer;
  nlohmann::json meta = nlohmann::json::object();  // copied into the result JSON
};

struct SplitRunResult {
  SplitMetrics metrics;
  std::string jsonl_path;
  std::string json_path;
  int64_t n_resumed = 0;    // items found done in the JSONL
  int64_t n_generated = 0;  // items produced in this run
};

// Evaluates `records` (all of one split) under opts.setting. Records already in the JSONL (by
// Record.index) are not regenerated. Errors: output folder not writable, a corrupt JSONL, a
// GenerateFn returning the wrong number of outputs.
SplitRunResult run_split(const std::string& split_name, const std::vector<data::Record>& records,
                         const GenerateFn& generate, const SplitRunOptions& opts);

}  // namespace medr1::eval
