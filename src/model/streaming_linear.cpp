// Weight-streaming linear for few-row CPU inputs (see streaming_linear.h). Each thread takes a range of weight
// rows; per row the x rows are handled in blocks of 4 so a loaded weight vector feeds 4 FMAs. bf16 weights and
// activations are widened exactly to fp32 (bf16 is the top half of an fp32), products are accumulated in fp32
// and the output is rounded once to the activations' dtype, bias added before the rounding.
#include "medr1/model/streaming_linear.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/BFloat16.h>

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "medr1/core/error.h"

#include "core/simd_avx2.h"

namespace medr1::model {
namespace {

using simd::cpu_has_avx2_fma;
using simd::hsum;
using simd::load8;
using simd::widen;

// out[j] = dot(w[0:K], x[j*K : (j+1)*K]) for j < MB; x is fp32.
template <int MB, typename WT>
__attribute__((target("avx2,fma"))) void dot_block(const WT* w, const float* x, int64_t K, float* out) {
  __m256 acc[MB], acc2[MB];
  for (int j = 0; j < MB; ++j) acc[j] = acc2[j] = _mm256_setzero_ps();
  int64_t k = 0;
  // Two accumulator sets so M = 1 is not bound by the FMA latency.
  for (; k + 16 <= K; k += 16) {
    const __m256 w0 = load8(w + k), w1 = load8(w + k + 8);
    for (int j = 0; j < MB; ++j) {
      acc[j] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + j * K + k), acc[j]);
      acc2[j] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + j * K + k + 8), acc2[j]);
    }
  }
  for (; k + 8 <= K; k += 8) {
    const __m256 w0 = load8(w + k);
    for (int j = 0; j < MB; ++j) acc[j] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + j * K + k), acc[j]);
  }
  for (int j = 0; j < MB; ++j) {
    float s = hsum(_mm256_add_ps(acc[j], acc2[j]));
    for (int64_t kk = k; kk < K; ++kk) s += widen(w[kk]) * x[j * K + kk];
    out[j] = s;
  }
}

// out[i * 4 + j] = dot(w[i*K : (i+1)*K], x[j*K : (j+1)*K]) for 2 weight rows x 4 x rows: each weight and x load
// feeds 4 and 2 FMAs (the many-row case is otherwise bound by re-reading x).
template <typename WT>
__attribute__((target("avx2,fma"))) void dot_tile_2x4(const WT* w, const float* x, int64_t K, float* out) {
  __m256 acc[2][4];
  for (auto& a : acc)
    for (auto& v : a) v = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256 w0 = load8(w + k), w1 = load8(w + K + k);
    for (int j = 0; j < 4; ++j) {
      const __m256 xv = _mm256_loadu_ps(x + j * K + k);
      acc[0][j] = _mm256_fmadd_ps(w0, xv, acc[0][j]);
      acc[1][j] = _mm256_fmadd_ps(w1, xv, acc[1][j]);
    }
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t kk = k; kk < K; ++kk) s += widen(w[i * K + kk]) * x[j * K + kk];
      out[i * 4 + j] = s;
    }
}

// out[i] = dot(w[i*K : (i+1)*K], x[0:K]) for 4 weight rows and one x row: four independent streams keep more
// loads in flight than one row at a time (M = 1, the decode step).
template <typename WT>
__attribute__((target("avx2,fma"))) void dot_rows4_m1(const WT* w, const float* x, int64_t K, float* out) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256 xv = _mm256_loadu_ps(x + k);
    a0 = _mm256_fmadd_ps(load8(w + k), xv, a0);
    a1 = _mm256_fmadd_ps(load8(w + K + k), xv, a1);
    a2 = _mm256_fmadd_ps(load8(w + 2 * K + k), xv, a2);
    a3 = _mm256_fmadd_ps(load8(w + 3 * K + k), xv, a3);
  }
  out[0] = hsum(a0);
  out[1] = hsum(a1);
  out[2] = hsum(a2);
  out[3] = hsum(a3);
  for (int i = 0; i < 4; ++i)
    for (int64_t kk = k; kk < K; ++kk) out[i] += widen(w[i * K + kk]) * x[kk];
}

// Rows [n0, n1) of y = x W^T + b (M rows of x, N rows of W).
template <typename WT, typename OT>
void rows(const float* x, const WT* w, const float* bias, int64_t M, int64_t K, int64_t N, OT* y, int64_t n0,
          int64_t n1) {
  float r[8];
  int64_t n = n0;
  if (M == 1) {
    for (; n + 4 <= n1; n += 4) {
      dot_rows4_m1(w + n * K, x, K, r);
      for (int i = 0; i < 4; ++i) y[n + i] = static_cast<OT>(r[i] + (bias ? bias[n + i] : 0.f));
    }
  }
  if (M >= 4) {
    for (; n + 2 <= n1; n += 2) {  // pairs of weight rows: the 4-row x blocks take the 2x4 tile
      const WT* wr = w + n * K;
      const float b0 = bias ? bias[n] : 0.f, b1 = bias ? bias[n + 1] : 0.f;
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) {
        dot_tile_2x4(wr, x + m * K, K, r);
        for (int j = 0; j < 4; ++j) {
          y[(m + j) * N + n] = static_cast<OT>(r[j] + b0);
          y[(m + j) * N + n + 1] = static_cast<OT>(r[4 + j] + b1);
        }
      }
      for (int i = 0; i < 2; ++i) {
        const float b = i ? b1 : b0;
        for (int64_t mm = m; mm < M; ++mm) {
          dot_block<1>(wr + i * K, x + mm * K, K, r);
          y[mm * N + n + i] = static_cast<OT>(r[0] + b);
        }
      }
    }
  }
  for (; n < n1; ++n) {
    const WT* wr = w + n * K;
    const float b = bias ? bias[n] : 0.f;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) {
      dot_block<4>(wr, x + m * K, K, r);
      for (int j = 0; j < 4; ++j) y[(m + j) * N + n] = static_cast<OT>(r[j] + b);
    }
    const int64_t rest = M - m;
    if (rest == 3) dot_block<3>(wr, x + m * K, K, r);
    if (rest == 2) dot_block<2>(wr, x + m * K, K, r);
    if (rest == 1) dot_block<1>(wr, x + m * K, K, r);
    for (int64_t j = 0; j < rest; ++j) y[(m + j) * N + n] = static_cast<OT>(r[j] + b);
  }
}

bool cpu_has_avx512_bf16() { return cpu_isa_at_least(CpuIsa::Avx512Bf16); }

// The AVX512-BF16 dot-product path serves bf16 inputs of 1..kStreamingLinearMaxRowsBf16Dot rows: the AVX2
// kernel widens every weight to fp32 first (convert, shift, FMA per 8 weights), which measured here caps it at
// about half the bytes/s of the fp32 kernel even at one row; VDPBF16PS takes 32 bf16 pairs per instruction.
bool use_bf16_dot(int64_t M) { return M >= 1 && M <= kStreamingLinearMaxRowsBf16Dot && cpu_has_avx512_bf16(); }

#define MEDR1_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

// Sum of 16 fp32 lanes. The masked extracts: the plain ones (and _mm512_castps512_ps256, _mm512_reduce_add_ps)
// take _mm*_undefined_* operands in GCC 12's headers, which trips -Wuninitialized.
MEDR1_AVX512BF16 inline float hsum16(__m512 v) {
  const __m512d d = _mm512_castps_pd(v);
  const __m256 lo = _mm256_castpd_ps(_mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xF, d, 0));
  const __m256 hi = _mm256_castpd_ps(_mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xF, d, 1));
  const __m256 h = _mm256_add_ps(lo, hi);
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
  return _mm_cvtss_f32(q);
}

MEDR1_AVX512BF16 inline __m512bh load32(const c10::BFloat16* p) { return (__m512bh)_mm512_loadu_si512(p); }
MEDR1_AVX512BF16 inline __m512bh load32(const c10::BFloat16* p, __mmask32 m) {
  return (__m512bh)_mm512_maskz_loadu_epi16(m, p);  // masked-off lanes read as +0, adding nothing
}

// out[i * MX + j] = dot(w row i, x row j) over K for RW weight rows and MX x rows, all bf16, fp32 accumulation.
template <int RW, int MX>
MEDR1_AVX512BF16 void dp_tile(const c10::BFloat16* w, const c10::BFloat16* x, int64_t K, float* out) {
  __m512 acc[RW][MX];
  for (int i = 0; i < RW; ++i)
    for (int j = 0; j < MX; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512bh wv[RW];
    for (int i = 0; i < RW; ++i) wv[i] = load32(w + i * K + k);
    for (int j = 0; j < MX; ++j) {
      const __m512bh xv = load32(x + j * K + k);
      for (int i = 0; i < RW; ++i) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv[i], xv);
    }
  }
  if (k < K) {
    const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << (K - k)) - 1);
    __m512bh wv[RW];
    for (int i = 0; i < RW; ++i) wv[i] = load32(w + i * K + k, m);
    for (int j = 0; j < MX; ++j) {
      const __m512bh xv = load32(x + j * K + k, m);
      for (int i = 0; i < RW; ++i) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv[i], xv);
    }
  }
  for (int i = 0; i < RW; ++i)
    for (int j = 0; j < MX; ++j) out[i * MX + j] = hsum16(acc[i][j]);
}

// rows() for bf16 x and weights on the dot-product path: 2 weight rows x 4 x rows per tile.
template <int RW>
void dp_rows_block(const c10::BFloat16* x, const c10::BFloat16* wr, const float* bias, int64_t M, int64_t K,
                   int64_t N, c10::BFloat16* y, int64_t n) {
  float r[RW * 4];
  int64_t m = 0;
  const auto store = [&](int64_t mx, int64_t m0) {
    for (int i = 0; i < RW; ++i)
      for (int64_t j = 0; j < mx; ++j)
        y[(m0 + j) * N + n + i] = static_cast<c10::BFloat16>(r[i * mx + j] + (bias ? bias[n + i] : 0.f));
  };
  for (; m + 4 <= M; m += 4) {
    dp_tile<RW, 4>(wr, x + m * K, K, r);
    store(4, m);
  }
  const int64_t rest = M - m;
  if (rest == 3) dp_tile<RW, 3>(wr, x + m * K, K, r);
  if (rest == 2) dp_tile<RW, 2>(wr, x + m * K, K, r);
  if (rest == 1) dp_tile<RW, 1>(wr, x + m * K, K, r);
  if (rest > 0) store(rest, m);
}

void rows_dpbf16(const c10::BFloat16* x, const c10::BFloat16* w, const float* bias, int64_t M, int64_t K, int64_t N,
                 c10::BFloat16* y, int64_t n0, int64_t n1) {
  int64_t n = n0;
  if (M == 1) {  // decode at batch 1: four weight streams in flight against the one x row
    for (; n + 4 <= n1; n += 4) dp_rows_block<4>(x, w + n * K, bias, M, K, N, y, n);
  }
  for (; n + 2 <= n1; n += 2) dp_rows_block<2>(x, w + n * K, bias, M, K, N, y, n);
  for (; n < n1; ++n) dp_rows_block<1>(x, w + n * K, bias, M, K, N, y, n);
}

// One linear of a group sharing the input x [M, K].
template <typename WT, typename OT>
struct Job {
  const WT* w;
  const float* bias;  // fp32 copy or nullptr
  int64_t N;
  OT* y;
};

// All jobs in one parallel region, split into chunks of >= ~256 KiB of weights (a multiple of 4 rows) that the
// threads take from a shared counter: a thread the scheduler starts late (a loaded machine) then finds less or no
// work left instead of holding everyone at the barrier with its fixed half, and q/k/v or gate/up pay one wake-up.
// rows_fn(x, w, bias, M, K, N, y, n0, n1) computes rows [n0, n1) of one job.
template <typename WT, typename OT, typename XT, typename RowsFn>
void run(const XT* x, int64_t M, int64_t K, const std::vector<Job<WT, OT>>& jobs, RowsFn rows_fn) {
  const int64_t row_bytes = K * static_cast<int64_t>(sizeof(WT));
  const int64_t chunk = std::max<int64_t>(4, ((int64_t{1} << 18) / std::max<int64_t>(1, row_bytes) + 3) / 4 * 4);
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
  std::vector<at::Tensor> out;
  if (!all) {
    for (size_t i = 0; i < weights.size(); ++i) {
      const at::Tensor b = bias_of(i);
      out.push_back(b.defined() ? at::linear(x, weights[i], b) : at::linear(x, weights[i]));
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
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = weights[i].size(0);
    out.push_back(at::empty(shape, x.options()));
  }
  const auto bias_ptr = [&](size_t i) { return bf[i].defined() ? bf[i].data_ptr<float>() : nullptr; };
  if (weights[0].scalar_type() == at::kFloat) {
    std::vector<Job<float, float>> jobs;
    for (size_t i = 0; i < weights.size(); ++i)
      jobs.push_back({weights[i].data_ptr<float>(), bias_ptr(i), weights[i].size(0), out[i].data_ptr<float>()});
    run(xf.data_ptr<float>(), M, K, jobs, rows<float, float>);
  } else {
    std::vector<Job<c10::BFloat16, c10::BFloat16>> jobs;
    for (size_t i = 0; i < weights.size(); ++i)
      jobs.push_back({weights[i].data_ptr<c10::BFloat16>(), bias_ptr(i), weights[i].size(0),
                      out[i].data_ptr<c10::BFloat16>()});
    if (use_bf16_dot(M)) {
      run(xc.data_ptr<c10::BFloat16>(), M, K, jobs, rows_dpbf16);
    } else {
      run(xf.data_ptr<float>(), M, K, jobs, rows<c10::BFloat16, c10::BFloat16>);
    }
  }
  return out;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return std::move(linear_group(x, {weight}, {bias})[0]);
}

}  // namespace medr1::model
