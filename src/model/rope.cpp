// M-RoPE: get_rope_index (transformers v4.49.0 Qwen2-VL / Qwen2.5-VL, still images only), the float32 cos/sin
// tables of Qwen2VLRotaryEmbedding and apply_multimodal_rotary_pos_emb.
#include "medr1/model/rope.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "medr1/core/error.h"

namespace medr1::model {

RopeIndex get_rope_index(const Qwen2VLConfig& cfg, const at::Tensor& input_ids, const at::Tensor& image_grid_thw,
                         const at::Tensor& attention_mask) {
  MEDR1_CHECK(input_ids.defined() && input_ids.dim() == 2, "get_rope_index: input_ids must be [B, S], got ",
              input_ids.defined() ? input_ids.sizes() : at::IntArrayRef{});
  const int64_t B = input_ids.size(0), S = input_ids.size(1);
  const auto dev = input_ids.device();
  at::Tensor mask;  // [B, S] int64 on CPU, undefined = all ones
  if (attention_mask.defined()) {
    MEDR1_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == B && attention_mask.size(1) == S,
                "get_rope_index: attention_mask must be [", B, ", ", S, "], got ", attention_mask.sizes());
    mask = attention_mask.to(at::kCPU, at::kLong).contiguous();
  }

  if (!image_grid_thw.defined()) {
    // Text only: 1-D positions, identical in the three rows.
    if (mask.defined()) {
      at::Tensor pos = mask.cumsum(-1) - 1;                                   // [B, S]
      pos.masked_fill_(mask == 0, 1);
      at::Tensor max_pos = std::get<0>(pos.max(-1, /*keepdim=*/true));       // [B, 1]
      return {pos.unsqueeze(0).expand({3, B, S}).contiguous().to(dev), (max_pos + 1 - S).to(dev)};
    }
    at::Tensor pos = at::arange(S, at::TensorOptions().dtype(at::kLong)).view({1, 1, S}).expand({3, B, S});
    return {pos.contiguous().to(dev), at::zeros({B, 1}, at::TensorOptions().dtype(at::kLong)).to(dev)};
  }

  MEDR1_CHECK(image_grid_thw.dim() == 2 && image_grid_thw.size(1) == 3,
              "get_rope_index: image_grid_thw must be [N, 3], got ", image_grid_thw.sizes());
  at::Tensor grid = image_grid_thw.to(at::kCPU, at::kLong).contiguous();
  const int64_t n_images = grid.size(0);
  const int64_t merge = cfg.vision_config.value("spatial_merge_size", int64_t{2});
  const bool qwen2_5 = cfg.version == QwenVLVersion::Qwen2_5VL;

  at::Tensor ids = input_ids.to(at::kCPU, at::kLong).contiguous();
  at::Tensor position_ids = at::ones({3, B, S}, at::TensorOptions().dtype(at::kLong));
  at::Tensor deltas = at::zeros({B, 1}, at::TensorOptions().dtype(at::kLong));
  auto pa = position_ids.accessor<int64_t, 3>();
  auto ia = ids.accessor<int64_t, 2>();
  int64_t image_index = 0;

  const int64_t* mp = mask.defined() ? mask.data_ptr<int64_t>() : nullptr;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> cols;  // the unpadded positions of this row
    for (int64_t s = 0; s < S; ++s)
      if (!mp || mp[b * S + s] == 1) cols.push_back(s);
    std::vector<int64_t> tok;
    tok.reserve(cols.size());
    for (int64_t s : cols) tok.push_back(ia[b][s]);
    const int64_t L = static_cast<int64_t>(tok.size());

    int64_t image_nums = 0;
    for (int64_t k = 0; k + 1 < L; ++k) {
      if (tok[k] != cfg.vision_start_token_id) continue;
      if (tok[k + 1] == cfg.image_token_id) ++image_nums;
      MEDR1_CHECK(tok[k + 1] != cfg.video_token_id, "get_rope_index: row ", b,
                  " holds a video (<|video_pad|> after <|vision_start|>); medr1 supports still images only");
    }

    std::vector<int64_t> pt, ph, pw;  // positions of the row's unpadded tokens
    pt.reserve(L); ph.reserve(L); pw.reserve(L);
    int64_t st = 0, next_pos = 0;  // next_pos = max(positions so far) + 1
    auto add_text = [&](int64_t n) {
      for (int64_t k = 0; k < n; ++k) {
        pt.push_back(next_pos + k); ph.push_back(next_pos + k); pw.push_back(next_pos + k);
      }
      next_pos += n;
    };
    for (int64_t img = 0; img < image_nums; ++img) {
      auto it = std::find(tok.begin() + st, tok.end(), cfg.image_token_id);
      MEDR1_CHECK(it != tok.end(), "get_rope_index: row ", b, ": image ", img, " has no <|image_pad|> token");
      const int64_t ed = it - tok.begin();
      MEDR1_CHECK(image_index < n_images, "get_rope_index: input_ids hold more images than image_grid_thw rows (",
                  n_images, ")");
      const int64_t t = grid[image_index][0].item<int64_t>();
      const int64_t gh = grid[image_index][1].item<int64_t>() / merge;
      const int64_t gw = grid[image_index][2].item<int64_t>() / merge;
      ++image_index;
      add_text(ed - st);
      const int64_t base = next_pos;
      int64_t mx = 0;
      for (int64_t ti = 0; ti < t; ++ti) {
        // Qwen2.5-VL scales time by second_per_grid_t * tokens_per_second, which is 0 for images.
        const int64_t tv = qwen2_5 ? 0 : ti;
        for (int64_t hi = 0; hi < gh; ++hi)
          for (int64_t wi = 0; wi < gw; ++wi) {
            pt.push_back(base + tv); ph.push_back(base + hi); pw.push_back(base + wi);
            mx = std::max({mx, tv, hi, wi});
          }
      }
      next_pos = base + mx + 1;
      st = ed + t * gh * gw;
    }
    if (st < L) add_text(L - st);
    MEDR1_CHECK(static_cast<int64_t>(pt.size()) == L, "get_rope_index: row ", b, ": image tokens (", pt.size(),
                " positions) do not match the <|image_pad|> runs of the ", L, " unpadded tokens");
    for (int64_t k = 0; k < L; ++k) {
      pa[0][b][cols[k]] = pt[k]; pa[1][b][cols[k]] = ph[k]; pa[2][b][cols[k]] = pw[k];
    }
    // max over the three rows; with text after the image this is next_pos - 1.
    int64_t mxall = 0;
    for (int64_t k = 0; k < L; ++k) mxall = std::max({mxall, pt[k], ph[k], pw[k]});
    deltas[b][0] = (L ? mxall + 1 : 0) - S;
  }
  return {position_ids.to(dev), deltas.to(dev)};
}

at::Tensor decode_position_ids(const at::Tensor& rope_deltas, int64_t past_len, int64_t seq_len) {
  const int64_t B = rope_deltas.size(0);
  at::Tensor pos = at::arange(seq_len, rope_deltas.options().dtype(at::kLong)).view({1, seq_len}) + past_len +
                   rope_deltas.to(at::kLong).view({B, 1});  // [B, S]
  return pos.unsqueeze(0).expand({3, B, seq_len}).contiguous();
}

at::Tensor rope_inv_freq(int64_t head_dim, double theta) {
  // float32 throughout, as `1.0 / (base ** (arange(0, dim, 2).float() / dim))`.
  at::Tensor ex = at::arange(0, head_dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
                  static_cast<double>(head_dim);
  return at::pow(at::Scalar(theta), ex).reciprocal();
}

RopeCosSin mrope_cos_sin(const at::Tensor& position_ids, const std::vector<int64_t>& mrope_section, int64_t head_dim,
                         double theta, at::ScalarType dtype) {
  TORCH_CHECK(position_ids.dim() == 3 && position_ids.size(0) == 3, "mrope_cos_sin: position_ids must be [3, B, S]");
  at::Tensor inv = rope_inv_freq(head_dim, theta).to(position_ids.device());        // [D/2]
  at::Tensor ang = position_ids.to(at::kFloat).unsqueeze(-1) * inv;                 // [3, B, S, D/2]
  at::Tensor emb = at::cat({ang, ang}, -1);                                         // [3, B, S, D]
  at::Tensor cos = emb.cos(), sin = emb.sin();
  // Channel chunks mrope_section*2; chunk i takes its row (t, h, w) = i % 3.
  std::vector<int64_t> sec;
  for (int rep = 0; rep < 2; ++rep) sec.insert(sec.end(), mrope_section.begin(), mrope_section.end());
  std::vector<at::Tensor> cs, ss;
  int64_t off = 0;
  for (size_t i = 0; i < sec.size(); ++i) {
    cs.push_back(cos[static_cast<int64_t>(i % 3)].narrow(-1, off, sec[i]));
    ss.push_back(sin[static_cast<int64_t>(i % 3)].narrow(-1, off, sec[i]));
    off += sec[i];
  }
  TORCH_CHECK(off == head_dim, "mrope_cos_sin: mrope_section*2 must sum to head_dim");
  return {at::cat(cs, -1).to(dtype), at::cat(ss, -1).to(dtype)};  // [B, S, D]
}

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

at::Tensor apply_multimodal_rotary_pos_emb(const at::Tensor& x, const RopeCosSin& cs) {
  at::Tensor c = cs.cos.unsqueeze(1), s = cs.sin.unsqueeze(1);  // [B, 1, S, D]
  return x * c + rotate_half(x) * s;
}

}  // namespace medr1::model
