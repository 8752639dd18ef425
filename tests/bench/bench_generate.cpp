// medr1-bench-generate: greedy generation on a Qwen2-VL-2B-shaped model with random weights (one 384x384 image ->
// 196 merged image tokens, plus 60 text tokens per prompt), as tests/bench/peer/hf_generate.py measures transformers:
// prefill tok/s = B*S / prefill time, decode tok/s = B*(N) / (generate(N+1) - generate(1)). Next to them, ceilings
// measured in the same run: decode vs its bound, the smaller of two: streaming the decoder + lm_head weights once per
// step at the measured read bandwidth, and the step's FLOPs (2 per weight per row, plus attention over the cache) at
// the measured matmul FLOP/s (fp32, 4 + 4 layers on an AMX Xeon: the streaming bound is the lower one up to 16 rows,
// 256 against 352 tok/s at 16); prefill vs the measured matmul FLOP/s on the decoder's MLP shape. One JSON line per run.
// --device cuda (CUDA builds): the model on the GPU; kernels run asynchronously there, so whole generate() calls are
// timed after a warm-up call (prefill = generate(1), decode = generate(N+1) - generate(1); each call ends with its
// tokens on the CPU), and the ceilings, measured on the CPU, are not printed (null).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

#include "ceilings.h"
#include "medr1/core/memory.h"
#include "medr1/core/device.h"
#include "medr1/generate/generate.h"
#include "medr1/model/attention.h"
#include "medr1/model/qwen2_vl.h"

int main(int argc, char** argv) {
  medr1::keep_freed_memory();  // as medr1-train: large activations are not page-faulted in per call
  CLI::App app{"medr1-bench-generate: prefill and decode tokens/s vs measured ceilings"};
  int64_t batch = 1, new_tokens = 8, layers = 28, vdepth = 32, text_tokens = 60;
  int threads = 0;
  std::string dtype = "bf16", device = "cpu";
  app.add_option("--batch", batch, "prompts per generate call");
  app.add_option("--dtype", dtype, "fp32 | bf16")->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("--device", device, "cpu | cuda[:N] (CUDA builds)");
  app.add_option("--new-tokens", new_tokens, "decode steps timed");
  app.add_option("--threads", threads, "intra-op threads (0 = default)");
  app.add_option("--layers", layers, "decoder layers (2B: 28)");
  app.add_option("--vision-depth", vdepth, "vision blocks (2B: 32)");
  std::string attn = "auto";
  app.add_option("--attn-implementation", attn, "auto | eager | sdpa (model/attention.h)");
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) at::set_num_threads(threads);
  const at::ScalarType dt = dtype == "bf16" ? at::kBFloat16 : at::kFloat;
  const c10::Device dev = medr1::resolve_device(device);
  medr1::model::use_attn_implementation(attn, dev);

  const auto cfg = medr1::bench::qwen2_vl_2b_config(layers, vdepth);
  const int64_t g = (384 + 14) / 28 * 2, P = g * g, n_img = P / 4;  // smart_resize 384 -> 392: 28x28 patches, 196 tokens
  std::vector<int64_t> ids{151644};
  for (int64_t i = 0; i < text_tokens / 2; ++i) ids.push_back(1000 + 7 * i);
  ids.push_back(cfg.vision_start_token_id);
  ids.insert(ids.end(), static_cast<size_t>(n_img), cfg.image_token_id);
  ids.push_back(cfg.vision_end_token_id);
  while (static_cast<int64_t>(ids.size()) < n_img + 2 + text_tokens) ids.push_back(3000 + 11 * static_cast<int64_t>(ids.size()));
  const int64_t S = static_cast<int64_t>(ids.size());

  at::manual_seed(0);
  medr1::model::Qwen2VLForConditionalGeneration model(cfg);
  model->eval();
  model->to(dev, dt);
  medr1::generate::PromptBatch pb;
  pb.input_ids = at::tensor(ids, at::kLong).view({1, S}).repeat({batch, 1});
  pb.attention_mask = at::ones_like(pb.input_ids);
  pb.pixel_values = at::randn({P, 1176}).repeat({batch, 1});
  pb.image_grid_thw = at::tensor(std::vector<int64_t>{1, g, g}, at::kLong).view({1, 3}).repeat({batch, 1});
  medr1::generate::SamplingParams sp;  // greedy, no EOS: every run makes exactly the asked tokens
  sp.eos_token_ids = {};

  // CPU: one run (prefills are expensive there): the prefill and the N decode steps after the first token are timed
  // inside generate(), which is what generate(N+1) - generate(1) measures. GPU: whole calls (header).
  double t_prefill = 0, t_decode = 0;
  if (dev.is_cpu()) {
    sp.max_new_tokens = new_tokens + 1;
    medr1::generate::GenerationTrace tr;
    tr.keep_steps = false;
    (void)medr1::generate::generate(model, pb, sp, &tr);
    t_prefill = tr.prefill_s;
    t_decode = std::max(1e-9, tr.decode_s);
  } else {
    auto wall = [&](int64_t n) {
      sp.max_new_tokens = n;
      const auto t0 = std::chrono::steady_clock::now();
      (void)medr1::generate::generate(model, pb, sp);
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    (void)wall(2);  // warm-up: CUDA context, cuBLAS handles, the caching allocator's blocks
    t_prefill = wall(1);
    t_decode = std::max(1e-9, wall(new_tokens + 1) - t_prefill);
  }
  const double prefill_tok_s = static_cast<double>(batch * S) / t_prefill;
  const double decode_tok_s = static_cast<double>(batch * new_tokens) / t_decode;

  // Decode ceiling: every step streams the decoder weights and the (tied) lm_head once.
  double weight_bytes = 0, text_params = 0, vis_params = 0;
  for (const auto& p : model->model->named_parameters()) {
    weight_bytes += static_cast<double>(p.value().numel() * p.value().element_size());
    if (p.key().find("embed_tokens") == std::string::npos) text_params += static_cast<double>(p.value().numel());
  }
  for (const auto& p : model->visual->parameters()) vis_params += static_cast<double>(p.numel());
  // Read over a buffer the size of the weights a step streams: a fixed 512 MiB fitted in this VM's 480 MiB L3 and
  // put the "bound" below what decode reached.
  const double bw = dev.is_cpu() ? medr1::bench::read_bandwidth(static_cast<int64_t>(weight_bytes)) : NAN;
  const double decode_stream_bound = static_cast<double>(batch) * bw / weight_bytes;
  // Prefill ceiling: 2 FLOP per weight per token (decoder) and per patch (vision), at the matmul rate.
  const double prefill_flops = 2.0 * text_params * static_cast<double>(batch * S) +
                               2.0 * vis_params * static_cast<double>(batch * P) +
                               2.0 * static_cast<double>(cfg.vocab_size * cfg.hidden_size * batch);
  const medr1::bench::MatmulCeiling ceil =
      dev.is_cpu() ? medr1::bench::matmul_ceiling(std::min<int64_t>(batch * S, 2048), cfg.hidden_size,
                                                  cfg.intermediate_size, dt)
                   : medr1::bench::MatmulCeiling{NAN, ""};
  const double mm = ceil.flops_per_s;
  // Compute bound of decode: per step and row, 2 FLOP per decoder weight and lm_head weight, and q.k + p.v over the
  // cache (on average S + N/2 positions, every head).
  const double step_flops_per_row =
      2.0 * (text_params + static_cast<double>(cfg.vocab_size * cfg.hidden_size)) +
      4.0 * static_cast<double>(cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim()) *
          (static_cast<double>(S) + static_cast<double>(new_tokens) / 2.0);
  const double decode_compute_bound = mm / step_flops_per_row;
  const double decode_bound = std::min(decode_stream_bound, decode_compute_bound);
  const double prefill_flops_s = prefill_flops / t_prefill;
  auto num = [](double v) {  // JSON number, or null for a ceiling not measured on this device
    if (!std::isfinite(v)) return std::string("null");
    char b[64];
    std::snprintf(b, sizeof b, "%.3f", v);
    return std::string(b);
  };
  std::printf(
      "{\"batch\": %lld, \"dtype\": \"%s\", \"device\": \"%s\", \"layers\": %lld, \"vision_depth\": %lld, "
      "\"threads\": %d, \"prompt_tokens\": %lld, \"new_tokens\": %lld, \"prefill_tok_s\": %.3f, "
      "\"decode_tok_s\": %.3f, \"weight_bytes\": %.0f, \"read_bw_gb_s\": %s, \"decode_stream_bound_tok_s\": %s, "
      "\"decode_compute_bound_tok_s\": %s, \"decode_bound_tok_s\": %s, \"decode_vs_bound\": %s, "
      "\"prefill_gflop_s\": %.3f, \"matmul_gflop_s\": %s, \"matmul_gemm\": \"%s\", \"prefill_vs_matmul\": %s}\n",
      static_cast<long long>(batch), dtype.c_str(), dev.str().c_str(), static_cast<long long>(layers),
      static_cast<long long>(vdepth), at::get_num_threads(), static_cast<long long>(S),
      static_cast<long long>(new_tokens), prefill_tok_s, decode_tok_s, weight_bytes, num(bw / 1e9).c_str(),
      num(decode_stream_bound).c_str(), num(decode_compute_bound).c_str(), num(decode_bound).c_str(),
      num(decode_tok_s / decode_bound).c_str(), prefill_flops_s / 1e9,
      num(mm / 1e9).c_str(), ceil.gemm, num(prefill_flops_s / mm).c_str());
  return 0;
}
