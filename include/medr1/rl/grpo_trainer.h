// The GRPO / SFT training loop (orchestration only; the math lives in rewards / advantages / policy_loss /
// lr_schedule / optim). Mirrors Med-R1's Qwen2VLGRPOTrainer on the HF Trainer: per optimizer step,
// gradient_accumulation_steps micro-batches of per_device_train_batch_size prompts, each rolled out G times,
// rewards summed, group advantages, the GRPO loss against a frozen reference copy (beta > 0), AdamW with the
// LR schedule and global-norm clipping; metrics appended to output_dir/metrics.jsonl; atomic checkpoints with
// exact resume. algo "sft" trains cross-entropy on solution + EOS instead (Med-R1's SFT baseline).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "medr1/rl/grpo_config.h"
#include "medr1/rl/rewards.h"
#include "medr1/rl/rollout.h"

namespace medr1::rl {

struct TrainerHooks {
  GenerateFn generate;                      // empty = generate::generate
  const RewardRegistry* rewards = nullptr;  // nullptr = default_registry()
  std::function<void(const nlohmann::json&)> on_log;  // each metrics record, after it is written
  bool progress_bar = true;
};

struct TrainResult {
  int64_t global_step = 0;
  std::vector<nlohmann::json> log_history;  // the metrics.jsonl records (resumed ones included)
  std::string last_checkpoint;              // "" when none was written
};

// Runs the whole training described by `cfg` (validated here). output_dir gets resolved_config.json,
// metrics.jsonl, checkpoint-<step>/ every save_steps, and the final model (config, weights, side files) as
// Med-R1's trainer.save_model(output_dir) leaves it; also TensorBoard event files (report_to),
// completions.jsonl (log_completions) and plots/*.svg (each save and the end), see train_logger.h. A model folder with config.json but no weights starts
// from a seeded HF-style initialisation (normal(0, initializer_range), norms 1, biases 0). Throws
// medr1::Error on a non-finite loss or gradient norm ("step 7: loss is nan ...") before the optimizer step,
// so the last checkpoint stays the last good state.
// Data-parallel under torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, ...; gloo): rank 0's weights are
// broadcast, each rank takes its DistributedSampler shard (per_device_train_batch_size prompts per
// micro-batch, all G samples of a prompt on its rank), grads are averaged on the last micro-step, metrics are
// averaged over ranks, and only rank 0 writes files, between barriers. W ranks with GA micro-steps equal one
// process with GA x W micro-steps over the same prompts (rollout seeds depend on the dataset index). A lost
// peer throws medr1::Error("dist: ...") from the next collective. Resume may change the world size when
// the prompts consumed in the epoch divide by the new one.
// Device (cfg.device): cpu, cuda (= cuda:LOCAL_RANK; NCCL when data-parallel) or cuda:N; throws
// "device cuda: LibTorch was built without CUDA ..." when CUDA is unavailable. gradient_checkpointing
// recomputes the policy's decoder layers / vision blocks in backward (model/checkpoint.h).
// Epochs follow the HF Trainer with dataloader_drop_last False: the last micro-batch of an epoch may hold fewer
// than per_device_train_batch_size prompts and the epoch's last optimizer step fewer than GA micro-batches
// (loss still divided by GA, as HF's training_step); a step never spans two epochs. GRPO with num_iterations
// > 1 generates once every num_iterations steps and reuses the completions and old log-probs (TRL).
TrainResult train(const GRPOConfig& cfg, const TrainerHooks& hooks = {});

}  // namespace medr1::rl
