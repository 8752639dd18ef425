// HF-Trainer-style AdamW construction and lr setting (optim.h).
#include "medr1/rl/optim.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <map>
#include <tuple>

#include "medr1/core/error.h"
#include "medr1/core/torch_compat.h"

namespace medr1::rl {

bool fused_adamw_on_cpu() { return MEDR1_FUSED_ADAMW_CPU != 0; }

at::Tensor FusedAdamW::step(LossClosure closure) {
  at::NoGradGuard no_grad;
  at::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    MEDR1_CHECK(!o.amsgrad(), "adamw_torch_fused: amsgrad is not supported");
    // Tensors of one call share device and dtype (the fused kernel's requirement).
    struct Lists {
      std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
      std::vector<torch::optim::AdamWParamState*> states;
    };
    std::map<std::tuple<int, int, int>, Lists> by_kind;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const at::Tensor& g = p.grad();
      MEDR1_CHECK(!g.is_sparse(), "adamw_torch_fused: sparse gradients are not supported");
      MEDR1_CHECK(g.scalar_type() == p.scalar_type() && g.sizes() == p.sizes(), "adamw_torch_fused: gradient ",
                  g.scalar_type(), g.sizes(), " does not match its parameter ", p.scalar_type(), p.sizes());
      MEDR1_CHECK(p.is_cuda() || fused_adamw_on_cpu(), "adamw_torch_fused: this LibTorch (", TORCH_VERSION,
                  ") has no CPU kernel for it (PyTorch >= 2.4 has); use optim adamw_torch");
      auto key = compat::optimizer_state_key(state(), p);
      auto it = state().find(key);
      if (it == state().end()) {
        auto st = std::make_unique<torch::optim::AdamWParamState>();
        st->step(0);
        st->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        st->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        it = state().emplace(key, std::move(st)).first;
      }
      auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
      auto& l = by_kind[{static_cast<int>(p.device().type()), static_cast<int>(p.device().index()),
                         static_cast<int>(p.scalar_type())}];
      l.params.push_back(p);
      l.grads.push_back(g);
      l.exp_avgs.push_back(st.exp_avg());
      l.exp_avg_sqs.push_back(st.exp_avg_sq());
      // torch.optim's _fused_adamw increments the step tensors before the kernel reads them.
      l.steps.push_back(at::full({}, static_cast<double>(st.step() + 1), p.options().dtype(at::kFloat)));
      l.states.push_back(&st);
    }
    const auto [beta1, beta2] = o.betas();
    for (auto& [kind, l] : by_kind) {
      at::_fused_adamw_(l.params, l.grads, l.exp_avgs, l.exp_avg_sqs, {}, l.steps, o.lr(), beta1, beta2,
                        o.weight_decay(), o.eps(), /*amsgrad=*/false, /*maximize=*/false);
      for (auto* st : l.states) st->step(st->step() + 1);
    }
  }
  return loss;
}

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
  if (cfg.optim == "adamw_torch_fused") return std::make_unique<FusedAdamW>(std::move(groups), opts);
  MEDR1_CHECK(cfg.optim == "adamw_torch", "make_adamw: optim \"", cfg.optim,
              "\" is not one of adamw_torch, adamw_torch_fused");
  return std::make_unique<torch::optim::AdamW>(std::move(groups), opts);
}

void set_learning_rate(torch::optim::Optimizer& opt, double lr) {
  for (auto& g : opt.param_groups()) g.options().set_lr(lr);
}

}  // namespace medr1::rl
