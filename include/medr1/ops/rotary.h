// Rotary position embedding of the vision tower in one pass (HF apply_rotary_pos_emb_vision): for x
// [N, H, D] and the float32 tables cos, sin [N, D],
//   out = (float(x) * cos + rotate_half(float(x)) * sin).to(x.dtype),
//   rotate_half(v) = cat(-v[D/2:], v[:D/2]),
// with the products and the sum each rounded to float32 and the result rounded once to x's dtype,
// as the op-by-op ATen expression rounds them: bit-identical to it (src/ops/rotary.cpp is compiled
// without FMA contraction). The composite reads and writes [N, H, D] float32 copies six times per
// call (19 ms for q and k of 3136 patches x 16 heads x 80 on 2 threads); this reads x once and
// writes the result.
#pragma once

#include <ATen/core/Tensor.h>

namespace medr1::ops {

// True when vision_rotary takes these arguments: CPU tensors, x float32 or bfloat16 [N, H, D] with
// unit stride on D (any strides on N and H, e.g. a select of the fused qkv output), D even, cos and
// sin float32 [N, D] contiguous, and no autograd (none of them requires grad, or grad mode is off).
// Otherwise callers use the composite expression.
bool vision_rotary_applies(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// The rotated x, contiguous [N, H, D] in x's dtype.
at::Tensor vision_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace medr1::ops
