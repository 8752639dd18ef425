// ops::greedy_pick (the fused greedy step of generate/) against ATen's argmax and log_softmax, in float32 and
// bfloat16, with ties, -inf rows and NaN.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>

#include "medr1/core/error.h"
#include "medr1/ops/greedy.h"

namespace {

TEST(GreedyPick, IsArgmaxAndLogSoftmax) {
  at::manual_seed(11);
  at::Tensor x = at::randn({5, 3001}) * 4;
  x[1][7] = 100.f;
  x[1][2000] = 100.f;  // tie: the first index wins, as argmax
  x[2].fill_(-std::numeric_limits<float>::infinity());
  x[2][3000] = 0.f;  // one finite entry: log-prob 0
  for (auto dt : {at::kFloat, at::kBFloat16}) {
    at::Tensor xd = x.to(dt);
    auto [next, lp] = medr1::ops::greedy_pick(xd);
    ASSERT_EQ(next.scalar_type(), at::kLong);
    ASSERT_EQ(lp.scalar_type(), at::kFloat);
    at::Tensor xf = xd.to(at::kFloat);
    EXPECT_TRUE(at::equal(next, xf.argmax(-1)));
    EXPECT_EQ(next[1].item<int64_t>(), 7);
    EXPECT_EQ(next[2].item<int64_t>(), 3000);
    at::Tensor ref = xf.log_softmax(-1).gather(1, next.view({-1, 1})).squeeze(1);
    EXPECT_LE((lp - ref).abs().max().item<double>(), 1e-5);
    EXPECT_EQ(lp[2].item<float>(), 0.f);
  }
  at::Tensor nan = at::zeros({1, 10});
  nan[0][4] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(medr1::ops::greedy_pick(nan).first[0].item<int64_t>(), nan.argmax(-1)[0].item<int64_t>());
  EXPECT_THROW(medr1::ops::greedy_pick(at::zeros({10})), medr1::Error);
}

}  // namespace
