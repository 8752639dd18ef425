// AdamW as the HF Trainer builds it for Med-R1 (optim "adamw_torch": torch.optim.AdamW with
// TrainingArguments lr, (adam_beta1, adam_beta2), adam_epsilon, weight_decay), two parameter groups
// (decay / no decay), and setting the scheduled lr on every group each step. optim "adamw_torch_fused" is
// torch.optim.AdamW(fused=True): the same update in one pass over each tensor (at::_fused_adamw_).
#pragma once

#include <torch/optim/adamw.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "medr1/rl/grpo_config.h"

namespace medr1::rl {

// torch.optim.AdamW(fused=True): per group, one at::_fused_adamw_ call over its tensors (grouped by device and
// dtype), which reads param, grad, exp_avg and exp_avg_sq once and writes them back, where torch::optim::AdamW's
// step runs ~8 passes and allocates a denominator the size of each parameter. The state is the base class's
// (AdamWParamState: step, exp_avg, exp_avg_sq), so checkpoints (rl/train_state) are the same either way. The
// update equals torch::optim::AdamW's up to float rounding (fp32 ulps). amsgrad and sparse gradients are refused.
class FusedAdamW final : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  at::Tensor step(LossClosure closure = nullptr) override;
};

// Whether FusedAdamW runs on CPU tensors with this LibTorch (core/torch_compat.h).
bool fused_adamw_on_cpu();

// HF Trainer.get_decay_parameter_names excludes names containing "bias" and parameters of
// nn.LayerNorm modules; pass a predicate that knows the model's LayerNorm names for the latter
// (Med-R1 runs weight_decay 0, where the split has no effect).
bool default_no_decay(const std::string& name);

// AdamW over the trainable (requires_grad) tensors of `named_params`: torch::optim::AdamW for cfg.optim
// "adamw_torch", FusedAdamW for "adamw_torch_fused".
std::unique_ptr<torch::optim::AdamW> make_adamw(
    const std::vector<std::pair<std::string, at::Tensor>>& named_params, const GRPOConfig& cfg,
    const std::function<bool(const std::string&)>& no_decay = default_no_decay);

// Sets the lr of every parameter group (the LambdaLR step).
void set_learning_rate(torch::optim::Optimizer& opt, double lr);

}  // namespace medr1::rl
