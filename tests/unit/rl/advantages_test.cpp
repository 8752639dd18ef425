// Group-relative advantages: hand-computed values for group / batch / none scaling, zero-std
// groups and NaN rewards (TRL nanmean / nanstd semantics).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <vector>

#include "medr1/core/error.h"
#include "medr1/rl/advantages.h"

namespace medr1::rl {
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<double> adv_of(const std::vector<double>& r, int64_t g, ScaleRewards s,
                           at::ScalarType dt = at::kDouble) {
  at::Tensor a = compute_advantages(at::tensor(r, at::kDouble).to(dt), g, s).advantages;
  a = a.to(at::kDouble).contiguous();
  return {a.data_ptr<double>(), a.data_ptr<double>() + a.numel()};
}

void expect_near(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "index " << i;
}

TEST(Advantages, GroupOneZeroZeroOne) {
  // mean 0.5, unbiased std sqrt(1/3): A = +-0.5 / (sqrt(1/3) + 1e-4)
  const double a = 0.5 / (std::sqrt(1.0 / 3.0) + 1e-4);
  expect_near(adv_of({1, 0, 0, 1}, 4, ScaleRewards::group), {a, -a, -a, a}, 1e-12);
  // fp32, as TRL computes it
  expect_near(adv_of({1, 0, 0, 1}, 4, ScaleRewards::group, at::kFloat), {a, -a, -a, a}, 1e-6);
}

TEST(Advantages, TwoGroupsAreIndependent) {
  const double a = 0.5 / (std::sqrt(1.0 / 3.0) + 1e-4);
  // second group {2, 0, 1, 1}: mean 1, std sqrt(2/3)
  const double s2 = std::sqrt(2.0 / 3.0) + 1e-4;
  expect_near(adv_of({1, 0, 0, 1, 2, 0, 1, 1}, 4, ScaleRewards::group),
              {a, -a, -a, a, 1 / s2, -1 / s2, 0, 0}, 1e-12);
}

TEST(Advantages, ZeroStdGroupGivesExactZero) {
  for (double v : adv_of({1, 1, 1, 1, 2, 2, 2, 2}, 4, ScaleRewards::group)) EXPECT_EQ(v, 0.0);
}

TEST(Advantages, BatchScaling) {
  // group means 0.5 and 2; batch std over all 8 values: mean 1.25, sum sq dev 5.5, / 7
  const double s = std::sqrt(5.5 / 7.0) + 1e-4;
  expect_near(adv_of({1, 0, 0, 1, 2, 2, 2, 2}, 4, ScaleRewards::batch),
              {0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s, 0, 0, 0, 0}, 1e-12);
}

TEST(Advantages, NoneScalingIsCentredOnly) {
  expect_near(adv_of({2, 0, 1, 1, 1, 1, 1, 1}, 4, ScaleRewards::none), {1, -1, 0, 0, 0, 0, 0, 0},
              1e-15);
}

TEST(Advantages, NaNExcludedFromBaselineAndGetsZero) {
  // valid {1, 0, 1}: nanmean 2/3, nanstd sqrt(1/3) (unbiased over 3 valid values)
  const double s = std::sqrt(1.0 / 3.0) + 1e-4;
  expect_near(adv_of({1, kNaN, 0, 1}, 4, ScaleRewards::group),
              {(1 - 2.0 / 3) / s, 0, (0 - 2.0 / 3) / s, (1 - 2.0 / 3) / s}, 1e-12);
  // a single valid reward: no std, every advantage of the group is 0; other groups unaffected
  const double a = 0.5 / (std::sqrt(1.0 / 3.0) + 1e-4);
  expect_near(adv_of({kNaN, kNaN, kNaN, 1, 1, 0, 0, 1}, 4, ScaleRewards::group),
              {0, 0, 0, 0, a, -a, -a, a}, 1e-12);
}

TEST(Advantages, ReturnsBaselineAndStd) {
  Advantages r = compute_advantages(at::tensor({1.0, 0.0, 0.0, 1.0}, at::kDouble), 2,
                                    ScaleRewards::group);
  // groups {1, 0} and {0, 1}: mean 0.5, unbiased std sqrt(0.5) each
  EXPECT_NEAR(r.mean[0].item<double>(), 0.5, 1e-15);
  EXPECT_NEAR(r.mean[3].item<double>(), 0.5, 1e-15);
  EXPECT_NEAR(r.std[2].item<double>(), std::sqrt(0.5), 1e-15);
}

TEST(Advantages, RejectsBadShapes) {
  EXPECT_THROW(compute_advantages(at::zeros({6}, at::kFloat), 4), medr1::Error);
  EXPECT_THROW(compute_advantages(at::zeros({2, 2}, at::kFloat), 2), medr1::Error);
  EXPECT_THROW(compute_advantages(at::zeros({4}, at::kLong), 2), medr1::Error);
  EXPECT_EQ(scale_rewards_from_string("batch"), ScaleRewards::batch);
  EXPECT_THROW(scale_rewards_from_string("Group"), medr1::Error);
}

}  // namespace
}  // namespace medr1::rl
