// What a training run leaves to read, on rank 0 only: metrics.jsonl (one JSON record per logged
// step, HF's log_history), TensorBoard event files (report_to "tensorboard": a scalar per metrics
// key, the sampled completions as text), completions.jsonl (log_completions: Med-R1's DEBUG_MODE /
// TRL's log_completions rows: step, prompt, image, problem, completion, rewards, advantage) and SVG
// training curves under plots/ (at each save and at the end). Everything is appended and flushed
// per logged step, so a killed run leaves readable files; on resume the logs are cut back to the
// checkpoint's step first, so no step appears twice. Data-parallel: completions.jsonl holds rank
// 0's own prompts (not gathered from the other ranks); the metrics are the ranks' means. No torch
// here.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "medr1/rl/grpo_config.h"

namespace medr1::io {
class EventFileWriter;
}

namespace medr1::rl {

// report_to (HF TrainingArguments): "none", "tensorboard", "wandb", "all" or a list of them. wandb
// is not native: it asks for a warning, and the metrics still go to metrics.jsonl and TensorBoard.
struct ReportTo {
  bool tensorboard = false;
  bool wandb_requested = false;
};
// Throws naming report_to on an unknown name or "none" mixed with others.
ReportTo parse_report_to(const std::vector<std::string>& names);

// Keeps the lines of a JSONL file whose "step" is <= `max_step` (in order; unparsable lines, e.g. a
// torn last line of a killed run, are dropped), rewriting the file atomically. A missing file stays
// missing. Returns the number of lines kept.
size_t truncate_jsonl_after_step(const std::string& path, int64_t max_step);

// The SVG curves of a run from its metrics records: plots/{reward, rewards_<name>...,
// completion_length, kl, loss, grad_norm, learning_rate, rewards_and_lengths}.svg (the keys
// present) and plots/index.html showing them all. Returns the files written.
std::vector<std::string> write_training_plots(const std::string& output_dir,
                                              const std::vector<nlohmann::json>& history,
                                              const std::string& run_name);

class TrainLogger {
 public:
  // `history`: the metrics records up to `resume_step` (0 = fresh run). Rank 0 rewrites
  // metrics.jsonl from it, cuts completions.jsonl back to resume_step, and opens a TensorBoard
  // event file (SessionLog START at resume_step + 1); other ranks do nothing.
  TrainLogger(const GRPOConfig& cfg, bool is_main, const std::vector<nlohmann::json>& history,
              int64_t resume_step);
  ~TrainLogger();
  TrainLogger(const TrainLogger&) = delete;
  TrainLogger& operator=(const TrainLogger&) = delete;

  // One logged step: the metrics record (its "step"), and the step's completion rows (written when
  // log_completions, at most num_completions_to_print of them when > 0).
  void log(const nlohmann::json& record, const std::vector<nlohmann::json>& completions);
  // Rewrites the SVG curves from the whole history.
  void write_plots(const std::vector<nlohmann::json>& history);
  const std::string& event_file() const { return event_file_; }

 private:
  const GRPOConfig& cfg_;
  bool is_main_;
  std::string metrics_path_, completions_path_, event_file_;
  std::unique_ptr<io::EventFileWriter> tb_;
};

}  // namespace medr1::rl
