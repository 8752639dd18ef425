// medr1::model::decode_attention (fused decode-step attention) against a float64 attention and against the eager
// GEMM path it replaces: GQA groups, strided cache views, padding masks, head dims with an 8-wide tail, bf16
// roundings, and the cases that must stay on the eager path.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>

#include "medr1/model/decode_attention.h"
#include "medr1/model/qwen2_text.h"

namespace {

using medr1::model::decode_attention;
using medr1::model::decode_attention_applies;

// Float64 attention with repeat_kv: q [B, H, S, D], k/v [B, Hkv, T, D], mask [B, 1, S, T] additive.
at::Tensor ref64(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  const int64_t G = q.size(1) / k.size(1);
  at::Tensor kk = k.to(at::kDouble).repeat_interleave(G, 1), vv = v.to(at::kDouble).repeat_interleave(G, 1);
  at::Tensor w = at::matmul(q.to(at::kDouble), kk.transpose(2, 3)) / std::sqrt(static_cast<double>(q.size(3)));
  if (mask.defined()) w = w + mask.to(at::kDouble);
  return at::matmul(at::softmax(w, -1), vv);
}

// The eager GEMM path: eager_attention leaves the fused kernel when autograd is recording.
at::Tensor eager(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  at::AutoGradMode on(true);
  at::Tensor qg = q.detach().clone().requires_grad_(true);
  EXPECT_FALSE(decode_attention_applies(qg, k, v, mask));
  return medr1::model::eager_attention(qg, k, v, mask).detach();
}

struct Case {
  int64_t B, H, Hkv, S, T, D;
};

TEST(DecodeAttention, Fp32MatchesFloat64AndEagerWithGqaCacheViewsAndPadding) {
  at::NoGradGuard ng;
  at::manual_seed(3);
  for (const Case c : {Case{1, 12, 2, 1, 300, 128}, Case{2, 12, 2, 1, 37, 128}, Case{3, 4, 4, 3, 9, 72},
                       Case{2, 6, 1, 2, 1 + 1, 64}, Case{1, 2, 2, 1, 1, 8}}) {
    const int64_t Tmax = c.T + 5;
    // Cache buffers [B, Hkv, Tmax, D] narrowed to T positions: strided on the batch and head dims, as in decode.
    at::Tensor kc = at::randn({c.B, c.Hkv, Tmax, c.D}), vc = at::randn({c.B, c.Hkv, Tmax, c.D});
    at::Tensor k = kc.narrow(2, 0, c.T), v = vc.narrow(2, 0, c.T);
    // q as the attention module makes it: [B, S, H, D] transposed to [B, H, S, D].
    at::Tensor q = at::randn({c.B, c.S, c.H, c.D}).transpose(1, 2);
    // Left padding on row 0 (first 2 keys masked when there are enough), causal within the S new positions.
    at::Tensor am = at::ones({c.B, c.T}, at::kLong);
    if (c.T > c.S + 2) am[0].narrow(0, 0, 2).fill_(0);
    at::Tensor mask = medr1::model::make_causal_mask(am, c.B, c.S, c.T - c.S, at::kFloat, at::kCPU);
    ASSERT_TRUE(decode_attention_applies(q, k, v, mask)) << c.H << " " << c.D;
    at::Tensor y = decode_attention(q, k, v, mask);
    ASSERT_EQ(y.sizes(), (std::vector<int64_t>{c.B, c.H, c.S, c.D}));
    EXPECT_EQ(y.scalar_type(), at::kFloat);
    EXPECT_LT((y.to(at::kDouble) - ref64(q, k, v, mask)).abs().max().item<double>(), 2e-5) << c.T << " " << c.D;
    EXPECT_LT((y - eager(q, k, v, mask)).abs().max().item<double>(), 2e-5);
    // Without a mask: every key attended.
    at::Tensor y0 = decode_attention(q, k, v, at::Tensor());
    EXPECT_LT((y0.to(at::kDouble) - ref64(q, k, v, at::Tensor())).abs().max().item<double>(), 2e-5);
  }
}

TEST(DecodeAttention, MaskedKeysGetNoWeight) {
  at::NoGradGuard ng;
  at::manual_seed(4);
  // Row 0 may only see key 3: the output must be exactly v[3] (its probability is 1, the others exp-underflow).
  at::Tensor q = at::randn({1, 2, 1, 16}), k = at::randn({1, 1, 5, 16}), v = at::randn({1, 1, 5, 16});
  at::Tensor am = at::tensor(std::vector<int64_t>{0, 0, 0, 1, 0}, at::kLong).view({1, 5});
  // mask for a query at position 4 with only key 3 unpadded (key 4 also padded: a contrived but legal mask)
  at::Tensor mask = medr1::model::make_causal_mask(am, 1, 1, 4, at::kFloat, at::kCPU);
  at::Tensor y = decode_attention(q, k, v, mask);
  EXPECT_TRUE(at::equal(y[0][0][0], v[0][0][3]));
  EXPECT_TRUE(at::equal(y[0][1][0], v[0][0][3]));
}

TEST(DecodeAttention, Bf16KeepsTheEagerRoundings) {
  at::NoGradGuard ng;
  at::manual_seed(5);
  const int64_t B = 2, H = 12, Hkv = 2, T = 150, D = 128;
  at::Tensor k = at::randn({B, Hkv, T + 3, D}).to(at::kBFloat16).narrow(2, 0, T);
  at::Tensor v = at::randn({B, Hkv, T + 3, D}).to(at::kBFloat16).narrow(2, 0, T);
  at::Tensor q = (at::randn({B, 1, H, D}) * 2).to(at::kBFloat16).transpose(1, 2);
  at::Tensor am = at::ones({B, T}, at::kLong);
  am[1].narrow(0, 0, 7).fill_(0);
  at::Tensor mask = medr1::model::make_causal_mask(am, B, 1, T - 1, at::kBFloat16, at::kCPU);
  at::Tensor y = decode_attention(q, k, v, mask);
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  at::Tensor e = eager(q, k, v, mask).to(at::kDouble), yd = y.to(at::kDouble);
  // Same roundings as eager: at most a couple of bf16 ulps apart (summation order, softmax exp), mostly equal.
  at::Tensor err = (yd - e).abs() - e.abs() * (2.0 / 256) - 1e-3;
  EXPECT_LE(err.max().item<double>(), 0.0);
  EXPECT_GT(yd.eq(e).to(at::kDouble).mean().item<double>(), 0.8);
  // And close to the float64 attention of the same bf16 inputs (the scores' bf16 roundings dominate).
  EXPECT_LT((yd - ref64(q, k, v, mask)).abs().max().item<double>(), 0.05);
}

TEST(DecodeAttention, OtherCasesStayOnTheEagerPath) {
  at::NoGradGuard ng;
  at::Tensor k = at::randn({1, 2, 10, 16}), v = at::randn({1, 2, 10, 16});
  EXPECT_TRUE(decode_attention_applies(at::randn({1, 4, 1, 16}), k, v, at::Tensor()));
  // Prefill-sized query blocks keep the GEMMs.
  EXPECT_FALSE(decode_attention_applies(at::randn({1, 4, medr1::model::kDecodeAttentionMaxQuery + 1, 16}),
                                        at::randn({1, 2, 40, 16}), at::randn({1, 2, 40, 16}), at::Tensor()));
  // Head dim without an 8-wide tail, other dtypes, per-head masks, mismatched GQA heads.
  EXPECT_FALSE(decode_attention_applies(at::randn({1, 4, 1, 12}), at::randn({1, 2, 10, 12}),
                                        at::randn({1, 2, 10, 12}), at::Tensor()));
  EXPECT_FALSE(decode_attention_applies(at::randn({1, 4, 1, 16}, at::kDouble), k.to(at::kDouble),
                                        v.to(at::kDouble), at::Tensor()));
  EXPECT_FALSE(decode_attention_applies(at::randn({1, 4, 1, 16}), k, v, at::zeros({1, 4, 1, 10})));
  EXPECT_FALSE(decode_attention_applies(at::randn({1, 3, 1, 16}), k, v, at::Tensor()));
  // Autograd recording: eager path, gradients flow.
  at::AutoGradMode on(true);
  at::Tensor q = at::randn({1, 4, 1, 16}).requires_grad_(true);
  EXPECT_FALSE(decode_attention_applies(q, k, v, at::Tensor()));
  medr1::model::eager_attention(q, k, v, at::Tensor()).sum().backward();
  EXPECT_TRUE(q.grad().defined());
}

}  // namespace
