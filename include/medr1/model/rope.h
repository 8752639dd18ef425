// Rotary position maths of the Qwen2-VL / Qwen2.5-VL text decoder: the 3-D M-RoPE position ids
// (transformers v4.49.0 Qwen2VLForConditionalGeneration.get_rope_index / Qwen2_5_VL's, images only),
// the cos/sin tables (Qwen2VLRotaryEmbedding, float32) and apply_multimodal_rotary_pos_emb.
// Letters: B = batch, S = query tokens, H = heads, D = head_dim, N = images.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "medr1/model/qwen2_vl_config.h"

namespace medr1::model {

struct RopeIndex {
  at::Tensor position_ids;  // [3, B, S] int64 (t, h, w); padding positions hold 1
  at::Tensor rope_deltas;   // [B, 1] int64 = max(position) + 1 - S
};

// get_rope_index: input_ids [B, S] int64; image_grid_thw [N, 3] (undefined = no images); attention_mask
// [B, S] 1/0 (undefined = all ones; left padding allowed). Images are consumed in order across the rows
// (row 0's images first), as the processor concatenates them. Text-only (no grid) gives 1-D positions
// from the attention mask as HF does. Video tokens are refused (medr1 handles still images only).
RopeIndex get_rope_index(const Qwen2VLConfig& cfg, const at::Tensor& input_ids, const at::Tensor& image_grid_thw,
                         const at::Tensor& attention_mask);

// Positions of decode steps with a KV cache: past_len + arange(S) + rope_deltas, same in all three rows.
// rope_deltas [B, 1] int64 -> [3, B, S] int64.
at::Tensor decode_position_ids(const at::Tensor& rope_deltas, int64_t past_len, int64_t seq_len);

// inv_freq = 1 / theta^(arange(0, D, 2) / D) in float32 (as HF's default rope init). -> [D/2]
at::Tensor rope_inv_freq(int64_t head_dim, double theta);

struct RopeCosSin {
  at::Tensor cos;  // [B, S, D] already merged over mrope_section (chunk i takes row i % 3)
  at::Tensor sin;
};

// Qwen2VLRotaryEmbedding + the section merge of apply_multimodal_rotary_pos_emb: angles = pos * inv_freq in
// float32, emb = cat(angles, angles), cos/sin in float32 then cast to `dtype`.
// position_ids [3, B, S] (any integer/float dtype) -> cos, sin [B, S, D].
RopeCosSin mrope_cos_sin(const at::Tensor& position_ids, const std::vector<int64_t>& mrope_section, int64_t head_dim,
                         double theta, at::ScalarType dtype);

// rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2]).
at::Tensor rotate_half(const at::Tensor& x);

// x [B, H, S, D] -> x * cos + rotate_half(x) * sin, cos/sin [B, S, D] broadcast over heads, in x's dtype.
at::Tensor apply_multimodal_rotary_pos_emb(const at::Tensor& x, const RopeCosSin& cs);

}  // namespace medr1::model
