// medr1::ops::gemm_linear / matmul: the route bf16 CPU GEMMs take (ops/gemm.h), forward and
// backward on both routes against float64 references (one bf16 rounding of an fp32-accumulated
// result), the fp32 route computing in fp32, and the cases that stay on ATen's op (fp32,
// broadcasting matmul).
#include "medr1/ops/gemm.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "medr1/core/error.h"
#include "medr1/ops/cpu_features.h"

namespace {

using medr1::ops::Bf16GemmRoute;

// Forces a route for one scope.
struct RouteGuard {
  explicit RouteGuard(Bf16GemmRoute r) { medr1::ops::set_bf16_gemm_route(r); }
  ~RouteGuard() { medr1::ops::set_bf16_gemm_route(std::nullopt); }
};

struct CapGuard {
  explicit CapGuard(medr1::ops::CpuIsa cap) : saved(medr1::ops::cpu_isa()) {
    medr1::ops::set_cpu_isa_cap(cap);
  }
  ~CapGuard() { medr1::ops::set_cpu_isa_cap(saved); }
  medr1::ops::CpuIsa saved;
};

at::Tensor bf16(const at::Tensor& t) { return t.to(at::kBFloat16); }

// |y - r| <= |r| / 256 + abs_tol elementwise: one bf16 rounding of the exact value, plus
// accumulation noise.
double excess_over_one_rounding(const at::Tensor& y, const at::Tensor& r, double abs_tol) {
  return ((y.to(at::kDouble) - r).abs() - r.abs() * (1.0 / 256) - abs_tol).max().item<double>();
}

TEST(Gemm, RouteNamesParse) {
  EXPECT_FALSE(medr1::ops::parse_bf16_gemm_route("auto").has_value());
  EXPECT_EQ(*medr1::ops::parse_bf16_gemm_route("native"), Bf16GemmRoute::Native);
  EXPECT_EQ(*medr1::ops::parse_bf16_gemm_route("fp32"), Bf16GemmRoute::Fp32);
  try {
    medr1::ops::parse_bf16_gemm_route("bf32");
    FAIL() << "no throw";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'bf32'"), std::string::npos) << e.what();
  }
  EXPECT_STREQ(medr1::ops::bf16_gemm_route_name(Bf16GemmRoute::Fp32), "fp32");
  EXPECT_STREQ(medr1::ops::bf16_gemm_route_name(Bf16GemmRoute::Native), "native");
}

TEST(Gemm, AutoRouteFollowsTheKernelsPath) {
  // The ctest environments set MEDR1_BF16_GEMM only where they mean to; auto is what is checked
  // here.
  const char* env = std::getenv("MEDR1_BF16_GEMM");
  if (env != nullptr && std::string(env) != "auto" && *env != '\0')
    GTEST_SKIP() << "MEDR1_BF16_GEMM=" << env;
  const char* dnnl = std::getenv("ONEDNN_MAX_CPU_ISA");
  const bool dnnl_capped = dnnl != nullptr && *dnnl != '\0';
  {
    // A CPU without bf16 dot-product instructions (or capped to look like one): fp32.
    CapGuard cap(medr1::ops::CpuIsa::Avx2);
    EXPECT_EQ(medr1::ops::bf16_gemm_route(), Bf16GemmRoute::Fp32);
  }
  {
    CapGuard cap(medr1::ops::CpuIsa::Portable);
    EXPECT_EQ(medr1::ops::bf16_gemm_route(), Bf16GemmRoute::Fp32);
  }
  const bool has_bf16 = medr1::ops::detected_cpu_isa() >= medr1::ops::CpuIsa::Avx512Bf16;
  if (has_bf16 && !dnnl_capped) {
    CapGuard cap(medr1::ops::CpuIsa::Amx);
    EXPECT_EQ(medr1::ops::bf16_gemm_route(), Bf16GemmRoute::Native);
  }
  {
    RouteGuard force(Bf16GemmRoute::Native);
    CapGuard cap(medr1::ops::CpuIsa::Avx2);
    EXPECT_EQ(medr1::ops::bf16_gemm_route(), Bf16GemmRoute::Native);  // an explicit choice wins
  }
}

TEST(Gemm, LinearForwardOnBothRoutesRoundsOnceFromFp32Accumulation) {
  at::NoGradGuard ng;
  at::manual_seed(3);
  // 67 rows (beyond the streaming kernel's), K = 300 with no SIMD-friendly size, leading dims kept.
  at::Tensor x = bf16(at::randn({2, 67, 300})), w = bf16(at::randn({129, 300})),
             b = bf16(at::randn({129}));
  const at::Tensor r = at::linear(x.to(at::kDouble), w.to(at::kDouble), b.to(at::kDouble));
  for (Bf16GemmRoute route : {Bf16GemmRoute::Native, Bf16GemmRoute::Fp32}) {
    RouteGuard g(route);
    at::Tensor y = medr1::ops::gemm_linear(x, w, b);
    ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 67, 129}));
    EXPECT_EQ(y.scalar_type(), at::kBFloat16);
    EXPECT_LE(excess_over_one_rounding(y, r, 1e-3), 0.0) << medr1::ops::bf16_gemm_route_name(route);
    at::Tensor y0 = medr1::ops::gemm_linear(x, w);
    EXPECT_LE(excess_over_one_rounding(y0, r - b.to(at::kDouble), 1e-3), 0.0);
  }
  // The fp32 route is an fp32 GEMM of the widened operands, rounded once.
  RouteGuard g(Bf16GemmRoute::Fp32);
  at::Tensor y = medr1::ops::gemm_linear(x, w, b);
  at::Tensor f = at::linear(x.to(at::kFloat), w.to(at::kFloat), b.to(at::kFloat)).to(at::kBFloat16);
  EXPECT_TRUE(at::equal(y, f));
}

TEST(Gemm, LinearBackwardOnTheFp32RouteMatchesFloat64) {
  at::manual_seed(4);
  at::Tensor x0 = bf16(at::randn({3, 40, 96})), w0 = bf16(at::randn({50, 96}) * 0.1),
             b0 = bf16(at::randn({50}));
  at::Tensor go = bf16(at::randn({3, 40, 50}));
  // float64 reference on the same (bf16-valued) operands.
  at::Tensor xd = x0.to(at::kDouble).requires_grad_(), wd = w0.to(at::kDouble).requires_grad_(),
             bd = b0.to(at::kDouble).requires_grad_();
  at::linear(xd, wd, bd).backward(go.to(at::kDouble));
  RouteGuard g(Bf16GemmRoute::Fp32);
  at::Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(),
             b = b0.clone().requires_grad_();
  at::Tensor y = medr1::ops::gemm_linear(x, w, b);
  ASSERT_TRUE(y.requires_grad());
  y.backward(go);
  for (const at::Tensor* t : {&x, &w, &b}) ASSERT_EQ(t->grad().scalar_type(), at::kBFloat16);
  EXPECT_LE(excess_over_one_rounding(x.grad(), xd.grad(), 1e-3), 0.0);
  EXPECT_LE(excess_over_one_rounding(w.grad(), wd.grad(), 1e-2), 0.0);
  EXPECT_LE(excess_over_one_rounding(b.grad(), bd.grad(), 1e-2), 0.0);

  // A frozen weight (LoRA's base layers): only x gets a gradient, no bias.
  at::Tensor x2 = x0.clone().requires_grad_();
  medr1::ops::gemm_linear(x2, w0).backward(go);
  at::Tensor xd2 = x0.to(at::kDouble).requires_grad_();
  at::linear(xd2, w0.to(at::kDouble)).backward(go.to(at::kDouble));
  EXPECT_LE(excess_over_one_rounding(x2.grad(), xd2.grad(), 1e-3), 0.0);
}

TEST(Gemm, Fp32RouteWidensTheWeightInBlocksOfRowsAndATail) {
  // K = 4096: blocks of 256 weight rows, so N = 600 is two blocks and a tail of 88, in forward and
  // backward.
  at::manual_seed(7);
  at::Tensor x0 = bf16(at::randn({2, 9, 4096})), w0 = bf16(at::randn({600, 4096}) * 0.05),
             b0 = bf16(at::randn({600}));
  at::Tensor go = bf16(at::randn({2, 9, 600}));
  at::Tensor xd = x0.to(at::kDouble).requires_grad_(), wd = w0.to(at::kDouble).requires_grad_();
  at::Tensor rd = at::linear(xd, wd, b0.to(at::kDouble));
  rd.backward(go.to(at::kDouble));
  RouteGuard g(Bf16GemmRoute::Fp32);
  at::Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_();
  at::Tensor y = medr1::ops::gemm_linear(x, w, b0);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 9, 600}));
  EXPECT_LE(excess_over_one_rounding(y, rd.detach(), 1e-3), 0.0);
  y.backward(go);
  EXPECT_LE(excess_over_one_rounding(x.grad(), xd.grad(), 1e-3), 0.0);
  EXPECT_LE(excess_over_one_rounding(w.grad(), wd.grad(), 1e-2), 0.0);
  // Every block written: no row of y or of W's gradient left at its initial memory.
  EXPECT_GT(y.abs().sum(-1).min().item<double>(), 0.0);
  EXPECT_GT(w.grad().abs().sum(-1).min().item<double>(), 0.0);
}

TEST(Gemm, BatchedMatmulForwardAndBackwardOnTheFp32Route) {
  at::manual_seed(5);
  // Attention's shapes: [n, H, L, Dh] x [n, H, Dh, L] (a transposed view, as the model passes it).
  at::Tensor q0 = bf16(at::randn({2, 3, 17, 8})), k0 = bf16(at::randn({2, 3, 17, 8}));
  at::Tensor go = bf16(at::randn({2, 3, 17, 17}));
  at::Tensor qd = q0.to(at::kDouble).requires_grad_(), kd = k0.to(at::kDouble).requires_grad_();
  at::Tensor rd = at::matmul(qd, kd.transpose(-1, -2));
  rd.backward(go.to(at::kDouble));
  for (Bf16GemmRoute route : {Bf16GemmRoute::Native, Bf16GemmRoute::Fp32}) {
    RouteGuard g(route);
    at::Tensor q = q0.clone().requires_grad_(), k = k0.clone().requires_grad_();
    at::Tensor s = medr1::ops::matmul(q, k.transpose(-1, -2));
    ASSERT_EQ(s.sizes(), (std::vector<int64_t>{2, 3, 17, 17}));
    EXPECT_EQ(s.scalar_type(), at::kBFloat16);
    EXPECT_LE(excess_over_one_rounding(s, rd.detach(), 1e-3), 0.0)
        << medr1::ops::bf16_gemm_route_name(route);
    s.backward(go);
    EXPECT_LE(excess_over_one_rounding(q.grad(), qd.grad(), 1e-2), 0.0);
    EXPECT_LE(excess_over_one_rounding(k.grad(), kd.grad(), 1e-2), 0.0);
  }
  RouteGuard g(Bf16GemmRoute::Fp32);
  at::NoGradGuard ng;
  at::Tensor f =
      at::matmul(q0.to(at::kFloat), k0.to(at::kFloat).transpose(-1, -2)).to(at::kBFloat16);
  EXPECT_TRUE(at::equal(medr1::ops::matmul(q0, k0.transpose(-1, -2)), f));
}

TEST(Gemm, OtherDtypesAndBroadcastingStayOnAten) {
  at::NoGradGuard ng;
  at::manual_seed(6);
  RouteGuard g(Bf16GemmRoute::Fp32);
  at::Tensor x = at::randn({30, 20}), w = at::randn({10, 20}), b = at::randn({10});
  EXPECT_TRUE(at::equal(medr1::ops::gemm_linear(x, w, b), at::linear(x, w, b)));
  at::Tensor a = at::randn({4, 5, 6}), m = at::randn({6, 7});
  EXPECT_TRUE(at::equal(medr1::ops::matmul(a, m), at::matmul(a, m)));
  // bf16 with broadcasting ([4, 5, 6] x [6, 7]): ATen's matmul, still the right values.
  at::Tensor ab = bf16(a), mb = bf16(m);
  at::Tensor y = medr1::ops::matmul(ab, mb);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{4, 5, 7}));
  EXPECT_LE(excess_over_one_rounding(y, at::matmul(ab.to(at::kDouble), mb.to(at::kDouble)), 1e-3),
            0.0);
  // Mismatched shapes keep ATen's error.
  EXPECT_THROW(medr1::ops::gemm_linear(bf16(at::randn({3, 4})), bf16(at::randn({5, 6}))),
               std::exception);
}

}  // namespace
