// The training set's screen, before the first step: every record is checked once for what would stop
// or silently spoil a GRPO / SFT run, and each problem becomes one per-item record (data_issues.jsonl)
// and a count (data_summary.json, the log). Nothing is dropped without its record.
//   skipped (not trained on):
//     no_solution          the record has no "solution"
//     solution_unparseable its solution has no <answer> X </answer> (the accuracy reward could not score)
//     answer_not_in_options the solution's letter is not one of the problem's options "A)..., B)..."
//     image_missing        the image file does not exist
//     image_unreadable     the image does not decode (corrupt, truncated, unsupported)
//     prompt_too_long      Med-R1's left truncation to max_prompt_length would cut the image's tokens
//                          (TRL users' bug: the image features could no longer be placed)
//   kept, flagged:
//     one_option           the problem lists a single option (every completion that answers is right)
//     prompt_truncated     longer than max_prompt_length, but only text before the image is cut
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "medr1/data/dataset.h"
#include "medr1/rl/rewards.h"
#include "medr1/tokenizer/tokenizer.h"
#include "medr1/vision/image_processor.h"

namespace medr1::rl {

struct DataIssue {
  int64_t index = 0;       // dataset index (Record::index)
  std::string source_file;
  int64_t file_index = 0;  // record number inside source_file (0-based)
  std::string image;       // as written in the record
  std::string kind;        // see above
  std::string detail;      // what was found, in words
  bool skipped = false;
  nlohmann::json to_json() const;
};

struct DataScreen {
  int64_t total = 0;
  std::vector<data::Record> kept;           // in dataset order; Record::index unchanged
  std::vector<DataIssue> issues;            // in dataset order
  std::map<std::string, int64_t> skipped;   // kind -> records
  std::map<std::string, int64_t> flagged;   // kind -> records (kept)
  // {"total", "kept", "skipped": {kind: n}, "flagged": {kind: n}}
  nlohmann::json summary() const;
  // "1200 records: 1195 kept, 5 skipped (image_missing 2, no_solution 3); flagged: one_option 1"
  std::string summary_line() const;
};

struct ScreenOptions {
  PromptMode mode = PromptMode::think;
  vision::ImageProcessorConfig ipc;
  int64_t max_prompt_length = 1024;  // <= 0: no truncation
  bool check_answers = true;         // GRPO: the accuracy reward needs a parseable solution
  bool progress = false;             // a progress bar over the records (stderr)
};

// Screens `records` (images decoded once each, prompts tokenized with `tok` as the rollout does).
DataScreen screen_training_records(std::vector<data::Record> records, const tokenizer::Tokenizer& tok,
                                   const ScreenOptions& opt);

// Option letters of a Med-R1 problem, "question A)x, B)y, C)z" -> "ABC": capital letters followed by ')'
// at the start or after a space, kept while they run A, B, C, ... in order of appearance.
std::string option_letters(const std::string& problem);

// output_dir/data_issues.jsonl (one line per issue, rewritten) and output_dir/data_summary.json.
void write_data_screen(const DataScreen& s, const std::string& output_dir);

}  // namespace medr1::rl
