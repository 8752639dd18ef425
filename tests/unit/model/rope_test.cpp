// get_rope_index and M-RoPE against hand-derived values (transformers v4.49.0 semantics, see the parity README).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "medr1/core/error.h"
#include "medr1/model/qwen2_vl_config.h"
#include "medr1/model/rope.h"

namespace {

using namespace medr1::model;

Qwen2VLConfig tiny_config() {
  return load_qwen2_vl_config(std::string(MEDR1_TEST_DATA) + "/qwen2vl-tiny");
}

at::Tensor L(std::vector<int64_t> v) { return at::tensor(v, at::kLong); }

TEST(GetRopeIndex, TextOnlyIsOneDimensional) {
  auto cfg = tiny_config();
  at::Tensor ids = L({5, 6, 7, 8}).view({1, 4});
  RopeIndex r = get_rope_index(cfg, ids, {}, {});
  ASSERT_EQ(r.position_ids.sizes(), (std::vector<int64_t>{3, 1, 4}));
  for (int k = 0; k < 3; ++k) EXPECT_TRUE(at::equal(r.position_ids[k][0], L({0, 1, 2, 3})));
  EXPECT_EQ(r.rope_deltas.item<int64_t>(), 0);
  // With a left-padding mask: pads hold 1, text counts from 0; delta = max + 1 - S.
  RopeIndex m = get_rope_index(cfg, ids, {}, L({0, 1, 1, 1}).view({1, 4}));
  EXPECT_TRUE(at::equal(m.position_ids[1][0], L({1, 0, 1, 2})));
  EXPECT_EQ(m.rope_deltas.item<int64_t>(), 3 - 4);
}

// x <vs> [4 image tokens of grid (1,4,4) -> merged 2x2] <ve> y:
// text 0,1; image t=2, h=2+row, w=2+col; then max+1 = 4, 5.
TEST(GetRopeIndex, OneImageGridKnownIds) {
  auto cfg = tiny_config();
  const int64_t vs = cfg.vision_start_token_id, im = cfg.image_token_id, ve = cfg.vision_end_token_id;
  at::Tensor ids = L({100, vs, im, im, im, im, ve, 101}).view({1, 8});
  at::Tensor grid = L({1, 4, 4}).view({1, 3});
  RopeIndex r = get_rope_index(cfg, ids, grid, {});
  EXPECT_TRUE(at::equal(r.position_ids[0][0], L({0, 1, 2, 2, 2, 2, 4, 5})));
  EXPECT_TRUE(at::equal(r.position_ids[1][0], L({0, 1, 2, 2, 3, 3, 4, 5})));
  EXPECT_TRUE(at::equal(r.position_ids[2][0], L({0, 1, 2, 3, 2, 3, 4, 5})));
  EXPECT_EQ(r.rope_deltas.item<int64_t>(), 6 - 8);
}

TEST(GetRopeIndex, LeftPaddedBatchWithTwoImagesInOneRow) {
  auto cfg = tiny_config();
  const int64_t vs = cfg.vision_start_token_id, im = cfg.image_token_id, ve = cfg.vision_end_token_id;
  const int64_t pad = 151643;
  // Row 0: two pads then <vs> im <ve> (grid 1x2x2 -> 1 token) z. Row 1: <vs> im*2 (grid 1x2x4) <ve> <vs> im <ve>.
  at::Tensor ids = L({pad, pad, vs, im, ve, 7, 8, 9, /**/ vs, im, im, ve, vs, im, ve, 9}).view({2, 8});
  at::Tensor mask = L({0, 0, 1, 1, 1, 1, 1, 1, /**/ 1, 1, 1, 1, 1, 1, 1, 1}).view({2, 8});
  at::Tensor grid = L({1, 2, 2, /**/ 1, 2, 4, /**/ 1, 2, 2}).view({3, 3});
  RopeIndex r = get_rope_index(cfg, ids, grid, mask);
  // Row 0 (unpadded: vs im ve 7 8 9): 0, 1, 2, 3, 4, 5; pads 1.
  for (int k = 0; k < 3; ++k) EXPECT_TRUE(at::equal(r.position_ids[k][0], L({1, 1, 0, 1, 2, 3, 4, 5})));
  EXPECT_EQ(r.rope_deltas[0][0].item<int64_t>(), 6 - 8);
  // Row 1: vs 0; image (merged 1x2) at base 1: t 1,1 h 1,1 w 1,2; ve 3; vs 4; image base 5; ve 6; 9 -> 7.
  EXPECT_TRUE(at::equal(r.position_ids[0][1], L({0, 1, 1, 3, 4, 5, 6, 7})));
  EXPECT_TRUE(at::equal(r.position_ids[1][1], L({0, 1, 1, 3, 4, 5, 6, 7})));
  EXPECT_TRUE(at::equal(r.position_ids[2][1], L({0, 1, 2, 3, 4, 5, 6, 7})));
  EXPECT_EQ(r.rope_deltas[1][0].item<int64_t>(), 8 - 8);
  // Decode positions continue from the cache length + delta in all three rows.
  at::Tensor d = decode_position_ids(r.rope_deltas, 8, 1);
  EXPECT_EQ(d[0][0][0].item<int64_t>(), 6);
  EXPECT_EQ(d[2][1][0].item<int64_t>(), 8);
}

TEST(GetRopeIndex, TooFewGridsIsAnError) {
  auto cfg = tiny_config();
  at::Tensor ids = L({cfg.vision_start_token_id, cfg.image_token_id, cfg.vision_end_token_id}).view({1, 3});
  EXPECT_THROW(get_rope_index(cfg, ids, at::zeros({0, 3}, at::kLong), {}), medr1::Error);
}

TEST(MRope, TextPositionsReduceToPlainRopeInFloat32) {
  const int64_t D = 16;
  std::vector<int64_t> sec{2, 3, 3};
  at::Tensor pos = at::arange(5, at::kLong).view({1, 1, 5}).expand({3, 1, 5});
  RopeCosSin cs = mrope_cos_sin(pos, sec, D, 1e6, at::kFloat);
  ASSERT_EQ(cs.cos.sizes(), (std::vector<int64_t>{1, 5, D}));
  EXPECT_EQ(cs.cos.scalar_type(), at::kFloat);
  for (int64_t s = 0; s < 5; ++s)
    for (int64_t j = 0; j < D; ++j) {
      const int64_t i = j % (D / 2);
      // float32 inverse frequency and float32 angle, as HF.
      const float inv = 1.0f / std::pow(1e6f, static_cast<float>(2 * i) / static_cast<float>(D));
      const float ang = static_cast<float>(s) * inv;
      EXPECT_NEAR(cs.cos[0][s][j].item<float>(), std::cos(ang), 2e-6) << s << "," << j;
      EXPECT_NEAR(cs.sin[0][s][j].item<float>(), std::sin(ang), 2e-6) << s << "," << j;
    }
  // bf16 tables are the float32 ones rounded; apply keeps shape and dtype.
  RopeCosSin cb = mrope_cos_sin(pos, sec, D, 1e6, at::kBFloat16);
  EXPECT_EQ(cb.cos.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(cb.cos, cs.cos.to(at::kBFloat16)));
  at::Tensor q = at::randn({1, 2, 5, D}).to(at::kBFloat16);
  at::Tensor qr = apply_multimodal_rotary_pos_emb(q, cb);
  EXPECT_EQ(qr.sizes(), q.sizes());
  EXPECT_EQ(qr.scalar_type(), at::kBFloat16);
}

TEST(MRope, SectionsPickTheirRow) {
  // t, h, w rows differ: channel chunks [2,3,3,2,3,3] take rows 0,1,2,0,1,2.
  at::Tensor pos = L({3, 5, 7}).view({3, 1, 1});
  RopeCosSin cs = mrope_cos_sin(pos, {2, 3, 3}, 16, 1e6, at::kFloat);
  at::Tensor inv = rope_inv_freq(16, 1e6);
  const int64_t rows[16] = {0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 1, 1, 1, 2, 2, 2};
  const float p[3] = {3, 5, 7};
  for (int64_t j = 0; j < 16; ++j) {
    const float ang = p[rows[j]] * inv[j % 8].item<float>();
    EXPECT_FLOAT_EQ(cs.cos[0][0][j].item<float>(), std::cos(ang)) << j;
  }
}

}  // namespace
