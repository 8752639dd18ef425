// Fused decode-step attention (see ops/decode_attention.h): the argument checks, the output layout and the dispatch
// to the backend (decode_attention_avx2.cpp). The portable path has no kernel: callers stay on eager attention.
#include "medr1/ops/decode_attention.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "ops/backends.h"
#include "ops/simd_avx2.h"

namespace medr1::ops {

using simd::cpu_has_avx2_fma;

bool decode_attention_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  if (!q.defined() || !k.defined() || !v.defined() || q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return false;
  if (!cpu_has_avx2_fma() || !q.device().is_cpu() || !k.device().is_cpu() || !v.device().is_cpu()) return false;
  if (at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad())) return false;
  const auto dt = q.scalar_type();
  if ((dt != at::kFloat && dt != at::kBFloat16) || k.scalar_type() != dt || v.scalar_type() != dt) return false;
  const int64_t B = q.size(0), H = q.size(1), S = q.size(2), D = q.size(3);
  if (S < 1 || S > kDecodeAttentionMaxQuery || D % 8 != 0 || D == 0) return false;
  if (k.size(0) != B || v.size(0) != B || k.size(1) < 1 || H % k.size(1) != 0 || v.size(1) != k.size(1) ||
      k.size(3) != D || v.size(3) != D || v.size(2) != k.size(2) || k.size(2) < 1)
    return false;
  if (q.stride(3) != 1 || k.stride(3) != 1 || v.stride(3) != 1) return false;
  if (mask.defined()) {
    if (!mask.device().is_cpu() || mask.scalar_type() != dt || mask.dim() != 4) return false;
    if (mask.requires_grad() && at::GradMode::is_enabled()) return false;
    // Broadcastable to [B, 1, S, T] (the head dim must be 1: one mask for all heads).
    const int64_t want[4] = {B, 1, S, k.size(2)};
    for (int i = 0; i < 4; ++i)
      if (mask.size(i) != want[i] && mask.size(i) != 1) return false;
    if (mask.size(1) != 1) return false;
  }
  return true;
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  // Never runs AVX2 code where the CPU (or MEDR1_CPU_ISA) does not allow it; callers check first.
  TORCH_CHECK(decode_attention_applies(q, k, v, mask), "decode_attention: arguments or CPU path (",
              cpu_isa_name(cpu_isa()), ") not supported; use eager_attention");
  const int64_t B = q.size(0), H = q.size(1), S = q.size(2), D = q.size(3), Tk = k.size(2);
  // [B, S, H, D] storage, returned as a [B, H, S, D] view: the caller's transpose(1, 2).reshape is then free.
  at::Tensor out = at::empty({B, S, H, D}, q.options()).transpose(1, 2);
  at::Tensor m = mask.defined() ? mask.expand({B, 1, S, Tk}).contiguous() : at::Tensor();
  backend::decode_attention_avx2(q, k, v, m, out);
  return out;
}

}  // namespace medr1::ops
