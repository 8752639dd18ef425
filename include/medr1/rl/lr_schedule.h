// Learning-rate schedules and global-norm gradient clipping of the HF Trainer that Med-R1 runs:
// lr_lambda mirrors transformers' get_{linear,constant,constant_with_warmup,cosine}_schedule(_with
// _warmup) multipliers exactly (LambdaLR: the lr of optimizer step k, 0-based, is base * lambda(k));
// clip_grad_norm_ mirrors torch.nn.utils.clip_grad_norm_ (L2, coef = max_norm / (norm + 1e-6),
// clamped to 1), with per-tensor norms accumulated in fp32 even for bf16 gradients.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string_view>
#include <vector>

namespace medr1::rl {

enum class LrSchedulerType { linear, constant, constant_with_warmup, cosine };

LrSchedulerType lr_scheduler_type_from_string(std::string_view s);
const char* to_string(LrSchedulerType t);

// HF TrainingArguments.get_warmup_steps: warmup_steps if > 0 else ceil(total * warmup_ratio).
int64_t get_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t num_training_steps);

// Multiplier of the base lr after `step` scheduler steps (0 = the first optimizer step).
//   warmup (all but constant): step / max(1, warmup) while step < warmup
//   linear: max(0, (total - step) / max(1, total - warmup))
//   cosine: max(0, 0.5 * (1 + cos(pi * 2 * 0.5 * progress))), progress = (step - warmup) / max(1, total - warmup)
//   constant: 1; constant_with_warmup: 1 after warmup
double lr_lambda(LrSchedulerType type, int64_t step, int64_t num_warmup_steps,
                 int64_t num_training_steps);

// Scales the .grad() of `params` in place so that their global L2 norm is at most max_norm
// (torch.nn.utils.clip_grad_norm_, 2-norm). Parameters without a defined grad are skipped.
// Returns the total norm before clipping (fp32 accumulation; 0 when no grads). A non-finite norm
// is returned as is and the grads are scaled by the resulting NaN coef, as torch does by default.
double clip_grad_norm_(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace medr1::rl
