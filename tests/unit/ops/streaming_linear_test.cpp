// medr1::ops::linear (weight-streaming kernel for few-row inputs) vs at::linear in float64: fp32 within float
// rounding, bf16 within one bf16 rounding of the fp32-accumulated result, odd K tails, bias, leading dims, and the
// fallbacks (autograd, many rows) that must stay on at::linear. Runs on the CPU path it is started with (ctest
// repeats the kernel tests with MEDR1_CPU_ISA=avx2 and =portable; the AVX512-BF16 path where the CPU has it).
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <utility>

#include "medr1/core/error.h"
#include "medr1/ops/cpu_features.h"
#include "medr1/ops/linear.h"

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
      at::Tensor y = medr1::ops::linear(x, w, b);
      ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, M, 203}));
      EXPECT_EQ(y.scalar_type(), at::kFloat);
      EXPECT_LT((y.to(at::kDouble) - ref64(x, w, b)).abs().max().item<double>(), 2e-4) << K << " " << M;
      at::Tensor y0 = medr1::ops::linear(x, w);
      EXPECT_LT((y0.to(at::kDouble) - ref64(x, w, at::Tensor())).abs().max().item<double>(), 2e-4);
    }
  }
  const bool avx2 = medr1::ops::cpu_isa_at_least(medr1::ops::CpuIsa::Avx2);  // MEDR1_CPU_ISA=portable: at::linear
  EXPECT_EQ(medr1::ops::streaming_linear_applies(at::randn({1, 1, 64}), at::randn({8, 64}), at::Tensor()), avx2);
}

TEST(StreamingLinear, Bf16RoundsOnceFromFp32Accumulation) {
  at::NoGradGuard ng;
  at::manual_seed(2);
  // K = 130: four 32-wide steps and a masked tail of 2 on the AVX512-BF16 path, 16 + 2 on the AVX2 one.
  at::Tensor w = at::randn({301, 130}).to(at::kBFloat16), b = at::randn({301}).to(at::kBFloat16);
  for (int64_t M : {1, 2, 3, 4, 5, 9, 16}) {
    at::Tensor x = at::randn({M, 130}).to(at::kBFloat16);
    const bool dot = medr1::ops::cpu_isa_at_least(medr1::ops::CpuIsa::Avx512Bf16);
    const bool avx2 = medr1::ops::cpu_isa_at_least(medr1::ops::CpuIsa::Avx2);
    EXPECT_EQ(medr1::ops::streaming_linear_applies(x, w, b), avx2 && M <= (dot ? 16 : 4)) << M;
    at::Tensor y = medr1::ops::linear(x, w, b);
    EXPECT_EQ(y.scalar_type(), at::kBFloat16);
    at::Tensor r = ref64(x, w, b);
    // One bf16 rounding: relative 2^-8 of the value (plus float accumulation noise).
    at::Tensor err = (y.to(at::kDouble) - r).abs() - r.abs() * (1.0 / 256) - 1e-4;
    EXPECT_LE(err.max().item<double>(), 0.0) << M;
  }
}

// K a multiple of 32: the AMX path where the CPU has it (whole 16-row weight tiles by TDPBF16PS, the last rows of
// each chunk by VDPBF16PS); ctest's cpu_isa_avx512bf16 run takes the dot-product path on the same shapes. N = 2501
// rows of K = 64 are two chunks, the second ragged; N = 301 of K = 1536 ends in a block of 13 rows.
TEST(StreamingLinear, Bf16TilesOfSixteenRowsAndTheirTails) {
  at::NoGradGuard ng;
  at::manual_seed(3);
  for (auto [N, K] : {std::pair<int64_t, int64_t>{2501, 64}, {301, 1536}, {48, 96}}) {
    at::Tensor w = at::randn({N, K}).to(at::kBFloat16), b = at::randn({N}).to(at::kBFloat16);
    for (int64_t M : {1, 2, 4, 7, 8, 15, 16}) {
      at::Tensor x = at::randn({1, M, K}).to(at::kBFloat16);
      for (bool with_bias : {true, false}) {
        at::Tensor bb = with_bias ? b : at::Tensor();
        at::Tensor y = medr1::ops::linear(x, w, bb);
        ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, M, N}));
        at::Tensor r = ref64(x, w, bb);
        at::Tensor err = (y.to(at::kDouble) - r).abs() - r.abs() * (1.0 / 256) - 1e-4 * std::sqrt(double(K));
        EXPECT_LE(err.max().item<double>(), 0.0) << N << " " << K << " " << M << " " << with_bias;
      }
    }
  }
}

TEST(StreamingLinear, FallsBackForAutogradAndManyRows) {
  at::Tensor w = at::randn({16, 32}).set_requires_grad(true);
  at::Tensor x = at::randn({1, 32});
  EXPECT_FALSE(medr1::ops::streaming_linear_applies(x, w, at::Tensor()));
  at::Tensor y = medr1::ops::linear(x, w);
  y.sum().backward();  // went through at::linear: gradients flow
  ASSERT_TRUE(w.grad().defined());
  EXPECT_TRUE(at::allclose(w.grad(), x.expand({16, 32})));
  at::NoGradGuard ng;
  EXPECT_FALSE(medr1::ops::streaming_linear_applies(at::randn({64, 32}), w.detach(), at::Tensor()));
  EXPECT_FALSE(medr1::ops::streaming_linear_applies(at::randn({1, 32}).to(at::kDouble),
                                                      w.detach().to(at::kDouble), at::Tensor()));
}

TEST(StreamingLinear, ManyChunksAndThreadsCoverEveryRow) {
  at::NoGradGuard ng;
  at::manual_seed(6);
  // K = 64 fp32 rows are 256 B: chunks of 1024 rows, so N = 2501 is three chunks with a ragged last one.
  at::Tensor w = at::randn({2501, 64}), b = at::randn({2501});
  for (int64_t M : {1, 5}) {
    at::Tensor x = at::randn({M, 64});
    at::Tensor y = medr1::ops::linear(x, w, b);
    EXPECT_LT((y.to(at::kDouble) - ref64(x, w, b)).abs().max().item<double>(), 2e-4) << M;
  }
  at::Tensor wb = w.to(at::kBFloat16), xb = at::randn({2, 64}).to(at::kBFloat16);
  at::Tensor r = ref64(xb, wb, at::Tensor());
  at::Tensor err = (medr1::ops::linear(xb, wb).to(at::kDouble) - r).abs() - r.abs() * (1.0 / 256) - 1e-4;
  EXPECT_LE(err.max().item<double>(), 0.0);
}

TEST(StreamingLinear, GroupEqualsSeparateCallsBitForBit) {
  at::NoGradGuard ng;
  at::manual_seed(7);
  for (auto dt : {at::kFloat, at::kBFloat16}) {
    // q/k/v-like: different N, a bias on some only.
    std::vector<at::Tensor> ws{at::randn({1031, 72}).to(dt), at::randn({13, 72}).to(dt), at::randn({4, 72}).to(dt)};
    std::vector<at::Tensor> bs{at::randn({1031}).to(dt), at::Tensor(), at::randn({4}).to(dt)};
    for (int64_t M : {1, 3}) {
      at::Tensor x = at::randn({1, M, 72}).to(dt);
      std::vector<at::Tensor> g = medr1::ops::linear_group(x, ws, bs);
      ASSERT_EQ(g.size(), 3u);
      for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(g[i].sizes(), (std::vector<int64_t>{1, M, ws[i].size(0)}));
        EXPECT_TRUE(at::equal(g[i], medr1::ops::linear(x, ws[i], bs[i]))) << i << " " << M;
      }
      at::Tensor r = ref64(x, ws[0], bs[0]);
      EXPECT_LT((g[0].to(at::kDouble) - r).abs().max().item<double>(), dt == at::kFloat ? 2e-4 : 0.1);
    }
  }
  // No biases given; many rows (a prefill) go to at::linear one by one.
  at::Tensor x = at::randn({2, 16});
  std::vector<at::Tensor> ws{at::randn({8, 16}), at::randn({5, 16})};
  std::vector<at::Tensor> g = medr1::ops::linear_group(x, ws);
  EXPECT_TRUE(at::allclose(g[1], at::linear(x, ws[1]), 1e-5, 1e-5));
  at::Tensor xm = at::randn({40, 16});
  std::vector<at::Tensor> gm = medr1::ops::linear_group(xm, ws);
  EXPECT_TRUE(at::equal(gm[0], at::linear(xm, ws[0])));
  EXPECT_THROW(medr1::ops::linear_group(x, ws, {at::Tensor()}), medr1::Error);
}

}  // namespace
