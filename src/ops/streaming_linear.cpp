// Weight-streaming linear for few-row CPU inputs (see ops/linear.h): the dispatch and the portable fallback
// (at::linear). Each thread takes chunks of weight rows from a shared counter and runs the backend of the CPU's
// path on them: streaming_linear_avx2.cpp (fp32 / bf16, x widened to fp32 once),
// streaming_linear_avx512bf16.cpp (bf16 dot products straight from the bf16 x) or streaming_linear_amx.cpp (bf16
// tiles of 16 weight rows against all of x).
#include "medr1/ops/linear.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "medr1/core/error.h"
#include "medr1/ops/gemm.h"

#include "ops/backends.h"
#include "ops/simd_avx2.h"

namespace medr1::ops {
namespace {

using simd::cpu_has_avx2_fma;

bool cpu_has_avx512_bf16() { return cpu_isa_at_least(CpuIsa::Avx512Bf16); }

// The AVX512-BF16 dot-product path serves bf16 inputs of 1..kStreamingLinearMaxRowsBf16Dot rows: the AVX2
// kernel widens every weight to fp32 first (convert, shift, FMA per 8 weights), which measured here caps it at
// about half the bytes/s of the fp32 kernel even at one row; VDPBF16PS takes 32 bf16 pairs per instruction.
bool use_bf16_dot(int64_t M) { return M >= 1 && M <= kStreamingLinearMaxRowsBf16Dot && cpu_has_avx512_bf16(); }

// The AMX path: bf16 with K a multiple of its 32-wide k step, on the rows the dot-product path serves (at 4 rows
// it streamed 12 GB/s on one core where VDPBF16PS reached 6.5, compute-bound).
bool use_amx(int64_t M, int64_t K) { return use_bf16_dot(M) && K % 32 == 0 && cpu_isa_at_least(CpuIsa::Amx); }

// The backends as function objects for run() (the AVX2 one overloaded on the weights' dtype).
constexpr auto rows_avx2 = [](auto... a) { backend::linear_rows_avx2(a...); };
constexpr auto rows_avx512bf16 = [](auto... a) { backend::linear_rows_avx512bf16(a...); };
constexpr auto rows_avx512 = [](auto... a) { backend::linear_rows_avx512(a...); };

// One linear of a group sharing the input x [M, K].
template <typename WT, typename OT>
struct Job {
  const WT* w;
  const float* bias;  // fp32 copy or nullptr
  int64_t N;
  OT* y;
};

// All jobs in one parallel region, split into chunks of >= ~256 KiB of weights (a multiple of `align` rows) that the
// threads take from a shared counter: a thread the scheduler starts late (a loaded machine) then finds less or no
// work left instead of holding everyone at the barrier with its fixed half, and q/k/v or gate/up pay one wake-up.
// rows_fn(x, w, bias, M, K, N, y, n0, n1) computes rows [n0, n1) of one job.
template <typename WT, typename OT, typename XT, typename RowsFn>
void run(const XT* x, int64_t M, int64_t K, const std::vector<Job<WT, OT>>& jobs, RowsFn rows_fn, int64_t align = 4) {
  const int64_t row_bytes = K * static_cast<int64_t>(sizeof(WT));
  const int64_t chunk =
      std::max<int64_t>(align, ((int64_t{1} << 18) / std::max<int64_t>(1, row_bytes) + align - 1) / align * align);
  struct Chunk {
    size_t job;
    int64_t n0, n1;
  };
  std::vector<Chunk> chunks;
  int64_t total_bytes = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    total_bytes += jobs[j].N * row_bytes;
    for (int64_t n = 0; n < jobs[j].N; n += chunk) chunks.push_back({j, n, std::min(jobs[j].N, n + chunk)});
  }
  const auto work = [&](const Chunk& c) {
    const auto& jb = jobs[c.job];
    rows_fn(x, jb.w, jb.bias, M, K, jb.N, jb.y, c.n0, c.n1);
  };
  const int64_t n_chunks = static_cast<int64_t>(chunks.size());
  // Below ~128 KiB of weights a second thread costs more than it saves.
  const int64_t n_threads = total_bytes < (int64_t{1} << 17) ? 1 : std::min<int64_t>(at::get_num_threads(), n_chunks);
  if (n_threads <= 1 || at::in_parallel_region()) {
    for (const auto& c : chunks) work(c);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, n_threads, 1, [&](int64_t, int64_t) {
    for (int64_t i = next.fetch_add(1); i < n_chunks; i = next.fetch_add(1)) work(chunks[static_cast<size_t>(i)]);
  });
}

}  // namespace

bool streaming_linear_applies(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!x.defined() || !weight.defined() || x.dim() < 1 || weight.dim() != 2) return false;
  if (!x.device().is_cpu() || !weight.device().is_cpu() || !cpu_has_avx2_fma()) return false;
  if (at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad() ||
                                     (bias.defined() && bias.requires_grad())))
    return false;
  const auto dt = weight.scalar_type();
  if ((dt != at::kFloat && dt != at::kBFloat16) || x.scalar_type() != dt) return false;
  if (!weight.is_contiguous() || x.size(-1) != weight.size(1)) return false;
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0) || bias.scalar_type() != dt ||
                         !bias.device().is_cpu()))
    return false;
  const int64_t K = weight.size(1);
  const int64_t M = K > 0 ? x.numel() / K : 0;
  const int64_t max_rows = dt == at::kFloat       ? kStreamingLinearMaxRowsFp32
                           : cpu_has_avx512_bf16() ? kStreamingLinearMaxRowsBf16Dot
                                                   : kStreamingLinearMaxRowsBf16;
  return M >= 1 && K > 0 && M <= max_rows;
}

std::vector<at::Tensor> linear_group(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                                     const std::vector<at::Tensor>& biases) {
  MEDR1_CHECK(biases.empty() || biases.size() == weights.size(), "linear_group: ", weights.size(), " weights but ",
              biases.size(), " biases");
  const auto bias_of = [&](size_t i) { return biases.empty() ? at::Tensor() : biases[i]; };
  bool all = !weights.empty();
  for (size_t i = 0; i < weights.size() && all; ++i) {
    all = streaming_linear_applies(x, weights[i], bias_of(i)) && weights[i].size(1) == weights[0].size(1) &&
          weights[i].scalar_type() == weights[0].scalar_type();
  }
  // x's shape with the last dim replaced by weight i's rows.
  const auto out_shape = [&](size_t i) {
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = weights[i].size(0);
    return shape;
  };
  std::vector<at::Tensor> out;
  if (!all) {
    // ATen's linear on a [.., T, K] input that needs grad and is not contiguous (a slice of the hidden states,
    // as lm_logits takes from the completion's first position) does not fold into one GEMM: matmul expands the
    // weight to [N, K, V] and oneDNN's bmm copies it whole, N times per call (1.9 GB for the 2B vocabulary
    // head at N = 4). As [M, K] rows it is one GEMM; the row copy is small.
    const bool fold = x.dim() > 2;
    const at::Tensor x2 = fold ? x.reshape({-1, x.size(-1)}) : x;
    for (size_t i = 0; i < weights.size(); ++i) {
      const at::Tensor b = bias_of(i);
      at::Tensor y = gemm_linear(x2, weights[i], b);
      out.push_back(fold ? y.view(out_shape(i)) : std::move(y));
    }
    return out;
  }
  const int64_t K = weights[0].size(1), M = x.numel() / K;
  // bf16 with several rows and AVX512-BF16: pairs of bf16 products summed in fp32 straight from the bf16 x;
  // otherwise x widened to fp32 once (exact).
  const bool dp = weights[0].scalar_type() == at::kBFloat16 && use_bf16_dot(M);
  at::Tensor xc = x.reshape({M, K}).contiguous();
  at::Tensor xf = dp ? at::Tensor() : xc.to(at::kFloat);
  std::vector<at::Tensor> bf(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    const at::Tensor b = bias_of(i);
    if (b.defined()) bf[i] = b.to(at::kFloat).contiguous();
    out.push_back(at::empty(out_shape(i), x.options()));
  }
  const auto bias_ptr = [&](size_t i) { return bf[i].defined() ? bf[i].data_ptr<float>() : nullptr; };
  if (weights[0].scalar_type() == at::kFloat) {
    std::vector<Job<float, float>> jobs;
    for (size_t i = 0; i < weights.size(); ++i)
      jobs.push_back({weights[i].data_ptr<float>(), bias_ptr(i), weights[i].size(0), out[i].data_ptr<float>()});
    // fp32 on the AVX-512 path (the AVX512-BF16 tier, whose CPUs all have AVX-512F): 16-lane tiles.
    if (cpu_has_avx512_bf16()) {
      run(xf.data_ptr<float>(), M, K, jobs, rows_avx512);
    } else {
      run(xf.data_ptr<float>(), M, K, jobs, rows_avx2);
    }
  } else {
    std::vector<Job<c10::BFloat16, c10::BFloat16>> jobs;
    for (size_t i = 0; i < weights.size(); ++i)
      jobs.push_back({weights[i].data_ptr<c10::BFloat16>(), bias_ptr(i), weights[i].size(0),
                      out[i].data_ptr<c10::BFloat16>()});
    if (use_amx(M, K)) {
      // x in AMX's pair layout once for all chunks; chunks of whole 16-row tiles.
      at::Tensor xp = at::empty({M * K}, xc.options());
      backend::amx_pack_x(xc.data_ptr<c10::BFloat16>(), M, K, xp.data_ptr<c10::BFloat16>());
      const c10::BFloat16* xpp = xp.data_ptr<c10::BFloat16>();
      const auto rows_amx = [xpp](const c10::BFloat16* xx, const c10::BFloat16* w, const float* b, int64_t m,
                                  int64_t k, int64_t n, c10::BFloat16* y, int64_t n0, int64_t n1) {
        backend::linear_rows_amx(xx, xpp, w, b, m, k, n, y, n0, n1);
      };
      run(xc.data_ptr<c10::BFloat16>(), M, K, jobs, rows_amx, 16);
    } else if (use_bf16_dot(M)) {
      run(xc.data_ptr<c10::BFloat16>(), M, K, jobs, rows_avx512bf16);
    } else {
      run(xf.data_ptr<float>(), M, K, jobs, rows_avx2);
    }
  }
  return out;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return std::move(linear_group(x, {weight}, {bias})[0]);
}

}  // namespace medr1::ops
