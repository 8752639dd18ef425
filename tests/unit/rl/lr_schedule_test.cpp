// LR multipliers against the transformers formulas evaluated by hand, global-norm clipping
// against torch::nn::utils::clip_grad_norm_ and a hand-computed case, one AdamW step, and the fused AdamW
// (optim adamw_torch_fused) against torch::optim::AdamW over several steps.
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

// The fused step against torch::optim::AdamW: two groups (decay / no decay), tensors of several sizes (vector
// tails), an fp32 and a bf16 tensor in one group (two fused calls), a tensor without a gradient (skipped, no
// state), an lr change between steps; 6 steps. A wrong step count (bias correction) or a dropped term fails.
// The bf16 tensor's reference is torch's AdamW on an fp32 copy: the fused kernel computes in fp32 and rounds
// once per step, torch's unfused bf16 step rounds every intermediate to bf16 and drifts from both (measured: 0.08 apart
// after 6 steps, values up to ~4), so it is no reference. (The trainer's optimizer only sees fp32 masters.)
TEST(FusedAdamW, StepsLikeTorchAdamWWithGroupsDtypesAndLrChanges) {
  if (!fused_adamw_on_cpu()) GTEST_SKIP() << "this LibTorch has no CPU fused AdamW";
  GRPOConfig cfg;
  cfg.learning_rate = 0.05;
  cfg.weight_decay = 0.1;
  cfg.adam_beta2 = 0.99;  // bias correction 2 differs visibly from 1 over 6 steps
  at::manual_seed(7);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"a.weight", {37, 19}}, {"b.weight", {1000}}, {"c.bias", {33}}, {"d.bias", {5}}, {"e.weight", {3, 3}}};
  std::vector<std::pair<std::string, at::Tensor>> ref, fused;
  for (const auto& [name, shape] : shapes) {
    at::Tensor t = at::randn(shape);
    if (name == "b.weight") t = t.to(at::kBFloat16).to(at::kFloat);  // values a bf16 tensor holds exactly
    ref.emplace_back(name, t.clone().requires_grad_(true));
    // a second dtype in the decay group
    fused.emplace_back(name, (name == "b.weight" ? t.to(at::kBFloat16) : t.clone()).requires_grad_(true));
  }
  auto opt_ref = make_adamw(ref, cfg);
  GRPOConfig fcfg = cfg;
  fcfg.optim = "adamw_torch_fused";
  auto opt_fused = make_adamw(fused, fcfg);
  ASSERT_NE(dynamic_cast<FusedAdamW*>(opt_fused.get()), nullptr);
  ASSERT_EQ(dynamic_cast<FusedAdamW*>(opt_ref.get()), nullptr);
  for (int step = 0; step < 6; ++step) {
    if (step == 3) {
      set_learning_rate(*opt_ref, 0.02);
      set_learning_rate(*opt_fused, 0.02);
    }
    for (size_t i = 0; i < ref.size(); ++i) {
      if (ref[i].first == "e.weight") continue;  // never gets a gradient
      const at::Tensor g = at::randn(ref[i].second.sizes()).to(fused[i].second.scalar_type());
      ref[i].second.mutable_grad() = g.to(at::kFloat);
      fused[i].second.mutable_grad() = g.clone();
    }
    opt_ref->step();
    opt_fused->step();
    for (size_t i = 0; i < ref.size(); ++i) {
      const at::Tensor r = ref[i].second.detach().to(at::kDouble), f = fused[i].second.detach().to(at::kDouble);
      const bool bf16 = fused[i].second.scalar_type() == at::kBFloat16;
      // fp32: a few ulps of values ~1; bf16: one rounding (2^-9 relative) per step against the fp32 run.
      const double tol = bf16 ? (step + 1) / 512.0 : 1e-6;
      EXPECT_LE((r - f).abs().max().item<double>(), tol * (1 + r.abs().max().item<double>()))
          << ref[i].first << " step " << step + 1;
    }
  }
  // Moved from the start (the updates are real), the same state the checkpoints save.
  EXPECT_EQ(opt_fused->state().size(), 4u);  // e.weight has none
  for (size_t i = 0; i < fused.size(); ++i) {
    auto it = opt_fused->state().find(fused[i].second.unsafeGetTensorImpl());
    if (fused[i].first == "e.weight") {
      EXPECT_EQ(it, opt_fused->state().end());
      continue;
    }
    ASSERT_NE(it, opt_fused->state().end()) << fused[i].first;
    const auto& sf = static_cast<const torch::optim::AdamWParamState&>(*it->second);
    const auto& sr = static_cast<const torch::optim::AdamWParamState&>(
        *opt_ref->state().at(ref[i].second.unsafeGetTensorImpl()));
    EXPECT_EQ(sf.step(), 6) << fused[i].first;
    EXPECT_EQ(sf.step(), sr.step());
    const bool bf16 = fused[i].second.scalar_type() == at::kBFloat16;
    EXPECT_EQ(sf.exp_avg().scalar_type(), fused[i].second.scalar_type());
    EXPECT_TRUE(at::allclose(sf.exp_avg().to(at::kFloat), sr.exp_avg(), bf16 ? 1.0 / 64 : 1e-5, bf16 ? 1e-2 : 1e-6))
        << fused[i].first;
    EXPECT_TRUE(
        at::allclose(sf.exp_avg_sq().to(at::kFloat), sr.exp_avg_sq(), bf16 ? 1.0 / 64 : 1e-5, bf16 ? 1e-3 : 1e-7))
        << fused[i].first;
  }
}

// One fused step in float64 against the closed form (as the unfused test above): p * (1 - lr wd) - lr g / (|g| +
// eps), no decay on the bias; the second step against the formula with bias corrections of step 2.
TEST(FusedAdamW, FirstTwoStepsMatchTheClosedForm) {
  if (!fused_adamw_on_cpu()) GTEST_SKIP() << "this LibTorch has no CPU fused AdamW";
  GRPOConfig cfg;
  cfg.optim = "adamw_torch_fused";
  cfg.learning_rate = 0.1;
  cfg.weight_decay = 0.5;
  at::Tensor w = at::tensor({1.0, -2.0}, at::kDouble).requires_grad_(true);
  at::Tensor bias = at::tensor({3.0}, at::kDouble).requires_grad_(true);
  auto opt = make_adamw({{"layer.weight", w}, {"layer.bias", bias}}, cfg);
  w.mutable_grad() = at::tensor({0.5, -4.0}, at::kDouble);
  bias.mutable_grad() = at::tensor({2.0}, at::kDouble);
  opt->step();
  const double lr = 0.1, eps = 1e-8, b1 = 0.9, b2 = 0.999;
  const double w0 = 1.0 * (1 - lr * 0.5) - lr * 0.5 / (0.5 + eps);
  EXPECT_NEAR(w[0].item<double>(), w0, 1e-12);
  EXPECT_NEAR(w[1].item<double>(), -2.0 * (1 - lr * 0.5) + lr * 4.0 / (4.0 + eps), 1e-12);
  EXPECT_NEAR(bias[0].item<double>(), 3.0 - lr * 2.0 / (2.0 + eps), 1e-12);
  // step 2 with g = 1 on w[0]: m = 0.9 * 0.05 + 0.1, v = 0.999 * 0.00025 + 0.001 (from m1 = 0.1 g1, v1 = 0.001 g1^2)
  w.mutable_grad() = at::tensor({1.0, 0.0}, at::kDouble);
  bias.mutable_grad() = at::tensor({0.0}, at::kDouble);
  opt->step();
  const double m = b1 * (1 - b1) * 0.5 + (1 - b1) * 1.0, v = b2 * (1 - b2) * 0.25 + (1 - b2) * 1.0;
  const double bc1 = 1 - b1 * b1, bc2 = 1 - b2 * b2;
  const double w1 = w0 * (1 - lr * 0.5) - lr / bc1 * m / (std::sqrt(v) / std::sqrt(bc2) + eps);
  EXPECT_NEAR(w[0].item<double>(), w1, 1e-12);
}

TEST(FusedAdamW, OptimNamesAreChecked) {
  GRPOConfig cfg;
  cfg.output_dir = "/tmp/x";
  cfg.model_name_or_path = "/tmp/m";
  cfg.optim = "sgd";
  try {
    cfg.validate(1, 4096);
    FAIL() << "optim sgd accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("optim"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("adamw_torch_fused"), std::string::npos) << e.what();
  }
  at::Tensor w = at::ones({2}).requires_grad_(true);
  EXPECT_THROW(make_adamw({{"w", w}}, cfg), Error);
}

}  // namespace
}  // namespace medr1::rl
