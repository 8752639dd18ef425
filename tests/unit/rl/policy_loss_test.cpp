// GRPO token loss: completion mask, selective log-softmax, k3 KL, hand-computed 2x3 losses for each
// loss_type, and PPO clipping. Expected values are written out from the formulas in the tests.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "medr1/core/error.h"
#include "medr1/rl/grpo_config.h"
#include "medr1/rl/policy_loss.h"

namespace medr1::rl {
namespace {

at::Tensor d2(std::vector<std::vector<double>> rows) {
  std::vector<at::Tensor> t;
  for (auto& r : rows) t.push_back(at::tensor(r, at::kDouble));
  return at::stack(t);
}

TEST(CompletionMask, IncludesFirstEosOnly) {
  at::Tensor ids = at::tensor({5, 9, 3, 9, 1, 2, 3, 4, 10, 1, 1, 1, 2, 2, 2, 9}, at::kLong).view({4, 4});
  at::Tensor m = completion_mask(ids, {9, 10});
  at::Tensor want = at::tensor({1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1}, at::kInt).view({4, 4});
  EXPECT_TRUE(at::equal(m, want)) << m;
  EXPECT_EQ(m.scalar_type(), at::kInt);
  // mask_truncated_completions: the row without EOS (row 1) is dropped entirely
  at::Tensor mt = completion_mask(ids, {9, 10}, true);
  want[1].zero_();
  EXPECT_TRUE(at::equal(mt, want)) << mt;
  EXPECT_THROW(completion_mask(ids, {}), medr1::Error);
}

TEST(SelectiveLogSoftmax, MatchesLogSoftmaxGatherAndChunks) {
  at::manual_seed(0);
  at::Tensor logits = at::randn({3, 5, 7}, at::kFloat) * 3;
  at::Tensor ids = at::randint(0, 7, {3, 5}, at::kLong);
  at::Tensor want = at::log_softmax(logits.to(at::kDouble), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1);
  for (int64_t chunk : {0, 1, 4, 100}) {
    at::Tensor got = selective_log_softmax(logits, ids, chunk);
    EXPECT_EQ(got.scalar_type(), at::kFloat);
    EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), 2e-6) << "chunk " << chunk;
  }
  // bf16 logits are upcast to fp32 per chunk: the result is the fp32 log-softmax of the bf16 values
  at::Tensor lb = logits.to(at::kBFloat16);
  at::Tensor want_b = at::log_softmax(lb.to(at::kDouble), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1);
  at::Tensor got_b = selective_log_softmax(lb, ids, 2);
  EXPECT_EQ(got_b.scalar_type(), at::kFloat);
  EXPECT_LT((got_b.to(at::kDouble) - want_b).abs().max().item<double>(), 2e-6);
  // differentiable: d/dlogits of sum = onehot - softmax
  at::Tensor x = logits.to(at::kDouble).requires_grad_(true);
  selective_log_softmax(x, ids, 3).sum().backward();
  at::Tensor g = at::one_hot(ids, 7).to(at::kDouble) - at::softmax(x.detach(), -1);
  EXPECT_LT((x.grad() - g).abs().max().item<double>(), 1e-12);
}

TEST(PerTokenKl, NonNegativeAndZeroAtEquality) {
  at::manual_seed(1);
  at::Tensor a = at::randn({64, 33}, at::kDouble) * 2, b = at::randn({64, 33}, at::kDouble) * 2;
  EXPECT_GE(per_token_kl(a, b).min().item<double>(), 0.0);
  EXPECT_EQ(per_token_kl(a, a).abs().max().item<double>(), 0.0);
  // exp(d) - d - 1 with d = ref - logp = 0.2
  EXPECT_NEAR(per_token_kl(at::full({1}, -1.0, at::kDouble), at::full({1}, -0.8, at::kDouble)).item<double>(),
              std::exp(0.2) - 0.2 - 1, 1e-15);
}

// The 2x3 example: logps, ref, A = [1.5, -0.5], mask [[1,1,0],[1,1,1]], beta 0.04, ratio 1.
struct Example {
  at::Tensor logp = d2({{-1.0, -2.0, -0.5}, {-0.3, -1.2, -2.0}});
  at::Tensor ref = d2({{-1.1, -1.8, -0.5}, {-0.3, -1.0, -2.5}});
  at::Tensor adv = at::tensor({1.5, -0.5}, at::kDouble);
  at::Tensor mask = at::tensor({1, 1, 0, 1, 1, 1}, at::kInt).view({2, 3});
  double beta = 0.04;
  static double k3(double d) { return std::exp(d) - d - 1; }
  // Sum of masked per-token losses of each row: -A + beta * kl per token.
  double row0() const { return 2 * -1.5 + beta * (k3(-0.1) + k3(0.2)); }
  double row1() const { return 3 * 0.5 + beta * (k3(0.0) + k3(0.2) + k3(-0.5)); }
};

double loss_of(const Example& e, LossType t, PolicyLossOptions o = {}) {
  o.loss_type = t;
  o.beta = e.beta;
  at::Tensor lp = e.logp.clone().requires_grad_(true);
  return grpo_policy_loss(lp, {}, e.ref, e.adv, e.mask, o).loss.item<double>();
}

TEST(PolicyLoss, HandComputedEachLossType) {
  Example e;
  EXPECT_NEAR(loss_of(e, LossType::grpo), (e.row0() / 2 + e.row1() / 3) / 2, 1e-14);
  EXPECT_NEAR(loss_of(e, LossType::bnpo), (e.row0() + e.row1()) / 5, 1e-14);
  PolicyLossOptions dr;
  dr.max_completion_length = 4;
  EXPECT_NEAR(loss_of(e, LossType::dr_grpo, dr), (e.row0() + e.row1()) / (2 * 4), 1e-14);
  PolicyLossOptions dapo;
  dapo.num_items_in_batch = 12;  // 12 active tokens over 2 ranks -> normaliser 6
  dapo.num_processes = 2;
  EXPECT_NEAR(loss_of(e, LossType::dapo, dapo), (e.row0() + e.row1()) / 6, 1e-14);
  // dapo without a global count = this micro-batch's tokens = bnpo
  EXPECT_NEAR(loss_of(e, LossType::dapo), (e.row0() + e.row1()) / 5, 1e-14);
}

TEST(PolicyLoss, HandComputedGradientAndMetrics) {
  Example e;
  at::Tensor lp = e.logp.clone().requires_grad_(true);
  PolicyLossOptions o;
  o.beta = e.beta;
  PolicyLossOutput out = grpo_policy_loss(lp, {}, e.ref, e.adv, e.mask, o);
  out.loss.backward();
  // d loss / d logp_t = mask / len_row / N * (-A + beta * (1 - exp(ref - logp)))
  at::Tensor d = e.ref - e.logp;
  at::Tensor len = e.mask.to(at::kDouble).sum(1, true);
  at::Tensor want = e.mask.to(at::kDouble) / len / 2 * (-e.adv.unsqueeze(1) + e.beta * (1 - at::exp(d)));
  EXPECT_LT((lp.grad() - want).abs().max().item<double>(), 1e-15);
  // Med-R1 "kl": per-sequence masked mean, then mean
  const double kl = ((Example::k3(-0.1) + Example::k3(0.2)) / 2 +
                     (Example::k3(0.2) + Example::k3(-0.5)) / 3) / 2;
  EXPECT_NEAR(out.kl.item<double>(), kl, 1e-15);
  EXPECT_NEAR(out.completion_length.item<double>(), 2.5, 0);
  EXPECT_EQ(out.n_tokens.item<double>(), 5.0);
  EXPECT_EQ(out.clip_ratio_region.item<double>(), 0.0);
}

TEST(PolicyLoss, RatioOneGivesMinusAdvantage) {
  Example e;
  e.beta = 0;
  PolicyLossOptions o;
  o.beta = 0;
  at::Tensor lp = e.logp.clone().requires_grad_(true);
  PolicyLossOutput out = grpo_policy_loss(lp, {}, {}, e.adv, e.mask, o);  // beta 0: no ref needed
  EXPECT_NEAR(out.loss.item<double>(), -(1.5 - 0.5) / 2, 1e-15);
  EXPECT_TRUE(at::equal(out.per_token_loss, -e.adv.unsqueeze(1).expand({2, 3})));
  // old == logp with clipping enabled: same value
  at::Tensor lp2 = e.logp.clone().requires_grad_(true);
  EXPECT_NEAR(grpo_policy_loss(lp2, e.logp, {}, e.adv, e.mask, o).loss.item<double>(), -0.5, 1e-15);
  EXPECT_THROW(grpo_policy_loss(lp, {}, {}, e.adv, e.mask, PolicyLossOptions{}), c10::Error);
}

TEST(PolicyLoss, ClippingActiveOutsideRange) {
  // 4 single tokens; ratio = exp(logp - old): 1.5 (A>0, clipped at 1.2), 0.5 (A<0, clipped at 0.8),
  // 0.5 (A>0, not clipped: min picks 0.5A), 1.1 (A>0, inside the range)
  const double eps = 0.2;
  std::vector<double> ratio = {1.5, 0.5, 0.5, 1.1}, a = {2.0, -1.0, 2.0, 3.0};
  at::Tensor old = at::full({4, 1}, -1.0, at::kDouble);
  at::Tensor lp = (old + at::log(at::tensor(ratio, at::kDouble)).unsqueeze(1)).detach().requires_grad_(true);
  PolicyLossOptions o;
  o.beta = 0;
  o.loss_type = LossType::bnpo;
  o.epsilon_low = o.epsilon_high = eps;
  PolicyLossOutput out = grpo_policy_loss(lp, old, {}, at::tensor(a, at::kDouble),
                                          at::ones({4, 1}, at::kInt), o);
  out.loss.backward();
  const std::vector<double> tok = {-1.2 * 2.0, -0.8 * -1.0, -0.5 * 2.0, -1.1 * 3.0};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out.per_token_loss[i][0].item<double>(), tok[i], 1e-12) << i;
  EXPECT_NEAR(out.loss.item<double>(), (tok[0] + tok[1] + tok[2] + tok[3]) / 4, 1e-12);
  // clipped tokens carry no gradient; the others get -ratio * A / 4
  EXPECT_EQ(lp.grad()[0][0].item<double>(), 0.0);
  EXPECT_EQ(lp.grad()[1][0].item<double>(), 0.0);
  EXPECT_NEAR(lp.grad()[2][0].item<double>(), -0.5 * 2.0 / 4, 1e-12);
  EXPECT_NEAR(lp.grad()[3][0].item<double>(), -1.1 * 3.0 / 4, 1e-12);
  EXPECT_NEAR(out.clip_ratio_high.item<double>(), 0.25, 0);
  EXPECT_NEAR(out.clip_ratio_low.item<double>(), 0.25, 0);
  EXPECT_NEAR(out.clip_ratio_region.item<double>(), 0.5, 0);
  // epsilon_high widens only the upper side: 1.5 is inside [0.8, 1.6]
  o.epsilon_high = 0.6;
  PolicyLossOutput wide = grpo_policy_loss(lp.detach(), old, {}, at::tensor(a, at::kDouble),
                                           at::ones({4, 1}, at::kInt), o);
  EXPECT_NEAR(wide.per_token_loss[0][0].item<double>(), -1.5 * 2.0, 1e-12);
  EXPECT_EQ(wide.clip_ratio_high.item<double>(), 0.0);
}

TEST(PolicyLoss, MaskedTokensAndEmptyRows) {
  Example e;
  // a row with zero mask (mask_truncated_completions) contributes 0 to grpo, no NaN
  at::Tensor mask = e.mask.clone();
  mask[1].zero_();
  PolicyLossOptions o;
  o.beta = e.beta;
  at::Tensor lp = e.logp.clone().requires_grad_(true);
  PolicyLossOutput out = grpo_policy_loss(lp, {}, e.ref, e.adv, mask, o);
  EXPECT_NEAR(out.loss.item<double>(), (e.row0() / 2 + 0.0) / 2, 1e-14);
  out.loss.backward();
  EXPECT_EQ(lp.grad()[1].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(lp.grad()[0][2].item<double>(), 0.0);
  EXPECT_EQ(loss_accumulation_divisor(LossType::grpo, 2), 2);
  EXPECT_EQ(loss_accumulation_divisor(LossType::dapo, 2), 1);
  EXPECT_EQ(loss_type_from_string("dr_grpo"), LossType::dr_grpo);
  EXPECT_THROW(loss_type_from_string("ppo"), medr1::Error);
}

TEST(PolicyLoss, OptionsFromConfig) {
  GRPOConfig c;
  c.loss_type = "dr_grpo";
  c.epsilon = 0.1;
  c.max_completion_length = 77;
  PolicyLossOptions o = policy_loss_options(c);
  EXPECT_EQ(o.loss_type, LossType::dr_grpo);
  EXPECT_EQ(o.beta, 0.04);
  EXPECT_EQ(o.epsilon_low, 0.1);
  EXPECT_EQ(o.epsilon_high, 0.1);  // unset epsilon_high follows epsilon
  EXPECT_EQ(o.max_completion_length, 77);
  c.epsilon_high = 0.28;
  EXPECT_EQ(policy_loss_options(c).epsilon_high, 0.28);
}

}  // namespace
}  // namespace medr1::rl
