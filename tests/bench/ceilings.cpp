// Qwen2-VL-2B bench config and measured machine ceilings (ceilings.h).
#include "ceilings.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>

namespace medr1::bench {
namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

model::Qwen2VLConfig qwen2_vl_2b_config(int64_t layers, int64_t vision_depth) {
  const nlohmann::json j = {
      {"model_type", "qwen2_vl"}, {"vocab_size", 151936}, {"hidden_size", 1536}, {"intermediate_size", 8960},
      {"num_hidden_layers", layers}, {"num_attention_heads", 12}, {"num_key_value_heads", 2},
      {"rms_norm_eps", 1e-6}, {"rope_theta", 1000000.0}, {"tie_word_embeddings", true},
      {"rope_scaling", {{"type", "mrope"}, {"mrope_section", {16, 24, 24}}}},
      {"vision_config", {{"depth", vision_depth}, {"embed_dim", 1280}, {"hidden_size", 1536}, {"num_heads", 16},
                         {"mlp_ratio", 4}, {"in_chans", 3}, {"spatial_merge_size", 2}, {"patch_size", 14},
                         {"temporal_patch_size", 2}}}};
  return model::parse_qwen2_vl_config(j, "bench-2b");
}

double matmul_flops_per_s(int64_t m, int64_t k, int64_t n, at::ScalarType dtype, double min_seconds) {
  const at::Tensor a = at::randn({m, k}).to(dtype), b = at::randn({k, n}).to(dtype);
  (void)at::matmul(a, b);  // warm-up (allocations, BLAS thread pool)
  int64_t reps = 0;
  const auto t0 = Clock::now();
  double el = 0;
  do {
    (void)at::matmul(a, b);
    ++reps;
    el = since(t0);
  } while (el < min_seconds);
  return 2.0 * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n) *
         static_cast<double>(reps) / el;
}

MatmulCeiling matmul_ceiling(int64_t m, int64_t k, int64_t n, at::ScalarType dtype, double min_seconds) {
  if (dtype != at::kBFloat16) return {matmul_flops_per_s(m, k, n, dtype, min_seconds), "fp32"};
  const double fp32 = matmul_flops_per_s(m, k, n, at::kFloat, min_seconds);
  // Products of at most 64 rows in both dtypes first (~50 ms each): bf16 below half the fp32 rate at that shape
  // skips the full bf16 timing. The probe compares like with like: against the full-shape fp32 rate a 64-row bf16
  // product on AMX (slower per FLOP at few rows) read as slow and the 2 TFLOP/s bf16 GEMM was not timed.
  const int64_t pm = std::min<int64_t>(m, 64);
  const double probe = matmul_flops_per_s(pm, k, n, at::kBFloat16, 0.05);
  if (probe < 0.5 * matmul_flops_per_s(pm, k, n, at::kFloat, 0.05)) return {fp32, "fp32 (bf16 widened)"};
  const double bf16 = matmul_flops_per_s(m, k, n, at::kBFloat16, min_seconds);
  return bf16 >= fp32 ? MatmulCeiling{bf16, "bf16"} : MatmulCeiling{fp32, "fp32 (bf16 widened)"};
}

double read_bandwidth(int64_t bytes, double min_seconds) {
  const at::Tensor buf = at::ones({bytes / 4}, at::kFloat);
  (void)buf.sum().item<float>();  // warm-up: pages touched
  int64_t reps = 0;
  const auto t0 = Clock::now();
  double el = 0;
  do {
    (void)buf.sum().item<float>();
    ++reps;
    el = since(t0);
  } while (el < min_seconds);
  return static_cast<double>(bytes) * static_cast<double>(reps) / el;
}

}  // namespace medr1::bench
