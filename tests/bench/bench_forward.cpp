// medr1-bench-forward: one forward pass of a Qwen2-VL-2B-shaped model with random weights (one 384x384 image ->
// 28x28 patches -> 196 image tokens, plus 60 text tokens), in float32 and bfloat16, reporting achieved FLOP/s next
// to the matmul FLOP/s measured in the same run (the ceiling this machine's BLAS gives for the decoder's shapes).
// --layers / --vision-depth cut the depth (the FLOP count follows). Logits at the last position only.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

#include "ceilings.h"
#include "medr1/core/memory.h"
#include "medr1/model/attention.h"
#include "medr1/model/qwen2_vl.h"

namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Matmul FLOPs of one forward (2*m*n*k per GEMM), attention score/value products included.
double forward_flops(const medr1::model::Qwen2VLConfig& c, int64_t depth, int64_t vdim, int64_t vmlp, int64_t P,
                     int64_t S) {
  const double E = static_cast<double>(c.hidden_size), I = static_cast<double>(c.intermediate_size);
  const double kv = static_cast<double>(c.num_key_value_heads * c.head_dim());
  const double s = static_cast<double>(S), p = static_cast<double>(P), D = static_cast<double>(vdim);
  double vis = depth * (2 * p * D * 3 * D + 2 * p * D * D + 2 * 2 * p * D * static_cast<double>(vmlp) + 2 * 2 * p * p * D);
  vis += 2 * p * 1176 * D + 2 * (p / 4) * (4 * D) * (4 * D) + 2 * (p / 4) * (4 * D) * E;  // patch embed + merger
  double llm = static_cast<double>(c.num_hidden_layers) *
               (2 * s * E * E * 2 + 2 * s * E * kv * 2 + 3 * 2 * s * E * I + 2 * 2 * s * s * E);
  llm += 2 * E * static_cast<double>(c.vocab_size);  // lm_head, last position
  return vis + llm;
}

}  // namespace

int main(int argc, char** argv) {
  medr1::keep_freed_memory();  // as medr1-train: large activations are not page-faulted in per call
  CLI::App app{"medr1-bench-forward: Qwen2-VL-2B-shaped forward, achieved vs matmul FLOP/s"};
  int64_t layers = 28, vdepth = 32, text_tokens = 60, image_px = 384;
  int threads = 0, reps = 2;
  std::vector<std::string> dtypes{"fp32", "bf16"};
  app.add_option("--layers", layers, "decoder layers (2B: 28)");
  app.add_option("--vision-depth", vdepth, "vision blocks (2B: 32)");
  app.add_option("--text-tokens", text_tokens, "text tokens besides the image");
  app.add_option("--image", image_px, "square image side in pixels (resized to a multiple of 28)");
  app.add_option("--threads", threads, "intra-op threads (0 = default)");
  app.add_option("--reps", reps, "timed forwards per dtype");
  app.add_option("--dtype", dtypes, "fp32 and/or bf16");
  std::string attn = "auto";
  app.add_option("--attn-implementation", attn, "auto | eager | sdpa (model/attention.h)");
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) at::set_num_threads(threads);
  medr1::model::use_attn_implementation(attn, at::Device(at::kCPU));

  auto cfg = medr1::bench::qwen2_vl_2b_config(layers, vdepth);
  const int64_t side = ((image_px + 14) / 28) * 28, g = side / 14, P = g * g, n_img = P / 4;
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < text_tokens / 2; ++i) ids.push_back(1000 + i);
  ids.push_back(cfg.vision_start_token_id);
  for (int64_t i = 0; i < n_img; ++i) ids.push_back(cfg.image_token_id);
  ids.push_back(cfg.vision_end_token_id);
  while (static_cast<int64_t>(ids.size()) < n_img + 2 + text_tokens) ids.push_back(2000 + static_cast<int64_t>(ids.size()));
  const int64_t S = static_cast<int64_t>(ids.size());
  const double flops = forward_flops(cfg, vdepth, 1280, 5120, P, S);
  std::printf("Qwen2-VL-2B shape: layers %lld, vision depth %lld, image %lldx%lld -> %lld patches, %lld tokens; "
              "%.1f GFLOP per forward, threads %d\n",
              static_cast<long long>(layers), static_cast<long long>(vdepth), static_cast<long long>(side),
              static_cast<long long>(side), static_cast<long long>(P), static_cast<long long>(S), flops / 1e9,
              at::get_num_threads());

  at::manual_seed(0);
  medr1::model::Qwen2VLForConditionalGeneration model(cfg);
  model->eval();
  for (const auto& dname : dtypes) {
    const at::ScalarType dt = dname == "bf16" ? at::kBFloat16 : at::kFloat;
    model->to(dt);
    at::NoGradGuard ng;
    medr1::model::Qwen2VLInputs in;
    in.input_ids = at::tensor(ids, at::kLong).view({1, S});
    in.pixel_values = at::randn({P, 1176});
    in.image_grid_thw = at::tensor(std::vector<int64_t>{1, g, g}, at::kLong).view({1, 3});
    in.logits_from = -1;
    (void)model->forward(in);  // warm-up
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      auto t0 = Clock::now();
      (void)model->forward(in);
      best = std::min(best, secs(t0, Clock::now()));
    }
    const auto mm = medr1::bench::matmul_ceiling(S, cfg.hidden_size, cfg.intermediate_size, dt);
    const double ceiling = mm.flops_per_s;
    std::printf("%s: forward %.3f s -> %.2f GFLOP/s achieved; matmul [%lld x %lld x %lld] %.2f GFLOP/s (%s GEMM); "
                "ratio %.2f\n",
                dname.c_str(), best, flops / best / 1e9, static_cast<long long>(S),
                static_cast<long long>(cfg.hidden_size), static_cast<long long>(cfg.intermediate_size), ceiling / 1e9,
                mm.gemm, flops / best / ceiling);
  }
  return 0;
}
