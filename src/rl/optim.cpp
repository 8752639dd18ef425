// HF-Trainer-style AdamW construction and lr setting (optim.h).
#include "medr1/rl/optim.h"

#include "medr1/core/error.h"

namespace medr1::rl {

bool default_no_decay(const std::string& name) { return name.find("bias") != std::string::npos; }

std::unique_ptr<torch::optim::AdamW> make_adamw(
    const std::vector<std::pair<std::string, at::Tensor>>& named_params, const GRPOConfig& cfg,
    const std::function<bool(const std::string&)>& no_decay) {
  std::vector<at::Tensor> decay, plain;
  for (const auto& [name, p] : named_params) {
    if (!p.requires_grad()) continue;
    (no_decay && no_decay(name) ? plain : decay).push_back(p);
  }
  MEDR1_CHECK(!decay.empty() || !plain.empty(), "make_adamw: no trainable parameters");
  auto opts = torch::optim::AdamWOptions(cfg.learning_rate)
                  .betas({cfg.adam_beta1, cfg.adam_beta2})
                  .eps(cfg.adam_epsilon)
                  .weight_decay(cfg.weight_decay);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(opts));
  if (!plain.empty()) {
    auto o = opts;
    o.weight_decay(0.0);
    groups.emplace_back(plain, std::make_unique<torch::optim::AdamWOptions>(o));
  }
  return std::make_unique<torch::optim::AdamW>(std::move(groups), opts);
}

void set_learning_rate(torch::optim::Optimizer& opt, double lr) {
  for (auto& g : opt.param_groups()) g.options().set_lr(lr);
}

}  // namespace medr1::rl
