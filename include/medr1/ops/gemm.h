// The model's many-row GEMMs (linear layers of prefill and training, eager attention's two matmuls)
// on CPU in bf16. ATen's bf16 GEMM is fast only where oneDNN has bf16 dot-product kernels
// (AVX512-BF16, AMX). Elsewhere it falls back to a generic loop. Measured with torch 2.12 on an AMX
// Xeon capped to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2), [512 x 1536] x [1536 x
// 1536]: bf16 1.7 GFLOP/s against 190 for fp32. The AVX2 EPYC gave 4.4 GFLOP/s.
//
// The fp32 route: bf16 operands are widened to fp32 (exact), multiplied by the fp32 GEMM, and the
// result is rounded to bf16 once. That is the arithmetic of a bf16 GEMM that accumulates in fp32,
// as oneDNN's does, up to summation order. Autograd goes through a custom function that saves the
// bf16 operands, not fp32 copies, so training memory is that of the native route. Backward widens
// them again.
//
// Route choice (bf16_gemm_route()): MEDR1_BF16_GEMM=auto|native|fp32, read once; unset = auto. auto
// is native when the kernels' path (ops/cpu_features.h, MEDR1_CPU_ISA included) has AVX512-BF16 and
// ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) does not cap oneDNN below its bf16 kernels; fp32
// otherwise. Tensors that are not bf16 or not on the CPU always take ATen's own op.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

namespace medr1::ops {

enum class Bf16GemmRoute { Native, Fp32 };

const char* bf16_gemm_route_name(Bf16GemmRoute route);  // "native" | "fp32"
// "auto" -> nullopt, "native", "fp32"; anything else throws medr1::Error naming it.
std::optional<Bf16GemmRoute> parse_bf16_gemm_route(const std::string& name);

// The route bf16 CPU GEMMs take now.
Bf16GemmRoute bf16_gemm_route();
// Overrides the environment's choice (tests, benchmarks); nullopt goes back to it.
void set_bf16_gemm_route(std::optional<Bf16GemmRoute> route);

// at::linear(x, weight, bias) for any number of rows: x [..., K], weight [N, K], bias [N] or
// undefined ->
// [..., N]. bf16 CPU tensors follow bf16_gemm_route().
at::Tensor gemm_linear(const at::Tensor& x, const at::Tensor& weight,
                       const at::Tensor& bias = at::Tensor());

// at::matmul(a, b). bf16 CPU tensors of the same rank >= 2 with equal batch dims follow
// bf16_gemm_route(); broadcasting shapes take at::matmul.
at::Tensor matmul(const at::Tensor& a, const at::Tensor& b);

}  // namespace medr1::ops
