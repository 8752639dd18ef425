// GRPO loss and d loss / d logits against tests/data/rl/rl_goldens.safetensors, written by
// scripts/make_rl_goldens.py (torch 1.13, float64 autograd, formulas of Med-R1 / TRL written there
// independently). Checked: completion masks, advantages, loss, gradient, kl and clip metrics.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "medr1/io/safetensors.h"
#include "medr1/rl/advantages.h"
#include "medr1/rl/policy_loss.h"

namespace medr1::rl {
namespace {

const std::map<std::string, at::Tensor>& goldens() {
  static const auto g = io::load_safetensors(std::string(MEDR1_TEST_DATA) + "/rl/rl_goldens.safetensors");
  return g;
}
const at::Tensor& G(const std::string& k) {
  auto it = goldens().find(k);
  if (it == goldens().end()) throw std::runtime_error("golden tensor missing: " + k);
  return it->second;
}

struct Case {
  const char* name;
  LossType loss_type;
  double beta;
  bool clipped;
  double eps_low, eps_high;
  int64_t max_completion_length;
  double num_items;
  int64_t num_processes;
  bool mask_truncated;
};

// Same table as CASES in scripts/make_rl_goldens.py.
const std::vector<Case> kCases = {
    {"grpo", LossType::grpo, 0.04, false, 0.2, 0.2, 8, 0, 1, false},
    {"bnpo", LossType::bnpo, 0.04, false, 0.2, 0.2, 8, 0, 1, false},
    {"dr_grpo", LossType::dr_grpo, 0.04, false, 0.2, 0.2, 8, 0, 1, false},
    {"dapo", LossType::dapo, 0.04, false, 0.2, 0.2, 8, 50, 2, false},
    {"grpo_clipped", LossType::grpo, 0.04, true, 0.2, 0.28, 8, 0, 1, false},
    {"bnpo_clipped_beta0", LossType::bnpo, 0.0, true, 0.2, 0.2, 8, 0, 1, false},
    {"grpo_mask_truncated", LossType::grpo, 0.04, false, 0.2, 0.2, 8, 0, 1, true},
};

std::vector<int64_t> eos_ids() {
  at::Tensor e = G("eos_ids").contiguous();
  return {e.data_ptr<int64_t>(), e.data_ptr<int64_t>() + e.numel()};
}

double max_abs(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

TEST(RlGolden, MasksAndAdvantages) {
  EXPECT_TRUE(at::equal(completion_mask(G("ids"), eos_ids()), G("mask")));
  EXPECT_TRUE(at::equal(completion_mask(G("ids"), eos_ids(), true), G("mask_truncated")));
  at::Tensor r64 = G("rewards").to(at::kDouble);
  for (auto [s, key] : {std::pair{ScaleRewards::group, "advantages_group"},
                        std::pair{ScaleRewards::batch, "advantages_batch"},
                        std::pair{ScaleRewards::none, "advantages_none"}}) {
    EXPECT_LT(max_abs(compute_advantages(r64, 4, s).advantages, G(key)), 1e-12) << key;
    // fp32, as TRL computes it
    EXPECT_LT(max_abs(compute_advantages(G("rewards"), 4, s).advantages, G(key)), 1e-6) << key;
  }
}

// Runs one case in `dt`; returns {loss error, grad max-abs error}.
std::pair<double, double> run_case(const Case& c, at::ScalarType dt, PolicyLossOutput* metrics) {
  at::Tensor logits = G("logits").to(dt).clone().requires_grad_(true);  // [N, T, V]
  at::Tensor ids = G("ids");
  at::Tensor mask = completion_mask(ids, eos_ids(), c.mask_truncated);
  at::Tensor adv = compute_advantages(G("rewards").to(dt), 4, ScaleRewards::group).advantages;
  PolicyLossOptions o;
  o.loss_type = c.loss_type;
  o.beta = c.beta;
  o.epsilon_low = c.eps_low;
  o.epsilon_high = c.eps_high;
  o.max_completion_length = c.max_completion_length;
  o.num_items_in_batch = c.num_items;
  o.num_processes = c.num_processes;
  at::Tensor old = c.clipped ? G("old_logps").to(dt) : at::Tensor();
  at::Tensor ref = c.beta != 0 ? G("ref_logps").to(dt) : at::Tensor();
  PolicyLossOutput out = grpo_policy_loss_from_logits(logits, ids, old, ref, adv, mask, o);
  out.loss.backward();
  if (metrics) *metrics = out;
  const std::string n = c.name;
  return {max_abs(out.loss, G(n + ".loss")), max_abs(logits.grad(), G(n + ".grad"))};
}

TEST(RlGolden, LossAndGradFp64) {
  for (const Case& c : kCases) {
    PolicyLossOutput m;
    auto [el, eg] = run_case(c, at::kDouble, &m);
    std::printf("[golden fp64] %-22s loss err %.3e  grad max-abs err %.3e\n", c.name, el, eg);
    EXPECT_LT(el, 1e-6) << c.name;
    EXPECT_LT(eg, 1e-6) << c.name;
    const std::string n = c.name;
    if (c.beta != 0) {
      EXPECT_LT(max_abs(m.kl, G(n + ".kl")), 1e-12) << c.name;
    } else {
      EXPECT_EQ(m.kl.item<double>(), 0.0) << "beta 0 skips the KL in " << c.name;
    }
    if (c.clipped) {
      EXPECT_LT(max_abs(m.clip_ratio_low, G(n + ".clip_ratio_low")), 1e-12) << c.name;
      EXPECT_LT(max_abs(m.clip_ratio_high, G(n + ".clip_ratio_high")), 1e-12) << c.name;
      EXPECT_GT(m.clip_ratio_region.item<double>(), 0.0) << "clipping must be active in " << c.name;
    }
  }
}

TEST(RlGolden, LossAndGradFp32) {
  // The trainer's dtype: fp32 logits, logps and advantages against the fp64 reference.
  for (const Case& c : kCases) {
    auto [el, eg] = run_case(c, at::kFloat, nullptr);
    std::printf("[golden fp32] %-22s loss err %.3e  grad max-abs err %.3e\n", c.name, el, eg);
    EXPECT_LT(el, 1e-6) << c.name;
    EXPECT_LT(eg, 1e-6) << c.name;
  }
}

}  // namespace
}  // namespace medr1::rl
