// medr1-eval's engine: OmniMedVQA evaluation over Med-R1 split files (or one prompt file), per prompt template
// (think / nothink / zeroshot / custom) and per attack (clean / FGSM / PGD), scored as Med-R1's
// test_qwen2*_vqa*.py do (greedy, the checkpoint's generation_config defaults, 256 new tokens,
// <answer>\s*(\w+)\s*</answer>, case-insensitive equality) and organised as AdvMed-R1's batch_eval_adversarial.py
// (one result JSON per split and setting, a summary and a table), with the attacks of attacks.h. Each
// (split, setting) goes through run_split (runner.h): resumable JSONL under output_dir/items/, per-item errors.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "medr1/data/omnimedvqa.h"
#include "medr1/eval/attacks.h"
#include "medr1/eval/report.h"

namespace medr1::dist {
class ProcessGroup;
}

namespace medr1::eval {

struct EvalOptions {
  std::string model_dir;
  std::string tokenizer_dir;  // "" = model_dir
  std::string output_dir;
  std::string dataset_root;   // image paths of the records are joined to it
  std::vector<data::SplitFile> splits;  // what to evaluate (see splits_from_args)

  // Prompt templates, each a column group: "think", "nothink", "zeroshot", or "custom" (uses custom_template).
  std::vector<std::string> templates = {"think"};
  std::string custom_template;  // must hold {Question}
  std::vector<AttackType> attacks = {AttackType::clean};
  AttackOptions attack;         // ε, α, iters, random start, seed, loss (type is set per run)
  // Round the adversarial image to uint8 before re-evaluation (as a saved image file would be); ε re-checked.
  bool quantize_adversarial = true;
  int64_t save_images = 0;      // clean/adversarial/difference PNGs for the first N records of each attacked run

  int64_t max_new_tokens = 256;
  int64_t batch_size = 8;
  std::string dtype;            // "" = config torch_dtype; "float32" | "bfloat16" | "float16"
  std::string attn_implementation = "auto";  // auto | eager | sdpa | flash_attention_2 (model/attention.h)
  int64_t min_pixels = 3136;
  int64_t max_pixels = 401408;
  int64_t limit = 0;            // > 0: only the first `limit` records of each split (quick runs)
  bool resume = true;           // false: start every JSONL over
  bool progress = true;         // progress bar on stderr (rank 0)
};

// Split files for the CLI: `split_file` alone (type "", name from the file name) or every test file of
// `splits_dir` for `evaluation_type` (modality | question_type | both), optionally only `names`.
std::vector<data::SplitFile> splits_from_args(const std::string& split_file, const std::string& splits_dir,
                                              const std::string& evaluation_type,
                                              const std::vector<std::string>& names = {});

// The chat-templated Med-R1 eval prompt: one user turn (image placeholder when with_image, then the question
// formatted into template_text), default system prompt, generation prompt.
std::string build_eval_prompt(std::string_view problem, const std::string& template_text, bool with_image);

// Column label of a template name: "think", "nothink", "zeroshot", "custom"; error otherwise.
std::string template_label(const std::string& name);

struct RunStats {
  std::string split;
  std::string setting;
  int64_t items = 0;      // items generated in this run on this rank (resumed ones excluded)
  int64_t errors = 0;     // error items among the whole split result (rank 0)
  double seconds = 0.0;   // wall time of this rank's part
  double items_per_s() const { return seconds > 0 ? static_cast<double>(items) / seconds : 0.0; }
};

struct EvalSummary {
  EvalReport report;           // complete on rank 0
  std::vector<RunStats> stats;  // per (split, setting), in run order
};

// Loads the model and tokenizer, runs every split x attack x template and writes, on rank 0, the per-split
// result JSONs ("<split>_<attack>_<template>.json"), summary.json, report.md and accuracy_heatmap.svg into
// output_dir. `pg` (nullable): data-parallel over its ranks (records sharded round-robin, one JSONL folder per
// rank, barrier, rank 0 merges). With resume, items that a run with another world size finished in the same
// output_dir (items/ or items/rank<r>-of-<w>/) are taken over, not generated again. Per-item failures (unreadable image, generation error) are recorded as error
// items, never fatal; a split file that cannot be read is logged and reported with no items.
EvalSummary run_evaluation(const EvalOptions& opts, dist::ProcessGroup* pg = nullptr);

}  // namespace medr1::eval
