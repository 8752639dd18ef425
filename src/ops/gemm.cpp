// bf16 CPU GEMMs through ATen's bf16 kernel or through fp32 (see include/medr1/ops/gemm.h).
#include "medr1/ops/gemm.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <vector>

#include "medr1/core/error.h"
#include "medr1/ops/cpu_features.h"

namespace medr1::ops {
namespace {

// oneDNN's ISA cap names (ONEDNN_MAX_CPU_ISA, upper-cased) below its first bf16 dot-product ISA
// (avx512_core_bf16): with one of these, ATen's bf16 matmul runs the slow fallback even on a BF16
// CPU. Read once.
bool onednn_capped_below_bf16() {
  static const bool capped = [] {
    const char* env = std::getenv("ONEDNN_MAX_CPU_ISA");
    if (env == nullptr || *env == '\0') env = std::getenv("DNNL_MAX_CPU_ISA");
    if (env == nullptr || *env == '\0') return false;
    std::string v(env);
    std::transform(v.begin(), v.end(), v.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    static const char* const below[] = {
        "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"};
    return std::find(std::begin(below), std::end(below), v) != std::end(below);
  }();
  return capped;
}

// Evaluated on every query: the kernels' path can be capped at run time (set_cpu_isa_cap).
Bf16GemmRoute auto_route() {
  return cpu_isa_at_least(CpuIsa::Avx512Bf16) && !onednn_capped_below_bf16() ? Bf16GemmRoute::Native
                                                                             : Bf16GemmRoute::Fp32;
}

// -1: no override; otherwise the Bf16GemmRoute's value.
std::atomic<int>& override_slot() {
  static std::atomic<int> slot{-1};
  return slot;
}

// MEDR1_BF16_GEMM, parsed once: nullopt = auto.
std::optional<Bf16GemmRoute> env_choice() {
  static const std::optional<Bf16GemmRoute> choice = []() -> std::optional<Bf16GemmRoute> {
    const char* env = std::getenv("MEDR1_BF16_GEMM");
    if (env == nullptr || *env == '\0') return std::nullopt;
    try {
      return parse_bf16_gemm_route(env);
    } catch (const Error& e) {
      fail("MEDR1_BF16_GEMM: ", e.what());
    }
  }();
  return choice;
}

bool takes_fp32_route(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == at::kBFloat16 && b.scalar_type() == at::kBFloat16 &&
         a.device().is_cpu() && b.device().is_cpu() && bf16_gemm_route() == Bf16GemmRoute::Fp32;
}

at::Tensor widen(const at::Tensor& t) { return t.to(at::kFloat); }

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Weight rows per block: the block's fp32 copy (~4 MiB) is made and consumed while it is in cache,
// so a weight costs one read of its bf16 bytes. Widening the whole weight first ran at 6 GB/s here
// and added 36% to a [258 x 1536] x [1536 x 8960] fp32 GEMM; blocked, the same product took the
// GEMM's time.
int64_t block_rows(int64_t K) {
  const int64_t rows = (int64_t{1} << 20) / std::max<int64_t>(1, K);  // 4 MiB of fp32
  return std::max<int64_t>(64, rows / 64 * 64);
}

// y = x W^T (+ b) from bf16 operands, in fp32, rounded to bf16 once: x [..., K], W [N, K] -> [...,
// N].
at::Tensor linear_fp32(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const int64_t K = w.size(1), N = w.size(0);
  const at::Tensor xf = widen(x.reshape({-1, K}));  // [M, K]
  const int64_t M = xf.size(0);
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  at::Tensor y = at::empty({M, N}, x.options());  // [M, N] bf16
  const at::Tensor bf = b.defined() ? widen(b) : at::Tensor();
  const int64_t rows = block_rows(K);
  for (int64_t n0 = 0; n0 < N; n0 += rows) {
    const int64_t n = std::min(rows, N - n0);
    const at::Tensor wb = widen(w.narrow(0, n0, n));  // [n, K]
    at::Tensor yb =
        bf.defined() ? at::addmm(bf.narrow(0, n0, n), xf, wb.t()) : at::mm(xf, wb.t());  // [M, n]
    y.narrow(1, n0, n).copy_(yb);
  }
  return y.view(shape);
}

// Gradients of x [..., K] and W [N, K] from the output's g [..., N] (fp32), where asked, W widened
// block by block as in the forward.
void linear_fp32_backward(AutogradContext* ctx, const at::Tensor& g, variable_list& grads) {
  const variable_list saved = ctx->get_saved_variables();
  const at::Tensor &x = saved[0], &w = saved[1];
  const int64_t K = w.size(1), N = w.size(0);
  const at::Tensor g2 = g.reshape({-1, N});  // [M, N]
  const int64_t rows = block_rows(K);
  if (ctx->needs_input_grad(0)) {
    at::Tensor gx =
        at::zeros({g2.size(0), K}, g2.options());  // [M, K] fp32: sum over the blocks of N
    for (int64_t n0 = 0; n0 < N; n0 += rows) {
      const int64_t n = std::min(rows, N - n0);
      gx.addmm_(g2.narrow(1, n0, n), widen(w.narrow(0, n0, n)));
    }
    grads[0] = gx.to(x.scalar_type()).view(x.sizes());
  }
  if (ctx->needs_input_grad(1)) {
    const at::Tensor xf = widen(x.reshape({-1, K}));  // [M, K]
    at::Tensor gw = at::empty({N, K}, w.options());   // [N, K] bf16, filled block by block
    for (int64_t n0 = 0; n0 < N; n0 += rows) {
      const int64_t n = std::min(rows, N - n0);
      gw.narrow(0, n0, n).copy_(g2.narrow(1, n0, n).t().mm(xf));
    }
    grads[1] = gw;
  }
}

struct LinearViaFp32 : public torch::autograd::Function<LinearViaFp32> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w) {
    ctx->save_for_backward({x, w});
    return linear_fp32(x, w, at::Tensor());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    variable_list grads(2);
    linear_fp32_backward(ctx, widen(grad_out[0]), grads);
    return grads;
  }
};

struct BiasedLinearViaFp32 : public torch::autograd::Function<BiasedLinearViaFp32> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["bias_dtype"] = static_cast<int64_t>(b.scalar_type());
    return linear_fp32(x, w, b);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const at::Tensor g = widen(grad_out[0]);  // [..., N]
    variable_list grads(3);
    linear_fp32_backward(ctx, g, grads);
    if (ctx->needs_input_grad(2)) {
      const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["bias_dtype"].toInt());
      grads[2] = g.reshape({-1, g.size(-1)}).sum(0).to(dtype);  // [N]
    }
    return grads;
  }
};

// a @ b in fp32 from bf16 operands of equal batch dims; saves the bf16 operands.
struct MatmulViaFp32 : public torch::autograd::Function<MatmulViaFp32> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b) {
    ctx->save_for_backward({a, b});
    return at::matmul(widen(a), widen(b)).to(a.scalar_type());  // [..., M, N]
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &a = saved[0], &b = saved[1];
    const at::Tensor g = widen(grad_out[0]);  // [..., M, N]
    variable_list grads(2);
    if (ctx->needs_input_grad(0))
      grads[0] = at::matmul(g, widen(b).transpose(-1, -2)).to(a.scalar_type());
    if (ctx->needs_input_grad(1))
      grads[1] = at::matmul(widen(a).transpose(-1, -2), g).to(b.scalar_type());
    return grads;
  }
};

}  // namespace

const char* bf16_gemm_route_name(Bf16GemmRoute route) {
  return route == Bf16GemmRoute::Fp32 ? "fp32" : "native";
}

std::optional<Bf16GemmRoute> parse_bf16_gemm_route(const std::string& name) {
  if (name == "auto") return std::nullopt;
  if (name == "native") return Bf16GemmRoute::Native;
  if (name == "fp32") return Bf16GemmRoute::Fp32;
  fail("expected auto, native or fp32, got '", name, "'");
}

Bf16GemmRoute bf16_gemm_route() {
  const int o = override_slot().load(std::memory_order_relaxed);
  if (o >= 0) return static_cast<Bf16GemmRoute>(o);
  const std::optional<Bf16GemmRoute> env = env_choice();
  return env ? *env : auto_route();
}

void set_bf16_gemm_route(std::optional<Bf16GemmRoute> route) {
  override_slot().store(route ? static_cast<int>(*route) : -1, std::memory_order_relaxed);
}

at::Tensor gemm_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const bool route =
      takes_fp32_route(x, weight) && (!bias.defined() || bias.scalar_type() == at::kBFloat16);
  if (route && weight.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight.size(1) &&
      (!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)))) {
    return bias.defined() ? BiasedLinearViaFp32::apply(x, weight, bias)
                          : LinearViaFp32::apply(x, weight);
  }
  return bias.defined() ? at::linear(x, weight, bias) : at::linear(x, weight);
}

at::Tensor matmul(const at::Tensor& a, const at::Tensor& b) {
  if (takes_fp32_route(a, b) && a.dim() >= 2 && a.dim() == b.dim() && a.size(-1) == b.size(-2) &&
      a.sizes().slice(0, a.dim() - 2) == b.sizes().slice(0, b.dim() - 2)) {
    return MatmulViaFp32::apply(a, b);
  }
  return at::matmul(a, b);
}

}  // namespace medr1::ops
