// GRPO token losses and their aggregation, as free functions (no model, no trainer state).
// Mirrors Med-R1's Qwen2VLGRPOTrainer.compute_loss (TRL 0.14: ratio exp(logp - logp.detach()),
// k3 KL to the reference, per-sequence token mean then batch mean) and, for the options Med-R1
// does not use, TRL's GRPOTrainer._compute_loss (loss_type bnpo / dr_grpo / dapo, two-sided
// clipping with epsilon / epsilon_high when num_iterations > 1, mask_truncated_completions,
// importance_sampling_level "sequence" (GSPO) and delta (INTELLECT-2 two-sided clipping)).
// Letters: N = completions (B*G), T = completion tokens, V = vocabulary.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace medr1::rl {

struct GRPOConfig;

// TRL GRPOConfig.loss_type. Normalisation of sum(per_token_loss * mask):
//   grpo:    per sequence / its token count, then mean over sequences (Med-R1)
//   bnpo:    / total active tokens of the micro-batch
//   dr_grpo: / (N * max_completion_length)
//   dapo:    / (num_items_in_batch / num_processes): active tokens of the whole generation batch
//            (all ranks, all accumulation micro-batches)
enum class LossType { grpo, bnpo, dr_grpo, dapo };

LossType loss_type_from_string(std::string_view s);
const char* to_string(LossType t);

// TRL GRPOConfig.importance_sampling_level. log_ratio = logp - old_logp [N, T];
//   token:    one weight per token, exp(log_ratio)                                  -> [N, T]
//   sequence: GSPO, one weight per sequence, exp(masked mean of log_ratio over the
//             sequence's tokens, denominator clamped to >= 1)                     -> [N, 1]
// The clipping below then applies to that weight; every token of a sequence shares it.
enum class ImportanceSamplingLevel { token, sequence };

ImportanceSamplingLevel importance_sampling_level_from_string(std::string_view s);
const char* to_string(ImportanceSamplingLevel l);

// Divisor the trainer applies to each micro-batch loss before backward: TRL divides grpo / bnpo /
// dr_grpo by the gradient accumulation steps, while dapo's normaliser already spans them.
int64_t loss_accumulation_divisor(LossType t, int64_t gradient_accumulation_steps);

// Completion mask [N, T] (int32, 0/1): 1 up to and including the first token whose id is in
// eos_ids, 0 after it; all ones for a row without EOS (TRL: arange <= eos_idx). With
// mask_truncated_completions, a row without any EOS (cut at max length) is all zeros.
// Med-R1 (TRL 0.14) passes the tokenizer's single eos_token_id (Qwen2-VL: 151645 <|im_end|>), not
// the generation EOS set [151645, 151643]; 151643 is also the pad id. Pass {151645} to reproduce
// it exactly (the two differ only for a completion that itself ends with 151643).
at::Tensor completion_mask(const at::Tensor& completion_ids, const std::vector<int64_t>& eos_ids,
                           bool mask_truncated_completions = false);

// log_softmax(logits)[n, t, ids[n, t]] -> [N, T], differentiable w.r.t. logits. logits [N, T, V]
// (any float dtype), ids [N, T] integer. Works on chunks of rows so the fp32 softmax temporary
// never exceeds chunk_rows * V elements (0 = auto, ~64 Mi elements); computed in fp32 (fp64 for
// fp64 logits) via gather - logsumexp and returned in that dtype. Med-R1 runs log_softmax in the
// model dtype (bf16) row by row; fp32 here is deliberate (more accurate, same result in fp32).
// Autograd keeps each chunk's fp32 input for backward, i.e. one fp32 copy of bf16 logits.
at::Tensor selective_log_softmax(const at::Tensor& logits, const at::Tensor& ids,
                                 int64_t chunk_rows = 0);

// Entropy of each position's distribution, -sum_v p log p = logsumexp(x) - sum_v softmax(x) x, for
// logits [N, T, V] (any float dtype) -> [N, T] in fp32 (fp64 for fp64 logits), without gradient
// (TRL entropy_from_logits under no_grad). Chunked over rows as selective_log_softmax.
at::Tensor entropy_from_logits(const at::Tensor& logits, int64_t chunk_rows = 0);

// TRL GRPOTrainer.get_high_entropy_mask (top_entropy_quantile, "Beyond the 80/20 rule"): the
// tokens whose entropy is at least the `threshold` quantile (linear interpolation, torch.quantile)
// of the non-pad entropies, within the mask: (entropies * mask >= q) & mask, bool [N, T]. TRL calls
// it with threshold = 1 - top_entropy_quantile. `pool` holds the non-pad entropies the quantile is
// taken over (TRL: gathered from every rank); undefined = entropies[mask] of this micro-batch. An
// empty pool gives an all-false mask.
at::Tensor high_entropy_mask(const at::Tensor& entropies, const at::Tensor& mask, double threshold,
                             const at::Tensor& pool = {});

// k3 estimator of KL(pi || pi_ref) per token: exp(ref - logp) - (ref - logp) - 1 (>= 0).
at::Tensor per_token_kl(const at::Tensor& per_token_logps, const at::Tensor& ref_per_token_logps);

struct PolicyLossOptions {
  LossType loss_type = LossType::grpo;
  double beta = 0.04;          // KL coefficient; 0 skips the KL term (ref logps not needed)
  double epsilon_low = 0.2;    // GRPOConfig.epsilon
  double epsilon_high = 0.2;   // GRPOConfig.epsilon_high (= epsilon when unset)
  int64_t max_completion_length = 256;  // dr_grpo denominator
  // dapo only: active tokens of the whole generation batch over all ranks (TRL
  // num_items_in_batch); <= 0 means "this micro-batch's mask sum" (single process, no accumulation).
  double num_items_in_batch = 0;
  int64_t num_processes = 1;   // dapo only
  ImportanceSamplingLevel importance_sampling_level = ImportanceSamplingLevel::token;
  // TRL GRPOConfig.delta: when set, the unclipped term's weight is capped from above,
  // loss_t = -min(min(coef_1, delta) * A, coef_2 * A) (must be > 1; TRL recommends > 1 + eps_high).
  std::optional<double> delta;
};

// loss_type, beta, epsilon, epsilon_high (resolved), max_completion_length,
// importance_sampling_level and delta of a run config;
// the dapo fields (num_items_in_batch, num_processes) are per step and left for the trainer.
PolicyLossOptions policy_loss_options(const GRPOConfig& cfg);

struct PolicyLossOutput {
  at::Tensor loss;              // scalar, differentiable; NOT divided by accumulation steps
  at::Tensor per_token_loss;    // [N, T] before masking (detached)
  // Metrics (detached scalars, same dtype as the logps):
  at::Tensor kl;                // Med-R1 "kl": per-sequence masked mean of the k3 KL, then mean (0 if beta == 0)
  // Clip ratios (TRL clip_ratio/*_mean); ratio = coef_1 after the delta cap. Token level: masked
  // token mean; sequence level: mean over the N sequences (TRL counts every sequence).
  at::Tensor clip_ratio_low;    // (ratio < 1 - eps_low) & (A < 0)
  at::Tensor clip_ratio_high;   // (ratio > 1 + eps_high) & (A > 0)
  at::Tensor clip_ratio_region; // either of the above
  at::Tensor completion_length; // mean mask sum per sequence
  at::Tensor n_tokens;          // mask sum of the micro-batch
};

// Per-token loss and aggregation.
//   per_token_logps     [N, T] current policy, requires grad
//   old_per_token_logps [N, T] or undefined: undefined = num_iterations == 1 (Med-R1), the ratio
//                       is exp(logp - logp.detach()) == 1 and no clipping applies:
//                       loss_t = -(ratio * A - beta * kl);
//                       defined = PPO clipping: coef_1 = exp(log weight), see
//                       ImportanceSamplingLevel; coef_2 = clamp(coef_1, 1 - eps_low, 1 + eps_high);
//                       then coef_1 = min(coef_1, delta) if delta is set;
//                       loss_t = -min(coef_1 * A, coef_2 * A) + beta * kl.
//                       At sequence level with old undefined the weight is
//                       exp(masked mean of logp - logp.detach()) == 1: same loss and gradient as
//                       token level (d w_i / d logp_t = m_t / len_i, summed over len_i tokens).
//   ref_per_token_logps [N, T] (may be undefined when beta == 0)
//   advantages          [N]
//   mask                [N, T] 0/1 (completion_mask)
//   entropy_mask        [N, T] bool or undefined (top_entropy_quantile < 1: high_entropy_mask):
//                       multiplies the policy term only, before beta * kl is added (TRL order);
//                       the normalisation still counts every token of `mask`.
PolicyLossOutput grpo_policy_loss(const at::Tensor& per_token_logps,
                                  const at::Tensor& old_per_token_logps,
                                  const at::Tensor& ref_per_token_logps,
                                  const at::Tensor& advantages, const at::Tensor& mask,
                                  const PolicyLossOptions& opt,
                                  const at::Tensor& entropy_mask = {});

// Same, from logits [N, T, V] aligned with completion_ids [N, T] (logits[:, t] predicts ids[:, t]).
PolicyLossOutput grpo_policy_loss_from_logits(const at::Tensor& logits,
                                              const at::Tensor& completion_ids,
                                              const at::Tensor& old_per_token_logps,
                                              const at::Tensor& ref_per_token_logps,
                                              const at::Tensor& advantages,
                                              const at::Tensor& mask,
                                              const PolicyLossOptions& opt);

}  // namespace medr1::rl
