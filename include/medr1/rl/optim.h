// AdamW as the HF Trainer builds it for Med-R1 (optim "adamw_torch": torch.optim.AdamW with
// TrainingArguments lr, (adam_beta1, adam_beta2), adam_epsilon, weight_decay), two parameter groups
// (decay / no decay), and setting the scheduled lr on every group each step.
#pragma once

#include <torch/optim/adamw.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "medr1/rl/grpo_config.h"

namespace medr1::rl {

// HF Trainer.get_decay_parameter_names excludes names containing "bias" and parameters of
// nn.LayerNorm modules; pass a predicate that knows the model's LayerNorm names for the latter
// (Med-R1 runs weight_decay 0, where the split has no effect).
bool default_no_decay(const std::string& name);

// AdamW over the trainable (requires_grad) tensors of `named_params`.
std::unique_ptr<torch::optim::AdamW> make_adamw(
    const std::vector<std::pair<std::string, at::Tensor>>& named_params, const GRPOConfig& cfg,
    const std::function<bool(const std::string&)>& no_decay = default_no_decay);

// Sets the lr of every parameter group (the LambdaLR step).
void set_learning_rate(torch::optim::Optimizer& opt, double lr);

}  // namespace medr1::rl
