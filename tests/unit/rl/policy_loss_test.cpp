// GRPO token loss: completion mask, selective log-softmax, k3 KL, hand-computed 2x3 losses for each
// loss_type, and PPO clipping. Expected values are written out from the formulas in the tests.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
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
  EXPECT_EQ(o.importance_sampling_level, ImportanceSamplingLevel::token);
  EXPECT_FALSE(o.delta.has_value());
  c.importance_sampling_level = "sequence";
  c.delta = 1.5;
  EXPECT_EQ(policy_loss_options(c).importance_sampling_level, ImportanceSamplingLevel::sequence);
  EXPECT_EQ(policy_loss_options(c).delta, std::optional<double>(1.5));
  c.importance_sampling_level = "sentence";
  EXPECT_THROW(policy_loss_options(c), medr1::Error);
  EXPECT_STREQ(to_string(ImportanceSamplingLevel::sequence), "sequence");
}

// TRL's clipped loss of one weight r with advantage a (delta optional), written out plainly.
double trl_term(double r, double a, double eps_lo, double eps_hi, std::optional<double> delta) {
  const double r2 = std::min(std::max(r, 1 - eps_lo), 1 + eps_hi);
  const double r1 = delta ? std::min(r, *delta) : r;
  return -std::min(r1 * a, r2 * a);
}

// GSPO (importance_sampling_level sequence), 3 sequences x 4 tokens, checked against explicit
// loops over TRL's definition: w_i = exp(sum_t m_it (logp - old)_it / max(sum_t m_it, 1)).
TEST(PolicyLoss, SequenceLevelMatchesExplicitLoops) {
  const int64_t n = 3, t = 4;
  const double eps_lo = 0.2, eps_hi = 0.28, beta = 0.04;
  // log ratios per token; row 0 mean log(1.5) > log(1.28) (A > 0: clipped high), row 1 mean
  // log(1.1) (inside), row 2 mean log(0.6) (A < 0: clipped low). Masked tokens get junk ratios.
  const std::vector<std::vector<double>> lr = {
      {std::log(1.5) + 0.3, std::log(1.5) - 0.5, std::log(1.5) + 0.2, 7.0},
      {std::log(1.1) - 0.2, std::log(1.1) + 0.2, -9.0, 4.0},
      {std::log(0.6) + 0.1, std::log(0.6) - 0.4, std::log(0.6) + 0.3, std::log(0.6)}};
  const std::vector<std::vector<int>> m = {{1, 1, 1, 0}, {1, 1, 0, 0}, {1, 1, 1, 1}};
  const std::vector<double> a = {1.5, 0.7, -0.9};
  at::Tensor old =
      d2({{-1.0, -2.0, -0.5, -3.0}, {-0.3, -1.2, -2.0, -0.1}, {-0.7, -0.2, -1.5, -2.2}});
  at::Tensor lp0 = old + d2(lr);
  at::Tensor ref =
      lp0 + d2({{0.1, -0.2, 0.3, 0.0}, {-0.1, 0.05, 0.2, 0.4}, {0.3, -0.3, 0.1, -0.2}});
  at::Tensor mask = at::tensor({1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1}, at::kInt).view({n, t});
  PolicyLossOptions o;
  o.beta = beta;
  o.epsilon_low = eps_lo;
  o.epsilon_high = eps_hi;
  o.importance_sampling_level = ImportanceSamplingLevel::sequence;
  at::Tensor lp = lp0.clone().requires_grad_(true);
  PolicyLossOutput out = grpo_policy_loss(lp, old, ref, at::tensor(a, at::kDouble), mask, o);
  out.loss.backward();

  double want_loss = 0;
  std::vector<double> w(n);
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0, len = 0;
    for (int64_t j = 0; j < t; ++j) {
      sum += m[i][j] * lr[i][j];
      len += m[i][j];
    }
    w[i] = std::exp(sum / std::max(len, 1.0));
    const double pol = trl_term(w[i], a[i], eps_lo, eps_hi, std::nullopt);
    double row = 0;
    for (int64_t j = 0; j < t; ++j) {
      const double d = ref[i][j].item<double>() - lp0[i][j].item<double>();
      const double ptl = pol + beta * (std::exp(d) - d - 1);
      EXPECT_NEAR(out.per_token_loss[i][j].item<double>(), ptl, 1e-12) << i << "," << j;
      row += m[i][j] * ptl;
      // gradient: the policy part is -A * w * m / len / N for an unclipped sequence (d w / d logp_t
      // = w * m_t / len), 0 for a clipped one; the KL part is per token
      const bool clipped = i != 1;
      const double g = (clipped ? 0.0 : -a[i] * w[i] * m[i][j] / len / n) +
                       m[i][j] / len / n * beta * (1 - std::exp(d));
      EXPECT_NEAR(lp.grad()[i][j].item<double>(), g, 1e-12) << i << "," << j;
    }
    want_loss += row / std::max(len, 1.0) / n;
  }
  EXPECT_NEAR(w[0], 1.5, 1e-12);  // the test's own ratios are what they claim
  EXPECT_NEAR(w[1], 1.1, 1e-12);
  EXPECT_NEAR(w[2], 0.6, 1e-12);
  EXPECT_NEAR(out.loss.item<double>(), want_loss, 1e-12);
  // TRL counts clipped sequences over all N sequences (not tokens)
  EXPECT_NEAR(out.clip_ratio_high.item<double>(), 1.0 / 3, 1e-15);
  EXPECT_NEAR(out.clip_ratio_low.item<double>(), 1.0 / 3, 1e-15);
  EXPECT_NEAR(out.clip_ratio_region.item<double>(), 2.0 / 3, 1e-15);

  // beta 0: every active token of the unclipped sequence gets the same gradient
  o.beta = 0;
  at::Tensor lp2 = lp0.clone().requires_grad_(true);
  grpo_policy_loss(lp2, old, {}, at::tensor(a, at::kDouble), mask, o).loss.backward();
  EXPECT_NEAR(lp2.grad()[1][0].item<double>(), -0.7 * 1.1 / 2 / 3, 1e-12);
  EXPECT_EQ(lp2.grad()[1][0].item<double>(), lp2.grad()[1][1].item<double>());
  EXPECT_EQ(lp2.grad()[1].slice(0, 2).abs().sum().item<double>(), 0.0);  // masked tokens
  EXPECT_EQ(lp2.grad()[0].abs().sum().item<double>(), 0.0);              // clipped sequences
  EXPECT_EQ(lp2.grad()[2].abs().sum().item<double>(), 0.0);
  // token level on the same input differs (the per-token ratios are not equal)
  o.importance_sampling_level = ImportanceSamplingLevel::token;
  const double tok =
      grpo_policy_loss(lp0, old, {}, at::tensor(a, at::kDouble), mask, o).loss.item<double>();
  o.importance_sampling_level = ImportanceSamplingLevel::sequence;
  const double seq =
      grpo_policy_loss(lp0, old, {}, at::tensor(a, at::kDouble), mask, o).loss.item<double>();
  EXPECT_GT(std::abs(tok - seq), 1e-3);
}

TEST(PolicyLoss, SequenceLevelEmptyRowAndOnPolicy) {
  Example e;
  PolicyLossOptions o;
  o.beta = e.beta;
  o.importance_sampling_level = ImportanceSamplingLevel::sequence;
  // an all-zero mask row: mean over max(0, 1) tokens, weight exp(0) = 1, no NaN
  at::Tensor mask = e.mask.clone();
  mask[1].zero_();
  at::Tensor old = e.logp - 0.3;
  PolicyLossOutput out = grpo_policy_loss(e.logp, old, e.ref, e.adv, mask, o);
  EXPECT_TRUE(std::isfinite(out.loss.item<double>()));
  EXPECT_NEAR(out.per_token_loss[1][0].item<double>(),
              -(-0.5) * 1.0 +
                  e.beta * Example::k3(e.ref[1][0].item<double>() - e.logp[1][0].item<double>()),
              1e-12);
  // on policy (num_iterations 1: old undefined, or old == logp) the sequence weight is 1 and the
  // loss and gradient equal the token level's: -A * m / len / N per token (+ KL)
  for (bool with_old : {false, true}) {
    at::Tensor lp_s = e.logp.clone().requires_grad_(true);
    at::Tensor lp_t = e.logp.clone().requires_grad_(true);
    at::Tensor o_old = with_old ? e.logp.clone() : at::Tensor();
    PolicyLossOptions ot = o;
    ot.importance_sampling_level = ImportanceSamplingLevel::token;
    PolicyLossOutput s = grpo_policy_loss(lp_s, o_old, e.ref, e.adv, e.mask, o);
    PolicyLossOutput t = grpo_policy_loss(lp_t, o_old, e.ref, e.adv, e.mask, ot);
    s.loss.backward();
    t.loss.backward();
    EXPECT_NEAR(s.loss.item<double>(), t.loss.item<double>(), 1e-15) << with_old;
    EXPECT_NEAR(s.loss.item<double>(), (e.row0() / 2 + e.row1() / 3) / 2, 1e-14) << with_old;
    EXPECT_LT((lp_s.grad() - lp_t.grad()).abs().max().item<double>(), 1e-15) << with_old;
    EXPECT_EQ(s.clip_ratio_region.item<double>(), 0.0);
  }
}

// delta (INTELLECT-2 two-sided clipping): TRL clamps coef_1 (the unclipped term) at delta after
// coef_2 = clamp(coef_1, 1 - eps_low, 1 + eps_high) was taken from the uncapped coef_1.
TEST(PolicyLoss, DeltaCapsTheUnclippedTerm) {
  const double eps = 0.2, delta = 2.0;
  // ratio 3 with A < 0: the only case delta changes (loss 3 -> 2, gradient -> 0); ratio 3 with
  // A > 0 (clipped at 1.2 either way); 1.5 with A < 0 (below delta: unchanged); 0.5 with A < 0
  // (clipped low); 1.1 with A > 0 (inside)
  const std::vector<double> ratio = {3.0, 3.0, 1.5, 0.5, 1.1}, a = {-1.0, 1.0, -1.0, -1.0, 1.0};
  const int64_t k = 5;
  at::Tensor old = at::full({k, 1}, -1.0, at::kDouble);
  at::Tensor lp0 = old + at::log(at::tensor(ratio, at::kDouble)).unsqueeze(1);
  at::Tensor adv = at::tensor(a, at::kDouble);
  at::Tensor mask = at::ones({k, 1}, at::kInt);
  PolicyLossOptions o;
  o.beta = 0;
  o.loss_type = LossType::bnpo;
  o.epsilon_low = o.epsilon_high = eps;
  o.delta = delta;
  at::Tensor lp = lp0.clone().requires_grad_(true);
  PolicyLossOutput out = grpo_policy_loss(lp, old, {}, adv, mask, o);
  out.loss.backward();
  const std::vector<double> want = {2.0, -1.2, 1.5, 0.8, -1.1};
  const std::vector<double> want_grad = {0.0, 0.0, 1.5 / k, 0.0, -1.1 / k};
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) {
    EXPECT_NEAR(trl_term(ratio[i], a[i], eps, eps, delta), want[i], 1e-12) << i;
    EXPECT_NEAR(out.per_token_loss[i][0].item<double>(), want[i], 1e-12) << i;
    EXPECT_NEAR(lp.grad()[i][0].item<double>(), want_grad[i], 1e-12) << i;
    sum += want[i];
  }
  EXPECT_NEAR(out.loss.item<double>(), sum / k, 1e-12);
  // metrics use the capped coef_1 (TRL): high = ratio 3 with A > 0 (capped 2 > 1.2), low = 0.5
  EXPECT_NEAR(out.clip_ratio_high.item<double>(), 1.0 / k, 1e-15);
  EXPECT_NEAR(out.clip_ratio_low.item<double>(), 1.0 / k, 1e-15);

  // without delta the first token costs 3 and carries gradient -A * r / k = 3 / k
  PolicyLossOptions plain = o;
  plain.delta.reset();
  at::Tensor lp_p = lp0.clone().requires_grad_(true);
  PolicyLossOutput p = grpo_policy_loss(lp_p, old, {}, adv, mask, plain);
  p.loss.backward();
  EXPECT_NEAR(p.per_token_loss[0][0].item<double>(), 3.0, 1e-12);
  EXPECT_NEAR(lp_p.grad()[0][0].item<double>(), 3.0 / k, 1e-12);
  // inactive delta (above every ratio) changes nothing, bit for bit
  PolicyLossOptions big = o;
  big.delta = 10.0;
  at::Tensor lp_b = lp0.clone().requires_grad_(true);
  PolicyLossOutput b = grpo_policy_loss(lp_b, old, {}, adv, mask, big);
  b.loss.backward();
  EXPECT_TRUE(at::equal(b.per_token_loss, p.per_token_loss));
  EXPECT_TRUE(at::equal(lp_b.grad(), lp_p.grad()));
  EXPECT_TRUE(at::equal(b.loss, p.loss));
  // on policy (old undefined): ratio 1 < delta, same as without delta
  Example e;
  PolicyLossOptions od;
  od.beta = e.beta;
  od.delta = 1.5;
  EXPECT_NEAR(grpo_policy_loss(e.logp, {}, e.ref, e.adv, e.mask, od).loss.item<double>(),
              (e.row0() / 2 + e.row1() / 3) / 2, 1e-14);
  // sequence level + delta: the capped quantity is the sequence weight
  PolicyLossOptions sd = o;
  sd.importance_sampling_level = ImportanceSamplingLevel::sequence;
  at::Tensor old2 = at::full({1, 2}, -1.0, at::kDouble);
  at::Tensor lp2 =
      old2 + at::tensor({std::log(3.0) + 0.4, std::log(3.0) - 0.4}, at::kDouble).unsqueeze(0);
  PolicyLossOutput s2 = grpo_policy_loss(lp2, old2, {}, at::tensor({-1.0}, at::kDouble),
                                         at::ones({1, 2}, at::kInt), sd);
  EXPECT_NEAR(s2.per_token_loss[0][0].item<double>(), 2.0, 1e-12);
  EXPECT_NEAR(s2.per_token_loss[0][1].item<double>(), 2.0, 1e-12);
  // delta <= 1 is refused naming the field
  for (double bad : {1.0, 0.3, std::nan("")}) {
    PolicyLossOptions ob = o;
    ob.delta = bad;
    try {
      grpo_policy_loss(lp0, old, {}, adv, mask, ob);
      ADD_FAILURE() << "delta " << bad << " accepted";
    } catch (const medr1::Error& err) {
      EXPECT_NE(std::string(err.what()).find("delta must be > 1"), std::string::npos) << err.what();
    }
  }
}

// TRL entropy_from_logits: -sum p log p per position, fp32 out, chunk size invisible, no gradient.
TEST(TopEntropy, EntropyFromLogitsIsMinusSumPLogP) {
  at::manual_seed(2);
  at::Tensor logits = at::randn({3, 4, 9}, at::kFloat) * 4;
  at::Tensor lp = at::log_softmax(logits.to(at::kDouble), -1);
  at::Tensor want = -(lp.exp() * lp).sum(-1);  // [3, 4]
  for (int64_t chunk : {0, 1, 5, 100}) {
    at::Tensor got = entropy_from_logits(logits, chunk);
    EXPECT_EQ(got.scalar_type(), at::kFloat);
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), 2e-5) << "chunk " << chunk;
  }
  // uniform over V: log V; one-hot (a huge logit): ~0
  EXPECT_NEAR(entropy_from_logits(at::zeros({1, 1, 9}, at::kDouble)).item<double>(), std::log(9.0), 1e-12);
  at::Tensor peaked = at::zeros({1, 1, 9}, at::kDouble);
  peaked[0][0][3] = 100.0;
  EXPECT_NEAR(entropy_from_logits(peaked).item<double>(), 0.0, 1e-30 + 1e-40);
  at::Tensor x = logits.clone().requires_grad_(true);
  EXPECT_FALSE(entropy_from_logits(x).requires_grad());
}

// TRL get_high_entropy_mask: q = torch.quantile(non-pad entropies, threshold) (linear), keep
// entropy * mask >= q within the mask. Values written out from that definition.
TEST(TopEntropy, HighEntropyMaskIsTrlsQuantileRule) {
  at::Tensor ent = d2({{0.1, 0.5, 0.9, 0.3}, {0.7, 0.2, 5.0, 4.0}});  // row 1's last two are padding
  at::Tensor mask = at::tensor({1, 1, 1, 1, 1, 1, 0, 0}, at::kInt).view({2, 4});
  auto bools = [](std::vector<int> v) { return at::tensor(v, at::kInt).view({2, 4}).to(at::kBool); };
  // non-pad sorted 0.1 0.2 0.3 0.5 0.7 0.9; quantile 0.5 at position 2.5 -> 0.3 + 0.5 * 0.2 = 0.4
  EXPECT_TRUE(at::equal(high_entropy_mask(ent, mask, 0.5), bools({0, 1, 1, 0, 1, 0, 0, 0})));
  // 0.8 (top_entropy_quantile 0.2): position 4 -> 0.7: the two highest
  EXPECT_TRUE(at::equal(high_entropy_mask(ent, mask, 0.8), bools({0, 0, 1, 0, 1, 0, 0, 0})));
  // 0: every non-pad token; 1: the maximum only; padding never, however high its entropy
  EXPECT_TRUE(at::equal(high_entropy_mask(ent, mask, 0.0), mask.to(at::kBool)));
  EXPECT_TRUE(at::equal(high_entropy_mask(ent, mask, 1.0), bools({0, 0, 1, 0, 0, 0, 0, 0})));
  // the pool (other ranks' tokens too) sets the threshold: pool 0.0 .. 1.0, quantile 0.5 = 0.5
  at::Tensor pool = at::linspace(0.0, 1.0, 11, at::kDouble);
  EXPECT_TRUE(at::equal(high_entropy_mask(ent, mask, 0.5, pool), bools({0, 1, 1, 0, 1, 0, 0, 0})));
  at::Tensor high_pool = at::full({4}, 10.0, at::kDouble);
  EXPECT_TRUE(at::equal(high_entropy_mask(ent, mask, 0.5, high_pool), at::zeros({2, 4}, at::kBool)));
  // no valid token anywhere: all false (TRL returns zeros)
  EXPECT_TRUE(at::equal(high_entropy_mask(ent, at::zeros({2, 4}, at::kInt), 0.5), at::zeros({2, 4}, at::kBool)));
  EXPECT_THROW(high_entropy_mask(ent, mask, 1.5), medr1::Error);
  EXPECT_THROW(high_entropy_mask(ent, mask, -0.1), medr1::Error);
}

// The mask multiplies the policy term before the KL is added (TRL order); the grpo normaliser still
// counts every token of the completion mask; masked-out tokens get only the KL gradient.
TEST(TopEntropy, EntropyMaskScalesThePolicyTermOnly) {
  Example e;
  at::Tensor em = at::tensor({1, 0, 0, 0, 1, 1}, at::kInt).view({2, 3}).to(at::kBool);
  PolicyLossOptions o;
  o.beta = e.beta;
  at::Tensor lp = e.logp.clone().requires_grad_(true);
  PolicyLossOutput out = grpo_policy_loss(lp, {}, e.ref, e.adv, e.mask, o, em);
  auto k3 = Example::k3;
  // row 0: token 0 kept (-1.5 + beta kl), token 1 policy term dropped (beta kl only); token 2 is padding
  const double row0 = -1.5 + e.beta * (k3(-0.1) + k3(0.2));
  // row 1: token 0 dropped, tokens 1, 2 kept (+0.5 each)
  const double row1 = 2 * 0.5 + e.beta * (k3(0.0) + k3(0.2) + k3(-0.5));
  EXPECT_NEAR(out.loss.item<double>(), (row0 / 2 + row1 / 3) / 2, 1e-14);
  out.loss.backward();
  // d loss / d logp_t = w_row * (-A * em_t + beta * d kl / d logp) with d kl / d logp = 1 - exp(ref - logp)
  auto dkl = [](double d) { return 1 - std::exp(d); };
  EXPECT_NEAR(lp.grad()[0][1].item<double>(), 0.25 * e.beta * dkl(0.2), 1e-14);
  EXPECT_NEAR(lp.grad()[0][0].item<double>(), 0.25 * (-1.5 + e.beta * dkl(-0.1)), 1e-14);
  EXPECT_NEAR(lp.grad()[1][0].item<double>(), (1.0 / 6) * e.beta * dkl(0.0), 1e-14);
  EXPECT_NEAR(lp.grad()[1][2].item<double>(), (1.0 / 6) * (0.5 + e.beta * dkl(-0.5)), 1e-14);
  // an all-true mask is the unmasked loss, bit for bit; a wrong shape is refused
  at::Tensor lp2 = e.logp.clone().requires_grad_(true);
  EXPECT_TRUE(at::equal(grpo_policy_loss(lp2, {}, e.ref, e.adv, e.mask, o, at::ones({2, 3}, at::kBool)).loss,
                        grpo_policy_loss(lp2, {}, e.ref, e.adv, e.mask, o).loss));
  EXPECT_THROW(grpo_policy_loss(lp2, {}, e.ref, e.adv, e.mask, o, at::ones({2, 2}, at::kBool)), c10::Error);
}

}  // namespace
}  // namespace medr1::rl
