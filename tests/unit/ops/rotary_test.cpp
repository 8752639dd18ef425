// medr1::ops::vision_rotary (ops/rotary.h) against the composite expression it replaces in the
// vision tower (float copies, products and sum in float32, one rounding to the dtype):
// bit-identical in float32 and bfloat16, on strided inputs (a select of a fused qkv tensor), head
// dims 80 (Qwen2-VL) and 2, values over many binades, at 1 and 2 threads; and the arguments it
// refuses (callers keep the composite there).
#include "medr1/ops/rotary.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include "medr1/core/error.h"

namespace {

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

// The vision tower's composite (HF apply_rotary_pos_emb_vision).
at::Tensor composite(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const at::Tensor c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  const at::Tensor xf = x.to(at::kFloat);
  return (xf * c + rotate_half(xf) * s).to(x.scalar_type());
}

// Values spread over binades (x * 2^e, e in [-20, 20]), so that the products and the sum round
// differently when fused or reordered.
at::Tensor spread(std::vector<int64_t> shape, int64_t seed) {
  at::manual_seed(seed);
  const at::Tensor base = at::randn(shape, at::kDouble);
  const at::Tensor e = at::randint(-20, 21, shape, at::kDouble);
  return (base * at::pow(2.0, e)).to(at::kFloat);
}

void expect_bit_identical(at::ScalarType dt, int64_t N, int64_t H, int64_t D) {
  // q as a select of [N, 3, H, D]: strides (3 H D, D, 1).
  const at::Tensor qkv = spread({N, 3, H, D}, 1 + D).to(dt);
  const at::Tensor q = qkv.select(1, 0), k = qkv.select(1, 1);
  const at::Tensor cos = spread({N, D}, 2 + D), sin = spread({N, D}, 3 + D);
  ASSERT_TRUE(medr1::ops::vision_rotary_applies(q, cos, sin));
  for (const at::Tensor& x : {q, k}) {
    const at::Tensor want = composite(x, cos, sin);
    const at::Tensor got = medr1::ops::vision_rotary(x, cos, sin);
    EXPECT_TRUE(got.is_contiguous());
    EXPECT_EQ(got.scalar_type(), dt);
    EXPECT_EQ(got.sizes(), want.sizes());
    // Bit patterns, so that -0 against +0 also counts (no NaN in these inputs).
    const at::ScalarType bits = dt == at::kFloat ? at::kInt : at::kShort;
    const at::Tensor differ = got.view(bits) != want.view(bits);
    EXPECT_EQ(differ.sum().item<int64_t>(), 0)
        << c10::toString(dt) << " N " << N << " H " << H << " D " << D;
  }
}

TEST(VisionRotary, BitIdenticalToTheCompositeInFloat32AndBfloat16) {
  for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
    expect_bit_identical(dt, 37, 3, 80);  // Qwen2-VL's head dim, rows over several parallel chunks
    expect_bit_identical(dt, 5, 16, 2);
    expect_bit_identical(dt, 300, 16, 80);
  }
}

TEST(VisionRotary, SameResultAtOneAndTwoThreads) {
  const int saved = at::get_num_threads();
  const at::Tensor x = spread({513, 16, 80}, 9).to(at::kBFloat16);
  const at::Tensor cos = spread({513, 80}, 10), sin = spread({513, 80}, 11);
  at::set_num_threads(1);
  const at::Tensor one = medr1::ops::vision_rotary(x, cos, sin);
  at::set_num_threads(2);
  const at::Tensor two = medr1::ops::vision_rotary(x, cos, sin);
  at::set_num_threads(saved);
  EXPECT_TRUE(at::equal(one, two));
  EXPECT_TRUE(at::equal(one, composite(x, cos, sin)));
}

TEST(VisionRotary, RefusesWhatTheCompositeMustDo) {
  using medr1::ops::vision_rotary_applies;
  const at::Tensor x = at::randn({4, 2, 8}), cos = at::randn({4, 8}), sin = at::randn({4, 8});
  EXPECT_TRUE(vision_rotary_applies(x, cos, sin));
  EXPECT_FALSE(vision_rotary_applies(x.to(at::kDouble), cos, sin));  // float64 (finite differences)
  EXPECT_FALSE(vision_rotary_applies(x.to(at::kHalf), cos, sin));
  EXPECT_FALSE(vision_rotary_applies(x, cos.to(at::kBFloat16), sin));     // tables must be float32
  EXPECT_FALSE(vision_rotary_applies(x, cos.narrow(1, 0, 4), sin));       // table width != D
  EXPECT_FALSE(vision_rotary_applies(x, cos.narrow(0, 0, 3), sin));       // table rows != N
  EXPECT_FALSE(vision_rotary_applies(x, cos.t().contiguous().t(), sin));  // non-contiguous table
  EXPECT_FALSE(
      vision_rotary_applies(at::randn({4, 2, 7}), at::randn({4, 7}), at::randn({4, 7})));  // odd D
  EXPECT_FALSE(
      vision_rotary_applies(at::randn({4, 8, 2}).transpose(1, 2), cos, sin));  // D not unit stride
  EXPECT_FALSE(vision_rotary_applies(x.view({4, 16}), cos, sin));
  const at::Tensor xg = x.clone().requires_grad_(true);
  EXPECT_FALSE(
      vision_rotary_applies(xg, cos, sin));  // attacks and training take the composite's autograd
  {
    at::NoGradGuard ng;
    EXPECT_TRUE(vision_rotary_applies(xg, cos, sin));
  }
  EXPECT_THROW(medr1::ops::vision_rotary(x.to(at::kDouble), cos, sin), medr1::Error);
  // Zero rows: an empty result.
  EXPECT_EQ(
      medr1::ops::vision_rotary(at::randn({0, 2, 8}), at::randn({0, 8}), at::randn({0, 8})).numel(),
      0);
}

}  // namespace
