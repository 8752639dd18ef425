// GRPO per-token loss, KL and aggregation modes (policy_loss.h).
// Letters: N = completions, T = completion tokens, V = vocabulary, R = rows in a chunk.
#include "medr1/rl/policy_loss.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>

#include "medr1/core/error.h"
#include "medr1/rl/grpo_config.h"

namespace medr1::rl {

LossType loss_type_from_string(std::string_view s) {
  if (s == "grpo") return LossType::grpo;
  if (s == "bnpo") return LossType::bnpo;
  if (s == "dr_grpo") return LossType::dr_grpo;
  if (s == "dapo") return LossType::dapo;
  fail("loss_type: expected \"grpo\", \"bnpo\", \"dr_grpo\" or \"dapo\", got \"", s, "\"");
}

const char* to_string(LossType t) {
  switch (t) {
    case LossType::grpo: return "grpo";
    case LossType::bnpo: return "bnpo";
    case LossType::dr_grpo: return "dr_grpo";
    case LossType::dapo: return "dapo";
  }
  return "?";
}

ImportanceSamplingLevel importance_sampling_level_from_string(std::string_view s) {
  if (s == "token") return ImportanceSamplingLevel::token;
  if (s == "sequence") return ImportanceSamplingLevel::sequence;
  fail("importance_sampling_level: expected \"token\" or \"sequence\", got \"", s, "\"");
}

const char* to_string(ImportanceSamplingLevel l) {
  switch (l) {
    case ImportanceSamplingLevel::token:
      return "token";
    case ImportanceSamplingLevel::sequence:
      return "sequence";
  }
  return "?";
}

int64_t loss_accumulation_divisor(LossType t, int64_t gradient_accumulation_steps) {
  MEDR1_CHECK(gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1, got ",
              gradient_accumulation_steps);
  return t == LossType::dapo ? 1 : gradient_accumulation_steps;
}

PolicyLossOptions policy_loss_options(const GRPOConfig& cfg) {
  PolicyLossOptions o;
  o.loss_type = loss_type_from_string(cfg.loss_type);
  o.beta = cfg.beta;
  o.epsilon_low = cfg.epsilon;
  o.epsilon_high = cfg.resolved_epsilon_high();
  o.max_completion_length = cfg.max_completion_length;
  o.importance_sampling_level =
      importance_sampling_level_from_string(cfg.importance_sampling_level);
  o.delta = cfg.delta;
  return o;
}

at::Tensor completion_mask(const at::Tensor& completion_ids, const std::vector<int64_t>& eos_ids,
                           bool mask_truncated_completions) {
  MEDR1_CHECK(completion_ids.dim() == 2, "completion_mask: ids must be [N, T], got ",
              completion_ids.sizes());
  MEDR1_CHECK(!eos_ids.empty(), "completion_mask: no EOS ids given");
  const int64_t n = completion_ids.size(0), t = completion_ids.size(1);
  auto long_opts = completion_ids.options().dtype(at::kLong);
  at::Tensor eos = at::tensor(eos_ids, at::kLong).to(completion_ids.device());
  at::Tensor is_eos = at::isin(completion_ids.to(at::kLong), eos);  // [N, T] bool
  at::Tensor has_eos = is_eos.any(1);                                // [N]
  // First EOS position; T for rows without EOS (argmax of a bool row finds the first true).
  at::Tensor eos_idx = at::where(has_eos, is_eos.to(at::kByte).argmax(1),
                                 at::full({n}, t, long_opts));  // [N]
  at::Tensor seq = at::arange(t, long_opts).expand({n, t});     // [N, T]
  at::Tensor mask = seq <= eos_idx.unsqueeze(1);                // [N, T]
  if (mask_truncated_completions) mask = mask & has_eos.unsqueeze(1);
  return mask.to(at::kInt);
}

at::Tensor selective_log_softmax(const at::Tensor& logits, const at::Tensor& ids,
                                 int64_t chunk_rows) {
  TORCH_CHECK(logits.dim() == 3, "selective_log_softmax: logits must be [N, T, V], got ",
              logits.sizes());
  TORCH_CHECK(ids.dim() == 2 && ids.size(0) == logits.size(0) && ids.size(1) == logits.size(1),
              "selective_log_softmax: ids ", ids.sizes(), " do not match logits ", logits.sizes());
  const int64_t n = logits.size(0), t = logits.size(1), v = logits.size(2);
  const at::ScalarType compute = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  if (chunk_rows <= 0) chunk_rows = std::max<int64_t>(1, (int64_t{1} << 26) / std::max<int64_t>(v, 1));
  at::Tensor flat = logits.reshape({n * t, v});                    // [N*T, V]
  at::Tensor flat_ids = ids.reshape({n * t, 1}).to(at::kLong);     // [N*T, 1]
  std::vector<at::Tensor> parts;
  for (int64_t r0 = 0; r0 < n * t; r0 += chunk_rows) {
    const int64_t r1 = std::min(n * t, r0 + chunk_rows);
    at::Tensor x = flat.slice(0, r0, r1).to(compute);             // [R, V] fp32 (a view if already)
    at::Tensor sel = x.gather(1, flat_ids.slice(0, r0, r1));       // [R, 1]
    parts.push_back((sel - at::logsumexp(x, {1}, /*keepdim=*/true)).squeeze(1));  // [R]
  }
  if (parts.empty()) return at::zeros({n, t}, logits.options().dtype(compute));
  return at::cat(parts).view({n, t});  // [N, T]
}

at::Tensor entropy_from_logits(const at::Tensor& logits, int64_t chunk_rows) {
  TORCH_CHECK(logits.dim() == 3, "entropy_from_logits: logits must be [N, T, V], got ",
              logits.sizes());
  at::NoGradGuard no_grad;
  const int64_t n = logits.size(0), t = logits.size(1), v = logits.size(2);
  const at::ScalarType compute = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  if (chunk_rows <= 0) chunk_rows = std::max<int64_t>(1, (int64_t{1} << 26) / std::max<int64_t>(v, 1));
  at::Tensor flat = logits.detach().reshape({n * t, v});  // [N*T, V]
  std::vector<at::Tensor> parts;
  for (int64_t r0 = 0; r0 < n * t; r0 += chunk_rows) {
    const int64_t r1 = std::min(n * t, r0 + chunk_rows);
    at::Tensor x = flat.slice(0, r0, r1).to(compute);                  // [R, V]
    at::Tensor lse = at::logsumexp(x, {1}, /*keepdim=*/true);          // [R, 1]
    at::Tensor p = at::exp(x - lse);                                   // [R, V]
    parts.push_back(lse.squeeze(1) - (p * x).sum(1));                  // [R]
  }
  if (parts.empty()) return at::zeros({n, t}, logits.options().dtype(compute));
  return at::cat(parts).view({n, t});  // [N, T]
}

at::Tensor high_entropy_mask(const at::Tensor& entropies, const at::Tensor& mask, double threshold,
                             const at::Tensor& pool) {
  TORCH_CHECK(entropies.dim() == 2 && mask.sizes() == entropies.sizes(),
              "high_entropy_mask: entropies ", entropies.sizes(), " and mask ", mask.sizes(),
              " must be the same [N, T]");
  MEDR1_CHECK(std::isfinite(threshold) && threshold >= 0 && threshold <= 1,
              "high_entropy_mask: threshold must be in [0, 1], got ", threshold);
  at::NoGradGuard no_grad;
  at::Tensor valid = mask.to(at::kBool);
  at::Tensor values = pool.defined() ? pool.reshape({-1}) : entropies.masked_select(valid);
  if (values.numel() == 0) return at::zeros_like(valid);
  values = values.to(at::kFloat);
  at::Tensor q = at::quantile(values, threshold);  // linear interpolation, as torch.quantile
  at::Tensor masked = entropies.to(at::kFloat) * valid.to(at::kFloat);
  return (masked >= q) & valid;
}

at::Tensor per_token_kl(const at::Tensor& per_token_logps, const at::Tensor& ref_per_token_logps) {
  at::Tensor d = ref_per_token_logps - per_token_logps;  // [N, T]
  return at::exp(d) - d - 1;
}

PolicyLossOutput grpo_policy_loss(const at::Tensor& per_token_logps,
                                  const at::Tensor& old_per_token_logps,
                                  const at::Tensor& ref_per_token_logps,
                                  const at::Tensor& advantages, const at::Tensor& mask_in,
                                  const PolicyLossOptions& opt, const at::Tensor& entropy_mask) {
  TORCH_CHECK(per_token_logps.dim() == 2, "grpo_policy_loss: logps must be [N, T], got ",
              per_token_logps.sizes());
  const int64_t n = per_token_logps.size(0);
  TORCH_CHECK(mask_in.sizes() == per_token_logps.sizes(), "grpo_policy_loss: mask ",
              mask_in.sizes(), " vs logps ", per_token_logps.sizes());
  TORCH_CHECK(advantages.dim() == 1 && advantages.size(0) == n,
              "grpo_policy_loss: advantages must be [", n, "], got ", advantages.sizes());
  MEDR1_CHECK(opt.beta >= 0, "grpo_policy_loss: beta must be >= 0, got ", opt.beta);
  const auto dt = per_token_logps.scalar_type();
  at::Tensor mask = mask_in.to(dt);                        // [N, T]
  at::Tensor adv = advantages.to(dt).unsqueeze(1);         // [N, 1]
  const bool clipped = old_per_token_logps.defined();

  at::Tensor kl;
  if (opt.beta != 0.0) {
    TORCH_CHECK(ref_per_token_logps.defined() &&
                    ref_per_token_logps.sizes() == per_token_logps.sizes(),
                "grpo_policy_loss: beta != 0 needs ref logps of shape ", per_token_logps.sizes());
    kl = per_token_kl(per_token_logps, ref_per_token_logps.to(dt));  // [N, T]
  }

  MEDR1_CHECK(!opt.delta || (std::isfinite(*opt.delta) && *opt.delta > 1.0),
              "grpo_policy_loss: delta must be > 1, got ", opt.delta ? *opt.delta : 0.0);
  const bool seq_level = opt.importance_sampling_level == ImportanceSamplingLevel::sequence;
  // Log importance weight: [N, T] per token, or [N, 1] per sequence (masked mean of the log ratio).
  auto log_weight = [&](const at::Tensor& log_ratio) {
    if (!seq_level) return log_ratio;
    return ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)).unsqueeze(-1);
  };

  at::Tensor ptl;   // per-token loss [N, T] ([N, 1] at sequence level until broadcast)
  at::Tensor coef_1;
  if (!clipped) {
    // Med-R1 / TRL 0.14: one policy iteration, the ratio is 1 but carries d(logp). Clipping and
    // delta (> 1) cannot change a ratio of 1, so they are skipped.
    coef_1 = at::exp(log_weight(per_token_logps - per_token_logps.detach()));  // [N, T] / [N, 1]
    ptl = -(coef_1 * adv);
  } else {
    TORCH_CHECK(old_per_token_logps.sizes() == per_token_logps.sizes(),
                "grpo_policy_loss: old logps ", old_per_token_logps.sizes(), " vs logps ",
                per_token_logps.sizes());
    coef_1 = at::exp(log_weight(per_token_logps - old_per_token_logps.to(dt)));  // [N, T] / [N, 1]
    at::Tensor coef_2 = at::clamp(coef_1, 1 - opt.epsilon_low, 1 + opt.epsilon_high);
    // Two-sided clipping (INTELLECT-2): cap the unclipped term; coef_2 keeps the uncapped input.
    if (opt.delta) coef_1 = at::clamp_max(coef_1, *opt.delta);
    ptl = -at::min(coef_1 * adv, coef_2 * adv);
  }
  if (seq_level) ptl = ptl.expand_as(per_token_logps);  // every token carries its sequence's loss
  if (entropy_mask.defined()) {
    TORCH_CHECK(entropy_mask.sizes() == per_token_logps.sizes(), "grpo_policy_loss: entropy_mask ",
                entropy_mask.sizes(), " vs logps ", per_token_logps.sizes());
    ptl = ptl * entropy_mask.to(dt);  // TRL: before the KL term, so the KL covers every token
  }
  if (opt.beta != 0.0) ptl = ptl + opt.beta * kl;

  at::Tensor masked = ptl * mask;        // [N, T]
  at::Tensor seq_len = mask.sum(1);      // [N]
  at::Tensor tokens = mask.sum();        // []
  PolicyLossOutput out;
  switch (opt.loss_type) {
    case LossType::grpo:
      out.loss = (masked.sum(1) / seq_len.clamp_min(1.0)).mean();
      break;
    case LossType::bnpo:
      out.loss = masked.sum() / tokens.clamp_min(1.0);
      break;
    case LossType::dr_grpo:
      MEDR1_CHECK(opt.max_completion_length >= 1, "dr_grpo: max_completion_length must be >= 1");
      out.loss = masked.sum() / static_cast<double>(n * opt.max_completion_length);
      break;
    case LossType::dapo: {
      MEDR1_CHECK(opt.num_processes >= 1, "dapo: num_processes must be >= 1");
      at::Tensor items = opt.num_items_in_batch > 0
                             ? at::scalar_tensor(opt.num_items_in_batch, tokens.options())
                             : tokens;
      out.loss = masked.sum() / (items.clamp_min(1.0) / static_cast<double>(opt.num_processes));
      break;
    }
  }

  at::NoGradGuard no_grad;
  out.per_token_loss = ptl.detach();
  out.n_tokens = tokens.detach();
  out.completion_length = seq_len.mean().detach();
  out.kl = opt.beta != 0.0 ? ((kl * mask).sum(1) / seq_len.clamp_min(1.0)).mean().detach()
                           : at::zeros({}, per_token_logps.options());
  // TRL global_masked_mean: token level = masked token mean; sequence level ([N, 1]) = mean over
  // all N sequences, empty ones included.
  auto token_mean = [&](const at::Tensor& b) {
    if (seq_level) return (b.to(dt).sum() / static_cast<double>(std::max<int64_t>(n, 1))).detach();
    return ((b.to(dt) * mask).sum() / tokens.clamp_min(1.0)).detach();
  };
  at::Tensor low = (coef_1 < 1 - opt.epsilon_low) & (adv < 0);    // [N, T] / [N, 1]
  at::Tensor high = (coef_1 > 1 + opt.epsilon_high) & (adv > 0);  // [N, T] / [N, 1]
  out.clip_ratio_low = token_mean(low);
  out.clip_ratio_high = token_mean(high);
  out.clip_ratio_region = token_mean(low | high);
  return out;
}

PolicyLossOutput grpo_policy_loss_from_logits(const at::Tensor& logits,
                                              const at::Tensor& completion_ids,
                                              const at::Tensor& old_per_token_logps,
                                              const at::Tensor& ref_per_token_logps,
                                              const at::Tensor& advantages,
                                              const at::Tensor& mask,
                                              const PolicyLossOptions& opt) {
  at::Tensor logps = selective_log_softmax(logits, completion_ids);  // [N, T]
  return grpo_policy_loss(logps, old_per_token_logps, ref_per_token_logps, advantages, mask, opt);
}

}  // namespace medr1::rl
