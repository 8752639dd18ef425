// medr1::ops::decode_attention (fused decode-step attention) against a float64 attention and against the eager
// GEMM path it replaces: GQA groups, strided cache views, padding masks, head dims with an 8-wide tail, bf16
// roundings, and the cases that must stay on the eager path. Every test runs on the CPU path it is started with
// (ctest runs this binary's kernel tests again with MEDR1_CPU_ISA=avx2 and =portable): on the portable path the
// fused kernel must not apply and inference attention is the eager GEMM path.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "medr1/model/qwen2_text.h"
#include "medr1/ops/cpu_features.h"
#include "medr1/ops/decode_attention.h"

namespace {

using medr1::ops::decode_attention_applies;

bool fused_path() { return medr1::ops::cpu_isa_at_least(medr1::ops::CpuIsa::Avx2); }

// Inference attention as the model calls it: the fused kernel where it applies (AVX2 path), eager otherwise.
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  at::NoGradGuard ng;
  EXPECT_EQ(decode_attention_applies(q, k, v, mask), fused_path()) << medr1::ops::cpu_description();
  return medr1::model::eager_attention(q, k, v, mask);
}

// Float64 attention with repeat_kv: q [B, H, S, D], k/v [B, Hkv, T, D], mask [B, 1, S, T] additive.
at::Tensor ref64(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  const int64_t G = q.size(1) / k.size(1);
  at::Tensor kk = k.to(at::kDouble).repeat_interleave(G, 1), vv = v.to(at::kDouble).repeat_interleave(G, 1);
  at::Tensor w = at::matmul(q.to(at::kDouble), kk.transpose(2, 3)) / std::sqrt(static_cast<double>(q.size(3)));
  if (mask.defined()) w = w + mask.to(at::kDouble);
  return at::matmul(at::softmax(w, -1), vv);
}

// The eager GEMM path: eager_attention leaves the fused kernel when autograd is recording.
at::Tensor eager(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  at::AutoGradMode on(true);
  at::Tensor qg = q.detach().clone().requires_grad_(true);
  EXPECT_FALSE(decode_attention_applies(qg, k, v, mask));
  return medr1::model::eager_attention(qg, k, v, mask).detach();
}

struct Case {
  int64_t B, H, Hkv, S, T, D;
};

TEST(DecodeAttention, Fp32MatchesFloat64AndEagerWithGqaCacheViewsAndPadding) {
  at::NoGradGuard ng;
  at::manual_seed(3);
  for (const Case c : {Case{1, 12, 2, 1, 300, 128}, Case{2, 12, 2, 1, 37, 128}, Case{3, 4, 4, 3, 9, 72},
                       Case{2, 6, 1, 2, 1 + 1, 64}, Case{1, 2, 2, 1, 1, 8}}) {
    const int64_t Tmax = c.T + 5;
    // Cache buffers [B, Hkv, Tmax, D] narrowed to T positions: strided on the batch and head dims, as in decode.
    at::Tensor kc = at::randn({c.B, c.Hkv, Tmax, c.D}), vc = at::randn({c.B, c.Hkv, Tmax, c.D});
    at::Tensor k = kc.narrow(2, 0, c.T), v = vc.narrow(2, 0, c.T);
    // q as the attention module makes it: [B, S, H, D] transposed to [B, H, S, D].
    at::Tensor q = at::randn({c.B, c.S, c.H, c.D}).transpose(1, 2);
    // Left padding on row 0 (first 2 keys masked when there are enough), causal within the S new positions.
    at::Tensor am = at::ones({c.B, c.T}, at::kLong);
    if (c.T > c.S + 2) am[0].narrow(0, 0, 2).fill_(0);
    at::Tensor mask = medr1::model::make_causal_mask(am, c.B, c.S, c.T - c.S, at::kFloat, at::kCPU);
    at::Tensor y = decode_attention(q, k, v, mask);
    ASSERT_EQ(y.sizes(), (std::vector<int64_t>{c.B, c.H, c.S, c.D}));
    EXPECT_EQ(y.scalar_type(), at::kFloat);
    EXPECT_LT((y.to(at::kDouble) - ref64(q, k, v, mask)).abs().max().item<double>(), 2e-5) << c.T << " " << c.D;
    EXPECT_LT((y - eager(q, k, v, mask)).abs().max().item<double>(), 2e-5);
    // Without a mask: every key attended.
    at::Tensor y0 = decode_attention(q, k, v, at::Tensor());
    EXPECT_LT((y0.to(at::kDouble) - ref64(q, k, v, at::Tensor())).abs().max().item<double>(), 2e-5);
  }
}

TEST(DecodeAttention, MaskedKeysGetNoWeight) {
  at::NoGradGuard ng;
  at::manual_seed(4);
  // Row 0 may only see key 3: the output must be exactly v[3] (its probability is 1, the others exp-underflow).
  at::Tensor q = at::randn({1, 2, 1, 16}), k = at::randn({1, 1, 5, 16}), v = at::randn({1, 1, 5, 16});
  at::Tensor am = at::tensor(std::vector<int64_t>{0, 0, 0, 1, 0}, at::kLong).view({1, 5});
  // mask for a query at position 4 with only key 3 unpadded (key 4 also padded: a contrived but legal mask)
  at::Tensor mask = medr1::model::make_causal_mask(am, 1, 1, 4, at::kFloat, at::kCPU);
  at::Tensor y = decode_attention(q, k, v, mask);
  EXPECT_TRUE(at::equal(y[0][0][0], v[0][0][3]));
  EXPECT_TRUE(at::equal(y[0][1][0], v[0][0][3]));
}

double bf16(double x) { return static_cast<double>(static_cast<float>(c10::BFloat16(static_cast<float>(x)))); }

// transformers' eager attention in bf16 on LibTorch 2.x, written out with its roundings and exact (float64)
// products: scores = bf16(q.k), bf16(scores / float32(sqrt(D))), bf16(+ mask), softmax in float32 rounded to bf16,
// out = bf16(sum_t p_t v_t). A GEMM that accumulates in float32 and rounds once (oneDNN, cuBLAS) computes this up
// to float32 accumulation noise. q [B, H, S, D], k/v [B, Hkv, T, D], mask [B, 1, S, T].
at::Tensor eager_bf16_model(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  const int64_t B = q.size(0), H = q.size(1), S = q.size(2), D = q.size(3), T = k.size(2), G = H / k.size(1);
  at::Tensor qd = q.to(at::kDouble).contiguous(), kd = k.to(at::kDouble).contiguous();
  at::Tensor vd = v.to(at::kDouble).contiguous(), md = mask.to(at::kDouble).contiguous();
  at::Tensor out = at::empty({B, H, S, D}, at::kDouble);
  auto Q = qd.accessor<double, 4>(), K = kd.accessor<double, 4>(), V = vd.accessor<double, 4>();
  auto M = md.accessor<double, 4>();
  auto O = out.accessor<double, 4>();
  const double div = static_cast<float>(std::sqrt(static_cast<double>(D)));
  std::vector<double> p(static_cast<size_t>(T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t s = 0; s < S; ++s) {
        double mx = -INFINITY;
        for (int64_t t = 0; t < T; ++t) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += Q[b][h][s][d] * K[b][h / G][t][d];
          const double sc = bf16(bf16(static_cast<float>(bf16(dot)) / static_cast<float>(div)) + M[b][0][s][t]);
          p[static_cast<size_t>(t)] = sc;
          mx = std::max(mx, sc);
        }
        double sum = 0;
        for (int64_t t = 0; t < T; ++t) sum += (p[static_cast<size_t>(t)] = std::exp(p[static_cast<size_t>(t)] - mx));
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0;
          for (int64_t t = 0; t < T; ++t) acc += bf16(p[static_cast<size_t>(t)] / sum) * V[b][h / G][t][d];
          O[b][h][s][d] = bf16(acc);
        }
      }
  return out;
}

// Both eager's GEMM path and the fused kernel, against the rounding model: within one bf16 ulp (relative 2^-8,
// a rounding boundary crossed by float32 accumulation noise) plus 1e-6, and mostly equal. Returns the share equal.
double check_against_model(const char* what, const at::Tensor& y, const at::Tensor& model) {
  at::Tensor yd = y.to(at::kDouble);
  at::Tensor excess = (yd - model).abs() - model.abs() * (1.0 / 256) - 1e-6;
  const double equal = yd.eq(model).to(at::kDouble).mean().item<double>();
  std::printf("  %s vs eager rounding model: max excess %.3e, max abs diff %.3e, equal %.4f\n", what,
              excess.max().item<double>(), (yd - model).abs().max().item<double>(), equal);
  return equal;
}

// ATen's bf16 GEMM on this CPU: oneDNN's kernels where the CPU has AVX512BW/VL/DQ (ATen's mkldnn_bf16_device_check),
// else ATen's own fallback GEMM.
bool aten_bf16_gemm_is_onednn() {
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq");
}

TEST(DecodeAttention, Bf16KeepsTheEagerRoundings) {
  at::NoGradGuard ng;
  at::manual_seed(5);
  const int64_t B = 2, H = 12, Hkv = 2, T = 150, D = 128;
  at::Tensor k = at::randn({B, Hkv, T + 3, D}).to(at::kBFloat16).narrow(2, 0, T);
  at::Tensor v = at::randn({B, Hkv, T + 3, D}).to(at::kBFloat16).narrow(2, 0, T);
  at::Tensor q = (at::randn({B, 1, H, D}) * 2).to(at::kBFloat16).transpose(1, 2);
  at::Tensor am = at::ones({B, T}, at::kLong);
  am[1].narrow(0, 0, 7).fill_(0);
  at::Tensor mask = medr1::model::make_causal_mask(am, B, 1, T - 1, at::kBFloat16, at::kCPU);
  std::printf("CPU: %s; ATen bf16 GEMM: %s\n", medr1::ops::cpu_description().c_str(),
              aten_bf16_gemm_is_onednn() ? "oneDNN" : "ATen fallback");
  const at::Tensor model = eager_bf16_model(q, k, v, mask);
  const at::Tensor ref = ref64(q, k, v, mask);

  // What the model runs at inference (fused on the AVX2 path, eager GEMMs on the portable path).
  at::Tensor y = decode_attention(q, k, v, mask);
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  const double eq_y = check_against_model(fused_path() ? "fused kernel" : "eager (portable path)", y, model);
  // The fused kernel IS the rounding model up to float32 summation order: on every path that runs it.
  if (fused_path()) {
    at::Tensor excess = (y.to(at::kDouble) - model).abs() - model.abs() * (1.0 / 256) - 1e-6;
    EXPECT_LE(excess.max().item<double>(), 0.0);
    EXPECT_GT(eq_y, 0.95);
  }
  // Eager's GEMM path (what transformers runs), held to the contract measured for each ATen bf16 GEMM:
  //   oneDNN (CPUs with AVX512BW/VL/DQ): fp32 accumulation and one rounding, the model exactly (measured here on an
  //     AVX512-BF16 EPYC: 100% equal);
  //   ATen's fallback GEMM (AVX2-only CPUs): measured under `qemu-x86_64 -cpu max` (an AVX2 CPU without AVX-512):
  //     99.97% equal, 1 bf16 ulp where not. (LibTorch 1.13's fallback was farther off: 16% equal on an AVX2 EPYC.)
  at::Tensor e = eager(q, k, v, mask);
  const double eq_e = check_against_model("eager GEMM path", e, model);
  {
    at::Tensor excess = (e.to(at::kDouble) - model).abs() - model.abs() * (1.0 / 256) - 1e-6;
    if (aten_bf16_gemm_is_onednn()) {
      EXPECT_LE(excess.max().item<double>(), 0.0);
      EXPECT_GT(eq_e, 0.95);
    } else {
      EXPECT_LE(excess.max().item<double>(), 1e-5);
      EXPECT_GT(eq_e, 0.99);
    }
  }
  // Every path: close to the float64 attention of the same bf16 inputs (the scores' bf16 roundings dominate).
  EXPECT_LT((y.to(at::kDouble) - ref).abs().max().item<double>(), 0.05);
  EXPECT_LT((e.to(at::kDouble) - ref).abs().max().item<double>(), 0.05);
  EXPECT_LT((model - ref).abs().max().item<double>(), 0.05);
}

TEST(DecodeAttention, OtherCasesStayOnTheEagerPath) {
  at::NoGradGuard ng;
  at::Tensor k = at::randn({1, 2, 10, 16}), v = at::randn({1, 2, 10, 16});
  EXPECT_EQ(decode_attention_applies(at::randn({1, 4, 1, 16}), k, v, at::Tensor()), fused_path());
  // Prefill-sized query blocks keep the GEMMs.
  EXPECT_FALSE(decode_attention_applies(at::randn({1, 4, medr1::ops::kDecodeAttentionMaxQuery + 1, 16}),
                                        at::randn({1, 2, 40, 16}), at::randn({1, 2, 40, 16}), at::Tensor()));
  // Head dim without an 8-wide tail, other dtypes, per-head masks, mismatched GQA heads.
  EXPECT_FALSE(decode_attention_applies(at::randn({1, 4, 1, 12}), at::randn({1, 2, 10, 12}),
                                        at::randn({1, 2, 10, 12}), at::Tensor()));
  EXPECT_FALSE(decode_attention_applies(at::randn({1, 4, 1, 16}, at::kDouble), k.to(at::kDouble),
                                        v.to(at::kDouble), at::Tensor()));
  EXPECT_FALSE(decode_attention_applies(at::randn({1, 4, 1, 16}), k, v, at::zeros({1, 4, 1, 10})));
  EXPECT_FALSE(decode_attention_applies(at::randn({1, 3, 1, 16}), k, v, at::Tensor()));
  // Autograd recording: eager path, gradients flow.
  at::AutoGradMode on(true);
  at::Tensor q = at::randn({1, 4, 1, 16}).requires_grad_(true);
  EXPECT_FALSE(decode_attention_applies(q, k, v, at::Tensor()));
  medr1::model::eager_attention(q, k, v, at::Tensor()).sum().backward();
  EXPECT_TRUE(q.grad().defined());
}

}  // namespace
