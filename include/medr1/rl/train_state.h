// Trainer checkpoints: output_dir/checkpoint-<step>/ is a Hugging Face folder (config.json, safetensors
// shards + index, tokenizer / processor / chat template / generation config side files) plus, unless
// save_only_model, the exact-resume state: AdamW moments (optimizer.safetensors), scheduler and global
// step, RNG states (torch CPU generator bytes and std::mt19937_64 text), the data sampler position and the
// metric history (trainer_state.json, HF's log_history). Everything is written into a temp folder and
// committed with io::commit_dir_atomic, so a kill at any instant leaves the previous checkpoint intact.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/optim/adamw.h>

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "medr1/dist/sampler.h"
#include "medr1/model/qwen2_vl.h"

namespace medr1::rl {

struct TrainerState {
  int64_t global_step = 0;                 // optimizer steps done (= scheduler steps)
  dist::SamplerState sampler;              // data position (epoch, prompts handed out on this rank)
  int64_t world_size = 1;                  // data-parallel ranks that wrote it (resume rescales the position)
  std::vector<nlohmann::json> log_history; // every metrics.jsonl record so far
  std::string mt_state;                    // std::mt19937_64 operator<< text
  at::Tensor torch_rng_state;              // default CPU generator get_state() bytes
};

// Fills the RNG fields from the process RNGs / restores them.
void capture_rng(TrainerState& st, const std::mt19937_64& mt);
void restore_rng(const TrainerState& st, std::mt19937_64& mt);

// Writes output_dir/checkpoint-<step>. `weights` are the (fp32 master) tensors under their HF names;
// `model_config` is written as config.json; side files are copied from `side_files_dir`. opt == nullptr
// (save_only_model) writes the model part only; `ref_weights` (sync_ref_model), when given with opt,
// go into ref_model/ (safetensors + config.json). `adapter_config` (LoRA): `weights` are the adapters,
// written as a PEFT folder (adapter_config.json + adapter_model.safetensors) instead of config.json and the
// model's safetensors. Returns the final folder.
std::string save_checkpoint(const std::string& output_dir, const TrainerState& st,
                            const std::vector<std::pair<std::string, at::Tensor>>& weights,
                            const nlohmann::json& model_config, const std::string& side_files_dir,
                            const torch::optim::AdamW* opt,
                            const std::vector<std::pair<std::string, at::Tensor>>& opt_params,
                            const nlohmann::json& run_config,
                            const std::vector<std::pair<std::string, at::Tensor>>* ref_weights = nullptr,
                            const nlohmann::json* adapter_config = nullptr);

// Reads trainer_state.json and optimizer.safetensors of `dir` into `st` and `opt` (whose parameters are
// `opt_params`, same names and order as saved). Throws naming the file when the folder lacks them.
void load_trainer_state(const std::string& dir, TrainerState& st, torch::optim::AdamW& opt,
                        const std::vector<std::pair<std::string, at::Tensor>>& opt_params);

// The two halves of load_trainer_state, each validating what it reads and naming `path` and the field
// in its errors (fuzzed by tests/fuzz/fuzz_trainer_state.cpp):
//   parse_trainer_state: trainer_state.json's object -> global_step, sampler {epoch, position} (integers
//     in [0, 2^40]), world_size (1 .. 2^20, default 1), mt_state (string), log_history (array of objects);
//   load_optimizer_state: optimizer.safetensors' tensors -> torch_rng_state (1-D uint8) into st and each
//     parameter's AdamW exp_avg / exp_avg_sq (floating, the parameter's shape) and step (one whole
//     number >= 0) into opt.
TrainerState parse_trainer_state(const nlohmann::json& j, const std::string& path);
void load_optimizer_state(const std::map<std::string, at::Tensor>& tensors, const std::string& path,
                          TrainerState& st, torch::optim::AdamW& opt,
                          const std::vector<std::pair<std::string, at::Tensor>>& opt_params);

// "latest" -> the highest checkpoint-<N> folder under output_dir (nullopt if none); any other value is
// returned as is (after io::recover_dir_atomic).
std::optional<std::string> resolve_resume_dir(const std::string& resume, const std::string& output_dir);

// Test hook: when the environment variable MEDR1_TEST_KILL_DURING_SAVE equals the step being saved, the
// process sends itself SIGKILL after the weights are written into the temp folder (kill -9 mid-write).
inline constexpr const char* kKillDuringSaveEnv = "MEDR1_TEST_KILL_DURING_SAVE";

}  // namespace medr1::rl
