// LR multipliers against the transformers formulas evaluated by hand, global-norm clipping
// against torch::nn::utils::clip_grad_norm_ and a hand-computed case, and one AdamW step.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/nn/utils/clip_grad.h>

#include <cmath>
#include <numbers>

#include "medr1/core/error.h"
#include "medr1/rl/lr_schedule.h"
#include "medr1/rl/optim.h"

namespace medr1::rl {
namespace {

TEST(LrSchedule, LinearWithWarmup) {
  const auto L = LrSchedulerType::linear;
  // warmup 2, total 10: step/2 during warmup, then (10 - step) / 8
  EXPECT_EQ(lr_lambda(L, 0, 2, 10), 0.0);
  EXPECT_EQ(lr_lambda(L, 1, 2, 10), 0.5);
  EXPECT_EQ(lr_lambda(L, 2, 2, 10), 1.0);
  EXPECT_EQ(lr_lambda(L, 5, 2, 10), 5.0 / 8);
  EXPECT_EQ(lr_lambda(L, 10, 2, 10), 0.0);
  EXPECT_EQ(lr_lambda(L, 12, 2, 10), 0.0);
  // Med-R1: no warmup, so the first step runs at the full lr: (N - 0) / N
  EXPECT_EQ(lr_lambda(L, 0, 0, 7), 1.0);
  EXPECT_EQ(lr_lambda(L, 3, 0, 7), 4.0 / 7);
}

TEST(LrSchedule, CosineConstantAndWarmupSteps) {
  const auto C = LrSchedulerType::cosine;
  EXPECT_EQ(lr_lambda(C, 0, 0, 10), 1.0);
  EXPECT_NEAR(lr_lambda(C, 5, 0, 10), 0.5, 1e-15);
  EXPECT_NEAR(lr_lambda(C, 10, 0, 10), 0.0, 1e-15);
  EXPECT_NEAR(lr_lambda(C, 4, 2, 10), 0.5 * (1 + std::cos(std::numbers::pi * 2.0 / 8)), 1e-15);
  EXPECT_EQ(lr_lambda(C, 1, 4, 10), 0.25);
  EXPECT_EQ(lr_lambda(LrSchedulerType::constant, 0, 5, 10), 1.0);
  EXPECT_EQ(lr_lambda(LrSchedulerType::constant_with_warmup, 1, 4, 10), 0.25);
  EXPECT_EQ(lr_lambda(LrSchedulerType::constant_with_warmup, 9, 4, 10), 1.0);
  EXPECT_EQ(get_warmup_steps(0, 0.1, 25), 3);  // ceil(2.5)
  EXPECT_EQ(get_warmup_steps(4, 0.1, 25), 4);
  EXPECT_EQ(lr_scheduler_type_from_string("cosine"), LrSchedulerType::cosine);
  EXPECT_THROW(lr_scheduler_type_from_string("poly"), medr1::Error);
}

TEST(ClipGradNorm, HandComputedAndTorchParity) {
  at::Tensor a = at::zeros({2}, at::kFloat).requires_grad_(true);
  at::Tensor b = at::zeros({1}, at::kFloat).requires_grad_(true);
  a.mutable_grad() = at::tensor({3.0f, 4.0f});
  b.mutable_grad() = at::tensor({12.0f});
  // norm sqrt(9 + 16 + 144) = 13; coef 6.5 / (13 + 1e-6)
  EXPECT_NEAR(clip_grad_norm_({a, b}, 6.5), 13.0, 1e-6);
  const double coef = 6.5 / (13.0 + 1e-6);
  EXPECT_NEAR(a.grad()[1].item<double>(), 4.0 * coef, 1e-6);
  EXPECT_NEAR(b.grad()[0].item<double>(), 12.0 * coef, 1e-5);
  // below the limit: unchanged values (coef clamped to 1)
  EXPECT_NEAR(clip_grad_norm_({a, b}, 100.0), 6.5, 1e-5);
  EXPECT_NEAR(a.grad()[1].item<double>(), 4.0 * coef, 1e-6);

  at::manual_seed(3);
  std::vector<at::Tensor> p1, p2;
  for (int i = 0; i < 3; ++i) {
    at::Tensor g = at::randn({5, 7}, at::kFloat);
    p1.push_back(at::zeros({5, 7}).requires_grad_(true));
    p2.push_back(at::zeros({5, 7}).requires_grad_(true));
    p1.back().mutable_grad() = g.clone();
    p2.back().mutable_grad() = g.clone();
  }
  p1.push_back(at::zeros({2}).requires_grad_(true));  // no grad: skipped
  const double ours = clip_grad_norm_(p1, 1.0);
  const double ref = torch::nn::utils::clip_grad_norm_(p2, 1.0);
  EXPECT_NEAR(ours, ref, 1e-5 * ref);
  for (int i = 0; i < 3; ++i) EXPECT_LT((p1[i].grad() - p2[i].grad()).abs().max().item<double>(), 1e-7);
  EXPECT_EQ(clip_grad_norm_({at::zeros({1})}, 1.0), 0.0);
}

TEST(ClipGradNorm, Bf16GradsAccumulateInFp32) {
  // 4096 grads of 1/64 in bf16: fp32 accumulation gives exactly sqrt(4096) / 64 = 1
  at::Tensor p = at::zeros({4096}, at::kBFloat16).requires_grad_(true);
  p.mutable_grad() = at::full({4096}, 1.0 / 64, at::kBFloat16);
  EXPECT_NEAR(clip_grad_norm_({p}, 10.0), 1.0, 1e-6);
}

TEST(AdamW, OneStepMatchesTorchFormulaAndNoDecayGroup) {
  GRPOConfig cfg;
  cfg.learning_rate = 0.1;
  cfg.weight_decay = 0.5;
  at::Tensor w = at::tensor({1.0, -2.0}, at::kDouble).requires_grad_(true);
  at::Tensor bias = at::tensor({3.0}, at::kDouble).requires_grad_(true);
  auto opt = make_adamw({{"layer.weight", w}, {"layer.bias", bias}}, cfg);
  ASSERT_EQ(opt->param_groups().size(), 2u);
  w.mutable_grad() = at::tensor({0.5, -4.0}, at::kDouble);
  bias.mutable_grad() = at::tensor({2.0}, at::kDouble);
  opt->step();
  // step 1: m_hat = g, v_hat = g^2 -> p = p * (1 - lr * wd) - lr * g / (|g| + eps)
  const double lr = 0.1, eps = 1e-8;
  EXPECT_NEAR(w[0].item<double>(), 1.0 * (1 - lr * 0.5) - lr * 0.5 / (0.5 + eps), 1e-12);
  EXPECT_NEAR(w[1].item<double>(), -2.0 * (1 - lr * 0.5) + lr * 4.0 / (4.0 + eps), 1e-12);
  EXPECT_NEAR(bias[0].item<double>(), 3.0 - lr * 2.0 / (2.0 + eps), 1e-12);  // no decay on bias
  set_learning_rate(*opt, 0.01);
  for (auto& g : opt->param_groups()) EXPECT_EQ(g.options().get_lr(), 0.01);
}

}  // namespace
}  // namespace medr1::rl
