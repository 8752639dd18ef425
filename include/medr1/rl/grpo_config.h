// The GRPO / SFT run config: TRL GRPOConfig + HF TrainingArguments keys that Med-R1 uses, with
// Med-R1's effective values as defaults (README command on TRL 0.14: G=4, GA=2, prompt 1024,
// completion 256, lr 1e-6, beta 0.04, temperature 1.0 hard-coded in its trainer). Each field is
// listed once in visit_fields (field, json key, default, help); that list drives the defaults,
// the strict JSON reader, the resolved_config.json dump, string overrides (--set key=value and the
// per-field CLI flags of grpo_config_cli.h) and --help. No torch here on purpose.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace medr1::rl {

struct GRPOConfig {
  // Run and data
  std::string output_dir, model_name_or_path, dataset_name, dataset_root, run_name, resume;
  std::string algo, prompt_template;
  // Optimiser and schedule (HF TrainingArguments)
  double learning_rate, adam_beta1, adam_beta2, adam_epsilon, weight_decay, max_grad_norm;
  std::string lr_scheduler_type;
  std::string optim;  // adamw_torch | adamw_torch_fused
  int64_t warmup_steps;
  double warmup_ratio;
  // Batching and length
  int64_t num_generations, per_device_train_batch_size, gradient_accumulation_steps;
  int64_t max_prompt_length, max_completion_length;
  double num_train_epochs;
  int64_t max_steps, save_steps, logging_steps;
  bool save_only_model, bf16, gradient_checkpointing;
  bool freeze_vision_modules, freeze_language_model;
  // LoRA (TRL ModelConfig names; PEFT semantics, model/lora.h)
  bool use_peft, use_rslora;
  int64_t lora_r;
  double lora_alpha, lora_dropout;
  std::vector<std::string> lora_target_modules;
  // Logging (HF TrainingArguments report_to; TRL log_completions / num_completions_to_print)
  std::vector<std::string> report_to;
  bool log_completions;
  int64_t num_completions_to_print;
  std::string device, attn_implementation;
  int64_t max_pixels, min_pixels, seed;
  // Sampling
  double temperature;
  int64_t top_k;
  double top_p, repetition_penalty;
  // GRPO loss
  double beta, epsilon;
  std::optional<double> epsilon_high, delta;
  double top_entropy_quantile;
  bool sync_ref_model;
  double ref_model_mixup_alpha;
  int64_t ref_model_sync_steps;
  int64_t num_iterations;
  std::string importance_sampling_level;
  std::string loss_type, scale_rewards;
  bool mask_truncated_completions;
  bool skip_nonfinite_steps;
  std::vector<std::string> reward_funcs;
  std::vector<double> reward_weights;
  int64_t soft_punish_max_completion_len, soft_punish_cache;  // reward soft_overlong_punishment
  std::string dynamic_sampling;  // DAPO dynamic sampling: none | drop | refill
  int64_t max_num_gen_batches;   // refill: generation batches per step at most (verl filter_groups)

  GRPOConfig();  // every field at its visit_fields default

  // The one field list. `v(field, "json_key", default, "help")` per field, in dump order.
  template <class Self, class V>
  static void visit_fields(Self& c, V&& v) {
    using S = std::string;
    using VS = std::vector<std::string>;
    using VD = std::vector<double>;
    v(c.output_dir, "output_dir", S{}, "run folder: checkpoints, logs, resolved_config.json");
    v(c.model_name_or_path, "model_name_or_path", S{}, "HF checkpoint folder of the policy");
    v(c.dataset_name, "dataset_name", S{}, "training data (Med-R1 Splits JSON file or folder)");
    v(c.dataset_root, "dataset_root", S{}, "folder that relative image paths are joined to");
    v(c.run_name, "run_name", S{}, "name shown in logs (empty = output_dir)");
    v(c.resume, "resume", S{}, "checkpoint folder to resume from (empty = fresh run)");
    v(c.algo, "algo", S{"grpo"}, "training algorithm: grpo | sft");
    v(c.prompt_template, "prompt_template", S{"think"},
      "Med-R1 script mirrored: think (grpo_vqa.py) | nothink (grpo_vqa_nothink.py)");
    v(c.optim, "optim", S{"adamw_torch"},
      "optimizer, HF TrainingArguments names: adamw_torch (torch.optim.AdamW) | adamw_torch_fused "
      "(fused=True: one pass per tensor, ~2x faster steps for full fine-tuning)");
    v(c.learning_rate, "learning_rate", 1e-6, "AdamW peak learning rate");
    v(c.adam_beta1, "adam_beta1", 0.9, "AdamW beta1");
    v(c.adam_beta2, "adam_beta2", 0.999, "AdamW beta2");
    v(c.adam_epsilon, "adam_epsilon", 1e-8, "AdamW epsilon");
    v(c.weight_decay, "weight_decay", 0.0, "AdamW decoupled weight decay");
    v(c.max_grad_norm, "max_grad_norm", 1.0, "clip gradients to this global L2 norm (0 = off)");
    v(c.lr_scheduler_type, "lr_scheduler_type", S{"linear"},
      "linear | constant | constant_with_warmup | cosine (HF semantics)");
    v(c.warmup_steps, "warmup_steps", int64_t{0},
      "LR warmup steps (overrides warmup_ratio if > 0)");
    v(c.warmup_ratio, "warmup_ratio", 0.0, "LR warmup as a fraction of the total steps");
    v(c.num_generations, "num_generations", int64_t{4}, "G: completions sampled per prompt");
    v(c.per_device_train_batch_size, "per_device_train_batch_size", int64_t{1},
      "prompts per micro-batch and rank (each expands to G completions)");
    v(c.gradient_accumulation_steps, "gradient_accumulation_steps", int64_t{2},
      "micro-batches per optimizer step");
    v(c.max_prompt_length, "max_prompt_length", int64_t{1024},
      "keep the last N prompt tokens for the loss forward");
    v(c.max_completion_length, "max_completion_length", int64_t{256},
      "max new tokens per completion");
    v(c.num_train_epochs, "num_train_epochs", 2.0, "passes over the training data");
    v(c.max_steps, "max_steps", int64_t{-1}, "optimizer steps (> 0 overrides num_train_epochs)");
    v(c.save_steps, "save_steps", int64_t{200}, "checkpoint every N optimizer steps");
    v(c.save_only_model, "save_only_model", false, "checkpoints hold weights only (no optimizer)");
    v(c.logging_steps, "logging_steps", int64_t{1}, "log every N optimizer steps");
    v(c.report_to, "report_to", VS{"tensorboard"},
      "none | tensorboard | wandb | all, or a list: tensorboard writes "
      "<output_dir>/events.out.tfevents.*; "
      "wandb is not native (a warning; metrics still go to metrics.jsonl and TensorBoard)");
    v(c.log_completions, "log_completions", false,
      "append each logged step's completions (prompt, image, problem, completion, rewards, "
      "advantage) to "
      "<output_dir>/completions.jsonl (and TensorBoard text)");
    v(c.num_completions_to_print, "num_completions_to_print", int64_t{0},
      "with log_completions: at most N completions per logged step (0 = all)");
    v(c.bf16, "bf16", false, "bf16 weights and compute (else fp32)");
    v(c.gradient_checkpointing, "gradient_checkpointing", false,
      "recompute each decoder layer's / vision block's activations in backward (policy only)");
    v(c.freeze_vision_modules, "freeze_vision_modules", false,
      "train the language model only: the vision tower (visual.*) gets no gradient nor optimizer "
      "state (R1-V / open-r1 name; verl: freeze_vision_tower)");
    v(c.freeze_language_model, "freeze_language_model", false,
      "train the vision tower and merger only (visual.*); the language model is frozen");
    v(c.use_peft, "use_peft", false,
      "LoRA: train adapters on the language model's projections only (PEFT format: checkpoints and the "
      "final folder hold adapter_config.json + adapter_model.safetensors); the reference policy is the "
      "base with adapters off (TRL ModelConfig)");
    v(c.lora_r, "lora_r", int64_t{16}, "LoRA rank r");
    v(c.lora_alpha, "lora_alpha", 32.0, "LoRA alpha (scaling = lora_alpha / r)");
    v(c.lora_dropout, "lora_dropout", 0.05, "LoRA dropout on the adapter input");
    v(c.lora_target_modules, "lora_target_modules", VS{},
      "projections to adapt: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj or all-linear "
      "([] = all seven; the vision tower is never adapted)");
    v(c.use_rslora, "use_rslora", false, "rank-stabilised LoRA: scaling = lora_alpha / sqrt(r)");
    v(c.device, "device", S{"cpu"},
      "cpu | cuda | cuda:N (under torchrun, cuda = cuda:LOCAL_RANK and the NCCL backend; gloo on "
      "cpu)");
    v(c.attn_implementation, "attn_implementation", S{"auto"},
      "auto | eager | sdpa | flash_attention_2 (= sdpa): auto = sdpa on CUDA, eager (transformers' "
      "math) on CPU");
    v(c.max_pixels, "max_pixels", int64_t{401408}, "image processor max_pixels (512*28*28)");
    v(c.min_pixels, "min_pixels", int64_t{3136}, "image processor min_pixels (4*28*28)");
    v(c.seed, "seed", int64_t{42}, "random seed (data order, sampling, init)");
    v(c.temperature, "temperature", 1.0, "rollout sampling temperature (Med-R1 hard-codes 1.0)");
    v(c.top_k, "top_k", int64_t{50}, "rollout top-k (0 = off; transformers default 50)");
    v(c.top_p, "top_p", 1.0, "rollout nucleus top-p");
    v(c.repetition_penalty, "repetition_penalty", 1.0, "rollout repetition penalty");
    v(c.beta, "beta", 0.04, "KL coefficient (0 = no reference model)");
    v(c.epsilon, "epsilon", 0.2, "lower clip range (ratio >= 1 - epsilon)");
    v(c.epsilon_high, "epsilon_high", std::optional<double>{},
      "upper clip range (ratio <= 1 + epsilon_high); null = epsilon");
    v(c.delta, "delta", std::optional<double>{},
      "two-sided clipping (INTELLECT-2): cap the unclipped ratio at delta (> 1, TRL recommends "
      "> 1 + epsilon_high); null = off");
    v(c.top_entropy_quantile, "top_entropy_quantile", 1.0,
      "policy loss on the top fraction of completion tokens by entropy only, the quantile taken "
      "over every rank's tokens of the micro-batch (0.2 = the 20% highest; 1.0 = all) (TRL)");
    v(c.sync_ref_model, "sync_ref_model", false,
      "TR-DPO reference updates (TRL): every ref_model_sync_steps steps, ref = alpha * policy + "
      "(1 - alpha) * ref; needs beta != 0");
    v(c.ref_model_mixup_alpha, "ref_model_mixup_alpha", 0.6, "sync_ref_model: alpha in [0, 1] (TRL)");
    v(c.ref_model_sync_steps, "ref_model_sync_steps", int64_t{512},
      "sync_ref_model: optimizer steps between reference updates (TRL)");
    v(c.importance_sampling_level, "importance_sampling_level", S{"token"},
      "token | sequence (GSPO: one ratio per sequence, exp of its masked mean log ratio) (TRL)");
    v(c.num_iterations, "num_iterations", int64_t{1}, "policy updates per generation batch");
    v(c.loss_type, "loss_type", S{"grpo"}, "grpo | bnpo | dr_grpo | dapo (TRL)");
    v(c.scale_rewards, "scale_rewards", S{"group"},
      "advantage scaling: group | batch | none (TRL)");
    v(c.mask_truncated_completions, "mask_truncated_completions", false,
      "exclude completions without EOS from the loss");
    v(c.skip_nonfinite_steps, "skip_nonfinite_steps", false,
      "a step whose loss or gradient norm is NaN / Inf: false = stop naming step, quantity and "
      "rank (the last "
      "checkpoint stays); true = skip its optimizer update and log nonfinite_step_skipped");
    v(c.reward_funcs, "reward_funcs", VS{"accuracy", "format"}, "reward functions by name");
    v(c.reward_weights, "reward_weights", VD{}, "one weight per reward function ([] = all 1)");
    v(c.soft_punish_max_completion_len, "soft_punish_max_completion_len", int64_t{0},
      "reward soft_overlong_punishment (DAPO): L_max in tokens (0 = max_completion_length)");
    v(c.soft_punish_cache, "soft_punish_cache", int64_t{0},
      "reward soft_overlong_punishment: L_cache, the length band below L_max punished linearly");
    v(c.dynamic_sampling, "dynamic_sampling", S{"none"},
      "DAPO dynamic sampling of the groups whose rewards all agree (std 0, no signal): none = train on "
      "them | drop = leave them out of the loss | refill = also generate more prompts until "
      "per_device_train_batch_size x gradient_accumulation_steps groups with signal per rank (verl "
      "filter_groups)");
    v(c.max_num_gen_batches, "max_num_gen_batches", int64_t{10},
      "dynamic_sampling refill: generation batches per step at most (0 = no limit); a step that "
      "reaches it trains on the groups it has, with a warning (verl's name)");
  }
  template <class V>
  void visit(V&& v) {
    visit_fields(*this, v);
  }
  template <class V>
  void visit(V&& v) const {
    visit_fields(*this, v);
  }

  // epsilon_high, or epsilon when unset.
  double resolved_epsilon_high() const { return epsilon_high ? *epsilon_high : epsilon; }
  // soft_overlong_punishment's L_max: soft_punish_max_completion_len, or max_completion_length when 0.
  int64_t resolved_soft_punish_max_completion_len() const {
    return soft_punish_max_completion_len > 0 ? soft_punish_max_completion_len : max_completion_length;
  }
  // Completions per optimizer step over all ranks: world * per_device * GA * G.
  int64_t global_completion_batch(int64_t world_size) const {
    return world_size * per_device_train_batch_size * gradient_accumulation_steps * num_generations;
  }

  // Cross-field rules; throws medr1::Error naming the field(s) and values.
  // max_position_embeddings: the model's limit on prompt + completion tokens.
  void validate(int64_t world_size = 1, int64_t max_position_embeddings = 32768) const;
};

// Per-field description for CLI registration and --help.
struct ConfigFieldInfo {
  std::string key, type, default_value,
      help;  // type: string|float|int|bool|optional_float|list_str|list_float
};
std::vector<ConfigFieldInfo> grpo_config_fields();

// JSON <-> config. Unknown keys are errors ("<file>: learnin_rate: unknown key"), as are wrong
// types ("<file>: beta: expected number, got string"); absent keys keep their defaults.
GRPOConfig grpo_config_from_json(const nlohmann::json& j, const std::string& file);
GRPOConfig load_grpo_config(const std::string& path);
nlohmann::json to_json(const GRPOConfig& c);  // every field, in visit order
// Writes to_json(c) (indent 2) to path, e.g. <output_dir>/resolved_config.json.
void save_grpo_config(const GRPOConfig& c, const std::string& path);

// Sets field `key` from command-line words (HfArgumentParser style): bools take "true/false/
// yes/no/1/0" (no word = true), optional floats take "none"/"null", lists take one word per item
// (or comma-separated words, or one JSON array). Throws naming the key on unknown keys or bad
// values.
void apply_override(GRPOConfig& c, const std::string& key, const std::vector<std::string>& words);
// "key=value" (the --set form); `value` may be a JSON array for list fields.
void apply_set(GRPOConfig& c, const std::string& key_eq_value);

}  // namespace medr1::rl
