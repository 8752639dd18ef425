// One-pass vision rotary (ops/rotary.h). Built with -ffp-contract=off (CMakeLists.txt): a fused
// multiply-add would round x * cos + rh * sin once where the composite ATen expression rounds the
// two products and the sum apart.
#include "medr1/ops/rotary.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/BFloat16.h>

#include <algorithm>

#include "medr1/core/error.h"

namespace medr1::ops {
namespace {

inline float widen(float v) { return v; }
inline float widen(c10::BFloat16 v) { return static_cast<float>(v); }

// Rows [n0, n1): out[n, h, d] for all heads; x row n, head h at x + n * sn + h * sh.
template <typename T>
void rotate_rows(const T* x, int64_t sn, int64_t sh, const float* cos, const float* sin, int64_t H,
                 int64_t D, T* out, int64_t n0, int64_t n1) {
  const int64_t half = D / 2;
  for (int64_t n = n0; n < n1; ++n) {
    const float* c = cos + n * D;
    const float* s = sin + n * D;
    for (int64_t h = 0; h < H; ++h) {
      const T* xi = x + n * sn + h * sh;
      T* o = out + (n * H + h) * D;
      for (int64_t d = 0; d < half; ++d) {
        const float x1 = widen(xi[d]), x2 = widen(xi[d + half]);
        const float a = x1 * c[d], b = -x2 * s[d];               // rotate_half's first half: -x2
        const float e = x2 * c[d + half], f = x1 * s[d + half];  // its second half: x1
        o[d] = static_cast<T>(a + b);
        o[d + half] = static_cast<T>(e + f);
      }
    }
  }
}

}  // namespace

bool vision_rotary_applies(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (!x.defined() || !cos.defined() || !sin.defined()) return false;
  if (!x.device().is_cpu() || !cos.device().is_cpu() || !sin.device().is_cpu()) return false;
  if (x.scalar_type() != at::kFloat && x.scalar_type() != at::kBFloat16) return false;
  if (x.dim() != 3 || x.size(2) % 2 != 0 || x.size(2) == 0 || x.stride(2) != 1) return false;
  for (const at::Tensor* t : {&cos, &sin}) {
    if (t->scalar_type() != at::kFloat || t->dim() != 2 || !t->is_contiguous() ||
        t->size(0) != x.size(0) || t->size(1) != x.size(2))
      return false;
  }
  if (at::GradMode::is_enabled() &&
      (x.requires_grad() || cos.requires_grad() || sin.requires_grad()))
    return false;
  return true;
}

at::Tensor vision_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  MEDR1_CHECK(vision_rotary_applies(x, cos, sin), "vision_rotary: x ", x.scalar_type(), x.sizes(),
              " strides ", x.strides(), ", cos ", cos.scalar_type(), cos.sizes(), ", sin ",
              sin.scalar_type(), sin.sizes(),
              ": not a CPU float32/bfloat16 [N, H, D] with float32 [N, D] tables and no autograd");
  const int64_t N = x.size(0), H = x.size(1), D = x.size(2);
  at::Tensor out = at::empty({N, H, D}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const int64_t grain = std::max<int64_t>(1, 16384 / (H * D));
  const auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data_ptr<T>();
    T* op = out.data_ptr<T>();
    at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
      rotate_rows(xp, x.stride(0), x.stride(1), cos.data_ptr<float>(), sin.data_ptr<float>(), H, D,
                  op, n0, n1);
    });
  };
  if (x.scalar_type() == at::kFloat) {
    run(float{});
  } else {
    run(c10::BFloat16{});
  }
  return out;
}

}  // namespace medr1::ops
