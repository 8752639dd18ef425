// HF learning-rate multipliers and torch-style global-norm clipping (lr_schedule.h).
#include "medr1/rl/lr_schedule.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "medr1/core/error.h"

namespace medr1::rl {

LrSchedulerType lr_scheduler_type_from_string(std::string_view s) {
  if (s == "linear") return LrSchedulerType::linear;
  if (s == "constant") return LrSchedulerType::constant;
  if (s == "constant_with_warmup") return LrSchedulerType::constant_with_warmup;
  if (s == "cosine") return LrSchedulerType::cosine;
  fail("lr_scheduler_type: expected linear, constant, constant_with_warmup or cosine, got \"", s,
       "\"");
}

const char* to_string(LrSchedulerType t) {
  switch (t) {
    case LrSchedulerType::linear: return "linear";
    case LrSchedulerType::constant: return "constant";
    case LrSchedulerType::constant_with_warmup: return "constant_with_warmup";
    case LrSchedulerType::cosine: return "cosine";
  }
  return "?";
}

int64_t get_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t num_training_steps) {
  if (warmup_steps > 0) return warmup_steps;
  return static_cast<int64_t>(std::ceil(static_cast<double>(num_training_steps) * warmup_ratio));
}

double lr_lambda(LrSchedulerType type, int64_t step, int64_t num_warmup_steps,
                 int64_t num_training_steps) {
  // Python evaluates these with true division on ints, i.e. in double.
  const auto s = static_cast<double>(step);
  const auto w = static_cast<double>(num_warmup_steps);
  const auto total = static_cast<double>(num_training_steps);
  if (type == LrSchedulerType::constant) return 1.0;
  if (step < num_warmup_steps) return s / std::max(1.0, w);
  switch (type) {
    case LrSchedulerType::constant_with_warmup:
      return 1.0;
    case LrSchedulerType::linear:
      return std::max(0.0, (total - s) / std::max(1.0, total - w));
    case LrSchedulerType::cosine: {
      const double progress = (s - w) / std::max(1.0, total - w);
      constexpr double kNumCycles = 0.5;  // HF default
      return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * kNumCycles * 2.0 * progress)));
    }
    case LrSchedulerType::constant:
      break;
  }
  return 1.0;
}

double clip_grad_norm_(const std::vector<at::Tensor>& params, double max_norm) {
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  at::NoGradGuard no_grad;
  const auto device = grads.front().device();
  std::vector<at::Tensor> norms;
  norms.reserve(grads.size());
  for (const auto& g : grads) norms.push_back(g.to(at::kFloat).norm(2).to(device));  // [] fp32
  at::Tensor total = at::stack(norms).norm(2);                                       // [] fp32
  at::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);                      // []
  for (auto& g : grads) g.mul_(coef.to(g.device()).to(g.scalar_type()));
  return total.item<double>();
}

}  // namespace medr1::rl
