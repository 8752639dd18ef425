// The phases of one training run, which train() (grpo_trainer.cpp) only sequences, in the
// torchtitan manner: set_up (process group, models, optimizer, data, resume), generation_round
// (rollouts, rewards, advantages, reference / old log-probs of one step's micro-batches), update
// (forward / backward per micro-batch, DDP grad averaging, clipping, the AdamW step),
// metrics_record / average_over_ranks (the logged record) and the saves (save_checkpoint_step,
// save_final_model). The pure parts (plan_steps, rescale_sampler_for_world, metrics_record,
// completion_rows) have unit tests of their own; the rest is proven by the trainer's bitwise tests
// (resume, DDP = single process). N = completions of a micro-batch, T = completion tokens.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/optim/adamw.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "medr1/data/dataset.h"
#include "medr1/dist/grad_sync.h"
#include "medr1/dist/launch_env.h"
#include "medr1/dist/process_group.h"
#include "medr1/dist/sampler.h"
#include "medr1/model/lora.h"
#include "medr1/model/qwen2_vl.h"
#include "medr1/rl/advantages.h"
#include "medr1/rl/grpo_config.h"
#include "medr1/rl/grpo_trainer.h"
#include "medr1/rl/lr_schedule.h"
#include "medr1/rl/policy_loss.h"
#include "medr1/rl/rewards.h"
#include "medr1/rl/rollout.h"
#include "medr1/rl/train_state.h"
#include "medr1/tokenizer/tokenizer.h"
#include "medr1/vision/image_processor.h"

namespace medr1::rl {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Step counts as the HF Trainer derives them (dataloader_drop_last False): batches_per_epoch =
// ceil(shard / B) micro-batches, steps_per_epoch = max(batches * num_iterations / GA, 1) (TRL
// repeats each generation batch num_iterations times), total = max_steps if > 0 else ceil(epochs *
// steps_per_epoch); warmup by get_warmup_steps. `shard_samples`: this rank's prompts per epoch
// (DistributedSampler::num_samples).
struct StepPlan {
  int64_t batches_per_epoch = 0, steps_per_epoch = 0, total_steps = 0, warmup_steps = 0;
};
StepPlan plan_steps(const GRPOConfig& cfg, int64_t shard_samples);

// The sampler state of a checkpoint written by `saved_world` ranks, for `world` ranks over
// `n_records` prompts: a finished epoch moves on to the next one; otherwise the prompts consumed
// this epoch (position x saved_world of the shared permutation) must divide by `world` (error
// naming `dir` if not).
dist::SamplerState rescale_sampler_for_world(dist::SamplerState s, int64_t saved_world,
                                             int64_t world, int64_t n_records,
                                             const std::string& dir);

// One micro-batch with everything the loss needs.
struct MicroBatch {
  Rollout r;
  at::Tensor advantages;  // [N] float32 (GRPO)
  at::Tensor ref_logps;   // [N, T] or undefined
  at::Tensor old_logps;   // [N, T] or undefined (num_iterations == 1)
  RewardResult rewards;
  double reward_std = 0;  // mean of the group stds (Med-R1's reward_std)
  double rollout_s = 0;  // the whole micro-batch of generation_round (ref_s and old_s included)
  double ref_s = 0, old_s = 0;  // of it: reference log-probs, old log-probs
};

// What dynamic_sampling did in the last generation round (logged as dynamic_sampling/*).
struct DynamicSamplingStats {
  int64_t gen_batches = 0;       // generation batches of GA x B prompts drawn
  int64_t groups = 0, kept = 0;  // groups generated, of them with reward spread (all, also beyond GA x B)
  int64_t generated_tokens = 0;  // of every generated group
};

// Sums over the micro-batches of one optimizer step.
struct StepMetrics {
  double loss = 0, kl = 0, clip = 0, completion_length = 0, reward_std = 0;
  std::vector<double> per_func_sum;
  double reward_sum = 0, n_completions = 0, n_prompts = 0, n_micro = 0;
  double gen_tokens = 0, rollout_s = 0, train_tokens = 0, train_s = 0;
  double grad_norm = 0;  // global L2 norm before clipping
  double entropy = 0, n_entropy = 0;  // top_entropy_quantile < 1: masked mean token entropy per micro-batch
  bool skipped =
      false;  // non-finite loss / gradient with skip_nonfinite_steps: no optimizer update
  DynamicSamplingStats dynamic;  // dynamic_sampling != none: of the round trained on (gen_batches 0 = off)
};

// Everything set_up builds and the other phases use.
struct TrainSession {
  GRPOConfig cfg;
  bool sft = false;
  dist::LaunchEnv env;
  at::Device device{at::kCPU};
  std::unique_ptr<dist::ProcessGroup> pg;
  bool is_main = true;
  int64_t world = 1;
  // Fault injection for the tests: MEDR1_FAULT_NONFINITE_LOSS="STEP[:RANK]" makes that step's loss
  // NaN (on RANK, else on every rank). Unset in real runs.
  int64_t fault_nonfinite_step = -1;
  int fault_nonfinite_rank = -1;
  std::mt19937_64 mt;
  model::Qwen2VLForConditionalGeneration policy{nullptr},
      ref{nullptr};                      // ref: null when beta == 0, SFT or LoRA
  // use_peft: the policy's adapters; the reference policy is the policy with them off (no second copy).
  std::shared_ptr<model::LoraSet> lora;
  std::unique_ptr<dist::GradSync> sync;  // null on one process
  PromptMode mode = PromptMode::think;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  int64_t eos_id = -1, pad_id = -1;
  vision::ImageProcessorConfig ipc;
  std::vector<data::Record> records;
  // master: fp32 (copies of the bf16 run parameters when bf16); a frozen parameter's entry is the run
  // parameter itself (no copy). master_list: the trainable masters (clipping).
  NamedTensors run_params, master;
  std::vector<at::Tensor> master_list;
  std::unique_ptr<torch::optim::AdamW> opt;
  int64_t B = 1, GA = 1, G = 1;
  std::unique_ptr<dist::DistributedSampler> sampler;
  StepPlan plan;
  LrSchedulerType sched = LrSchedulerType::linear;
  LossType loss_type = LossType::grpo;
  ScaleRewards scale = ScaleRewards::group;
  const RewardRegistry* registry = nullptr;
  GenerateFn gen;
  RolloutOptions ro;
  int64_t divisor = 1;  // of every micro-batch loss (HF's training_step divides by GA)
  PolicyLossOptions plo;
  TrainerState st;  // global step, sampler position, log history (restored on resume)
  DynamicSamplingStats dynamic_stats;  // of the last generation round (dynamic_sampling != none)
};

// Parameter freezing (R1-V / open-r1 `freeze_vision_modules`, verl's freeze_vision_tower; and its mirror
// `freeze_language_model`, which trains only the vision tower and its merger): sets requires_grad false on
// the parameters under "visual." (vision) or on every other one (language model: "model.", "lm_head.").
// Frozen parameters get no gradient, no fp32 master copy, no optimizer state and no gradient allreduce; the
// saved checkpoints still hold every weight. Returns {trainable, total} element counts. Both flags set is an
// error (nothing would train).
// adapters_only (use_peft): every parameter but the LoRA adapters' is frozen.
std::pair<int64_t, int64_t> apply_freezing(torch::nn::Module& policy, bool freeze_vision_modules,
                                           bool freeze_language_model, bool adapters_only = false);

// The LoRA settings of a run config (use_peft, lora_r, lora_alpha, lora_dropout, lora_target_modules, use_rslora).
model::LoraConfig lora_config_of(const GRPOConfig& cfg);

// Validates the config, joins the process group, makes output_dir (rank 0: resolved_config.json,
// stale temp folders removed), loads policy / reference / tokenizer / data, builds the optimizer
// and, when cfg.resume names a checkpoint, restores weights, optimizer, RNGs and the sampler from
// it.
std::unique_ptr<TrainSession> set_up(const GRPOConfig& cfg, const TrainerHooks& hooks);

// The scheduled learning rate of `step`, set on the optimizer.
double set_step_learning_rate(TrainSession& s, int64_t step);

// The GA micro-batches of the next prompts (an epoch's last round may hold fewer): rollouts,
// rewards, advantages, reference and old log-probs (GRPO), or the SFT targets.
// dynamic_sampling drop: the groups whose rewards all agree (groups_with_reward_spread false) are left out
// and the rest packed into micro-batches of B prompts (fewer, possibly none); refill: further generation
// batches are drawn (the same number on every rank) until each rank has GA x B groups with spread or
// max_num_gen_batches is reached. s.dynamic_stats says what happened.
std::vector<MicroBatch> generation_round(TrainSession& s, int64_t step);

// Forward / backward of every micro-batch (grads averaged over ranks on the last one), bf16 -> fp32
// master grads, clipping, the optimizer step, then global_step + 1 and the sampler position in
// s.st. Throws before the optimizer step on a non-finite loss or gradient norm.
StepMetrics update(TrainSession& s, std::vector<MicroBatch>& round, int64_t step);

// Epochs done as a fraction (HF's state.epoch): sampler epoch + position / shard size.
double epoch_progress(const TrainSession& s);

// The logged record of one step (this rank's values): step, epoch, loss, rewards/<f>, reward,
// reward_std, kl, clip_ratio (GRPO), completion_length, learning_rate, grad_norm, step_time,
// rollout / train tokens per s.
nlohmann::json metrics_record(const StepMetrics& m, const std::vector<std::string>& reward_funcs,
                              bool sft, int64_t step, double epoch, double lr, double step_time);
// Every key but step / epoch / learning_rate -> its mean over ranks (HF's gather + mean); the
// throughputs become the job's (world x the mean). No-op on one process.
void average_over_ranks(dist::ProcessGroup& pg, nlohmann::json& rec);

// completions.jsonl rows of a round (this rank's prompts): step, prompt_index (dataset index),
// generation, image, problem, solution, completion, rewards {name: value}, reward, advantage. Empty
// for SFT.
std::vector<nlohmann::json> completion_rows(const std::vector<MicroBatch>& round,
                                            const std::vector<data::Record>& records, int64_t step);

// top_entropy_quantile: TRL's get_high_entropy_mask(entropies, mask, 1 - top_entropy_quantile) with the
// quantile over the non-pad entropies of every rank (gathered; each rank must call it, with or without
// tokens). entropies, mask [N, T] -> bool [N, T].
at::Tensor gathered_high_entropy_mask(dist::ProcessGroup& pg, const at::Tensor& entropies, const at::Tensor& mask,
                                     double top_entropy_quantile);

// TRL SyncRefModelCallback._sync_target_model (TR-DPO): ref.mul_(1 - alpha).add_(policy, alpha) for
// each pair, in the reference's dtype; the two lists hold the same names in the same order.
void mix_into_reference(const NamedTensors& ref, const NamedTensors& policy, double alpha);
// sync_ref_model: after the optimizer step whose global_step is a multiple of ref_model_sync_steps
// (TRL on_step_end), mixes the policy into the reference. Returns whether it did.
bool sync_reference_step(TrainSession& s);

// checkpoint-<global_step> (rank 0 writes, all ranks wait); returns its folder. With sync_ref_model
// (and not save_only_model) the reference it has drifted to goes into its ref_model/ subfolder (an HF
// folder), which resume loads back.
std::string save_checkpoint_step(TrainSession& s);
// trainer.save_model(output_dir): config.json, safetensors and side files in output_dir (rank 0),
// barriers.
void save_final_model(TrainSession& s);

}  // namespace medr1::rl
