// The fused greedy step (see ops/greedy.h): argmax and log-softmax of each row in one pass; the sum of exponentials
// on the AVX2 backend (greedy_avx2.cpp) where the CPU's path allows it, else the portable loop here.
#include "medr1/ops/greedy.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <limits>

#include "medr1/core/error.h"

#include "ops/backends.h"
#include "ops/simd_avx2.h"

namespace medr1::ops {
namespace {

using simd::cpu_has_avx2_fma;
using simd::widen;

// Greedy step with no logits processor in play: per row the first index of the largest raw logit (what argmax of
// the unprocessed float32 scores gives, NaN counting as largest) and its log-softmax, -log(sum exp(x - max)), in
// one pass over the row in the logits' own dtype. The general path spends four full-vocabulary passes (float32
// copy, clone, argmax, log_softmax) on this, each big enough to wake the intra-op pool, which on a loaded
// machine costs more than the pass itself.
template <typename T>
void greedy_rows(const T* logits, int64_t n, int64_t V, int64_t* next, float* logprob) {
  at::parallel_for(0, n, 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* x = logits + r * V;
      float mx = -std::numeric_limits<float>::infinity();
      int64_t arg = 0;
      for (int64_t v = 0; v < V; ++v) {
        const float f = widen(x[v]);
        if (f > mx || (std::isnan(f) && !std::isnan(mx))) {
          mx = f;
          arg = v;
        }
      }
      next[r] = arg;
      if (!std::isfinite(mx)) {  // a NaN, a +inf or only -inf in the row: log_softmax gives NaN there too
        logprob[r] = std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      double sum = 0;
      if (cpu_has_avx2_fma()) {
        sum = backend::sum_exp_avx2(x, V, mx);
      } else {
        for (int64_t v = 0; v < V; ++v) sum += std::exp(widen(x[v]) - mx);
      }
      logprob[r] = static_cast<float>(-std::log(sum));
    }
  });
}

}  // namespace

std::pair<at::Tensor, at::Tensor> greedy_pick(const at::Tensor& raw) {
  MEDR1_CHECK(raw.dim() == 2 && (raw.scalar_type() == at::kFloat || raw.scalar_type() == at::kBFloat16),
              "greedy_pick: logits must be [N, V] float32 or bfloat16, got ", raw.sizes(), " ", raw.scalar_type());
  at::Tensor x = raw.to(at::kCPU).contiguous();
  const int64_t n = x.size(0), V = x.size(1);
  at::Tensor next = at::empty({n}, at::TensorOptions().dtype(at::kLong));
  at::Tensor lp = at::empty({n}, at::TensorOptions().dtype(at::kFloat));
  if (x.scalar_type() == at::kBFloat16) {
    greedy_rows(x.data_ptr<at::BFloat16>(), n, V, next.data_ptr<int64_t>(), lp.data_ptr<float>());
  } else {
    greedy_rows(x.data_ptr<float>(), n, V, next.data_ptr<int64_t>(), lp.data_ptr<float>());
  }
  return {next, lp};
}

}  // namespace medr1::ops
