// medr1::model::linear (weight-streaming kernel for few-row inputs) vs at::linear in float64: fp32 within float
// rounding, bf16 within one bf16 rounding of the fp32-accumulated result, odd K tails, bias, leading dims, and the
// fallbacks (autograd, many rows) that must stay on at::linear.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "medr1/model/streaming_linear.h"

namespace {



at::Tensor ref64(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return at::linear(x.to(at::kDouble), w.to(at::kDouble), b.defined() ? b.to(at::kDouble) : at::Tensor());
}

TEST(StreamingLinear, Fp32MatchesFloat64AcrossRowCountsAndTails) {
  at::NoGradGuard ng;
  at::manual_seed(1);
  for (int64_t K : {64, 67, 1536}) {
    at::Tensor w = at::randn({203, K}), b = at::randn({203});
    for (int64_t M : {1, 2, 3, 4, 5, 9, 16}) {
      at::Tensor x = at::randn({1, M, K});
      at::Tensor y = medr1::model::linear(x, w, b);
      ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, M, 203}));
      EXPECT_EQ(y.scalar_type(), at::kFloat);
      EXPECT_LT((y.to(at::kDouble) - ref64(x, w, b)).abs().max().item<double>(), 2e-4) << K << " " << M;
      at::Tensor y0 = medr1::model::linear(x, w);
      EXPECT_LT((y0.to(at::kDouble) - ref64(x, w, at::Tensor())).abs().max().item<double>(), 2e-4);
    }
  }
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  EXPECT_EQ(medr1::model::streaming_linear_applies(at::randn({1, 1, 64}), at::randn({8, 64}), at::Tensor()), avx2);
}

TEST(StreamingLinear, Bf16RoundsOnceFromFp32Accumulation) {
  at::NoGradGuard ng;
  at::manual_seed(2);
  at::Tensor w = at::randn({301, 130}).to(at::kBFloat16), b = at::randn({301}).to(at::kBFloat16);
  for (int64_t M : {1, 3, 4}) {
    at::Tensor x = at::randn({M, 130}).to(at::kBFloat16);
    at::Tensor y = medr1::model::linear(x, w, b);
    EXPECT_EQ(y.scalar_type(), at::kBFloat16);
    at::Tensor r = ref64(x, w, b);
    // One bf16 rounding: relative 2^-8 of the value (plus float accumulation noise).
    at::Tensor err = (y.to(at::kDouble) - r).abs() - r.abs() * (1.0 / 256) - 1e-4;
    EXPECT_LE(err.max().item<double>(), 0.0) << M;
  }
}

TEST(StreamingLinear, FallsBackForAutogradAndManyRows) {
  at::Tensor w = at::randn({16, 32}).set_requires_grad(true);
  at::Tensor x = at::randn({1, 32});
  EXPECT_FALSE(medr1::model::streaming_linear_applies(x, w, at::Tensor()));
  at::Tensor y = medr1::model::linear(x, w);
  y.sum().backward();  // went through at::linear: gradients flow
  ASSERT_TRUE(w.grad().defined());
  EXPECT_TRUE(at::allclose(w.grad(), x.expand({16, 32})));
  at::NoGradGuard ng;
  EXPECT_FALSE(medr1::model::streaming_linear_applies(at::randn({64, 32}), w.detach(), at::Tensor()));
  EXPECT_FALSE(medr1::model::streaming_linear_applies(at::randn({1, 32}).to(at::kDouble),
                                                      w.detach().to(at::kDouble), at::Tensor()));
}

}  // namespace
