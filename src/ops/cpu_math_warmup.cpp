// See include/medr1/ops/cpu_math_warmup.h.
#include "medr1/ops/cpu_math_warmup.h"

#include <ATen/ATen.h>

#include <mutex>

namespace medr1::ops {

void warm_up_cpu_math() {
  static std::once_flag once;
  std::call_once(once, [] {
    // 64 elements: far below the 2048-element grain of ATen's unary kernels, so each call runs on this
    // thread only. Values in (0.1, 0.9) are in every function's domain.
    for (const auto dtype : {at::kFloat, at::kDouble}) {
      const at::Tensor x = at::linspace(0.1, 0.9, 64, at::TensorOptions().dtype(dtype));
      const at::Tensor outs[] = {
          x.cos(),   x.sin(),   x.tan(),   x.acos(),  x.asin(),    x.atan(),  x.cosh(),  x.sinh(),
          x.tanh(),  x.exp(),   x.expm1(), x.log(),   x.log10(),   x.log1p(), x.log2(),  x.sqrt(),
          x.rsqrt(), x.erf(),   x.erfc(),  x.erfinv(), x.lgamma(), x.sigmoid(), x.reciprocal(),
          x.abs(),   x.neg(),   x.trunc(), x.ceil(),  x.floor(),   x.round(), x.pow(2.5), at::gelu(x),
          at::silu(x)};
      (void)outs;
    }
  });
}

}  // namespace medr1::ops
