// medr1-bench-grpo: one GRPO step of a full-depth Qwen2-VL-2B-shaped model (random weights at the real config,
// written as an HF checkpoint by medr1's own writer) on one 384x384 image, through the trainer's own phases
// (rl/train_phases.h: set_up, generation_round, update, save_checkpoint_step). Prints the time of each phase
// (rollout: prefill + decode of G samples; reference log-probs; loss forward + backward; clipping + optimizer;
// checkpoint save) and the process's peak RSS after each, plus the memory accounting of LoRA vs full fine-tuning
// for 2B / 3B / 7B. The checkpoint is written by a child process, so its memory is not in the peak.
// With --peer (default: the project's .venv-peer python running tests/bench/peer/hf_grpo_step.py, Med-R1's step in
// transformers 4.49 + PEFT + torch AdamW) the same step runs next, on the same checkpoint, image, G and length, and
// a side-by-side table prints each phase's seconds and the ratio peer / medr1; then the matmul ceiling of the run's
// dtype measured in the same sitting, and the fraction of it the loss forward + backward reaches (model FLOPs:
// 2 x params x tokens forward, x3 with backward, +1 forward with activation checkpointing).
// --warm-steps W runs W whole steps first and times the next (the peer runs as many): the first step of a run pays
// for page-faulting the optimizer state in (full fine-tuning: ~6 GB of fp32 masters, gradients and moments).
// A benchmark, not a test: nothing is asserted.
//   medr1-bench-grpo --work /tmp/grpo2b [--use-peft 1] [--bf16 1] [--gradient-checkpointing 1] [--layers 28]
//                    [--peer ""  (none) | --peer "CMD"]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "ceilings.h"
#include "medr1/core/memory.h"
#include "medr1/io/checkpoint.h"
#include "medr1/model/weight_loader.h"
#include "medr1/rl/grpo_config.h"
#include "medr1/rl/train_phases.h"
#include "medr1/vision/image_io.h"
#include "medr1/vision/image_processor.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

double peak_rss_gb() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss in KiB on Linux
}

double current_rss_gb() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0 * 1024.0);
}

// The 2B-shaped checkpoint: config.json + bf16 safetensors (HF init: normal(0, 0.02)), the Qwen2-VL tokenizer and
// processor files. In a child process.
void write_model(const fs::path& dir, int64_t layers, int64_t vdepth) {
  if (fs::exists(dir / "model.safetensors.index.json") || fs::exists(dir / "model.safetensors")) return;
  const pid_t pid = fork();
  if (pid == 0) {
    try {
      auto cfg = medr1::bench::qwen2_vl_2b_config(layers, vdepth);
      cfg.torch_dtype = "bfloat16";
      medr1::model::Qwen2VLForConditionalGeneration m(cfg);
      medr1::model::init_weights_hf(*m, 0.02, 0);
      m->to(at::kBFloat16);
      medr1::model::save_qwen2_vl(m, dir.string());
      const fs::path tiny = fs::path(MEDR1_SOURCE_DIR) / "tests" / "data" / "qwen2vl-tiny";
      for (const char* f : {"preprocessor_config.json", "tokenizer_config.json", "chat_template.json",
                            "generation_config.json"})
        fs::copy_file(tiny / f, dir / f, fs::copy_options::overwrite_existing);
      fs::copy_file(fs::path(MEDR1_SOURCE_DIR) / "tests" / "data" / "tokenizer" / "qwen2vl" / "tokenizer.json",
                    dir / "tokenizer.json", fs::copy_options::overwrite_existing);
      _exit(0);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "writing the model failed: %s\n", e.what());
      _exit(1);
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("model writer failed");
}

constexpr const char* kProblem =
    "Which imaging modality is shown in this image? A)CT, B)MRI, C)X-Ray, D)Fundus Photography, E)Ultrasound";

// One record: a demo image resized to 384x384 (Pillow bicubic), Med-R1's problem format.
std::string write_data(const fs::path& dir) {
  const fs::path demo = fs::path(MEDR1_SOURCE_DIR) / "data" / "demo";
  medr1::vision::RgbImage img = medr1::vision::load_image_rgb((demo / "Images/Synthetic CT Phantom/ct_000.png").string());
  medr1::vision::write_png((dir / "ct_384.png").string(), medr1::vision::resize_bicubic(img, 384, 384));
  std::ofstream f(dir / "train.json");
  nlohmann::json rec = {{"image", "ct_384.png"}, {"problem", kProblem}, {"solution", "<answer> A </answer>"}};
  f << nlohmann::json::array({rec}).dump();
  return (dir / "train.json").string();
}

// The peer's JSON line (the last line of its stdout that starts with '{').
nlohmann::json run_peer(const std::string& cmd) {
  std::printf("peer: %s\n", cmd.c_str());
  std::fflush(stdout);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("cannot start the peer: " + cmd);
  std::string line, last;
  char buf[4096];
  while (std::fgets(buf, sizeof(buf), p)) {
    line.append(buf);
    if (!line.empty() && line.back() == '\n') {
      if (line[0] == '{') last = line;
      line.clear();
    }
  }
  if (!line.empty() && line[0] == '{') last = line;
  const int rc = pclose(p);
  if (rc != 0 || last.empty())
    throw std::runtime_error("the peer failed (exit status " + std::to_string(rc) + ", no JSON line): " + cmd);
  return nlohmann::json::parse(last);
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q.append("'\\''");
    } else {
      q.push_back(c);
    }
  }
  q.push_back('\'');
  return q;
}

}  // namespace

int main(int argc, char** argv) {
  medr1::keep_freed_memory();  // as medr1-train: large activations are not page-faulted in per call
  CLI::App app{"medr1-bench-grpo: one GRPO step of a full-depth Qwen2-VL-2B-shaped model, phase times + peak RSS"};
  std::string work = "/tmp/medr1-bench-grpo";
  int64_t layers = 28, vdepth = 32, G = 4, new_tokens = 64, r = 16;
  int threads = 0;
  bool use_peft = true, bf16 = true, ckpt = true, save = true;
  std::string peer = std::string(MEDR1_SOURCE_DIR) + "/.venv-peer/bin/python " + MEDR1_SOURCE_DIR +
                     "/tests/bench/peer/hf_grpo_step.py";
  app.add_option("--work", work, "folder for the model, data and run");
  app.add_option("--layers", layers, "decoder layers (2B: 28)");
  app.add_option("--vision-depth", vdepth, "vision blocks (2B: 32)");
  app.add_option("--num-generations", G, "G");
  app.add_option("--new-tokens", new_tokens, "completion tokens (min = max: EOS is suppressed by random weights "
                                             "only by chance, so the length is what it is)");
  app.add_option("--use-peft", use_peft, "LoRA (else full fine-tuning)");
  app.add_option("--lora-r", r, "LoRA rank");
  app.add_option("--bf16", bf16, "bf16 weights and compute");
  app.add_option("--gradient-checkpointing", ckpt, "activation checkpointing");
  app.add_option("--save", save, "time a checkpoint save");
  int64_t warm_steps = 0;
  app.add_option("--warm-steps", warm_steps,
                 "whole steps run before the timed one (first-step costs: optimizer state page-faulted in); the "
                 "peer runs as many")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--threads", threads, "intra-op threads (0 = default)");
  std::string optim = "adamw_torch";
  app.add_option("--optim", optim, "adamw_torch | adamw_torch_fused (HF names); the peer runs the same")
      ->check(CLI::IsMember({"adamw_torch", "adamw_torch_fused"}));
  std::string attn = "sdpa";
  app.add_option("--attn-implementation", attn,
                 "eager | sdpa (Med-R1 passes flash_attention_2, which is sdpa here); the peer runs the same");
  app.add_option("--peer", peer, "peer command run on the same step (empty: none)");
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) at::set_num_threads(threads);
  try {
    const fs::path root = work;
    const fs::path model_dir = root / ("model-" + std::to_string(layers) + "x" + std::to_string(vdepth));
    fs::create_directories(model_dir);
    auto t0 = Clock::now();
    write_model(model_dir, layers, vdepth);
    std::printf("model: %s (written or reused in %.1f s)\n", model_dir.c_str(), secs(t0));
    const std::string data = write_data(root);

    medr1::rl::GRPOConfig c;
    c.output_dir = (root / (use_peft ? "run-lora" : "run-full")).string();
    fs::remove_all(c.output_dir);
    c.model_name_or_path = model_dir.string();
    c.dataset_name = data;
    c.dataset_root = root.string();
    c.num_generations = G;
    c.per_device_train_batch_size = 1;
    c.gradient_accumulation_steps = 1;
    c.max_completion_length = new_tokens;
    c.max_steps = 1 + warm_steps;
    c.save_steps = 1000;
    c.bf16 = bf16;
    c.attn_implementation = attn;
    c.gradient_checkpointing = ckpt;
    c.use_peft = use_peft;
    c.optim = optim;
    c.lora_r = r;
    c.lora_alpha = 2.0 * static_cast<double>(r);
    c.report_to = {"none"};
    medr1::rl::TrainerHooks h;
    h.progress_bar = false;
    std::printf(
        "config: G %lld, %lld new tokens, %s, %s, gradient checkpointing %s, attention %s, %s, threads %d\n",
        static_cast<long long>(G), static_cast<long long>(new_tokens), bf16 ? "bf16" : "fp32",
        use_peft ? ("LoRA r " + std::to_string(r)).c_str() : "full fine-tuning", ckpt ? "on" : "off", attn.c_str(),
        optim.c_str(), at::get_num_threads());
    std::printf("%-34s %9s %14s %12s\n", "phase", "seconds", "peak RSS GiB", "RSS GiB");
    // The phases of the step, in medr1's words and the peer's JSON keys.
    const std::pair<const char*, const char*> phases[] = {{"rollout (prefill + decode, rewards)", "rollout"},
                                                          {"reference log-probs (adapters off)", "reference"},
                                                          {"loss forward + backward", "loss_fwd_bwd"},
                                                          {"clip + optimizer step", "optimizer"}};
    std::map<std::string, double> ours;
    auto row = [&ours](const char* name, double s) {
      ours[name] = s;
      std::printf("%-34s %9.1f %14.2f %12.2f\n", name, s, peak_rss_gb(), current_rss_gb());
      std::fflush(stdout);
    };
    t0 = Clock::now();
    auto s = medr1::rl::set_up(c, h);
    row("set-up (load policy, optimizer)", secs(t0));
    int64_t params = 0, trainable = 0;
    for (const auto& p : s->policy->parameters()) {
      params += p.numel();
      if (p.requires_grad()) trainable += p.numel();
    }
    for (int64_t w = 0; w < warm_steps; ++w) {
      t0 = Clock::now();
      medr1::rl::set_step_learning_rate(*s, w);
      std::vector<medr1::rl::MicroBatch> warm_round = medr1::rl::generation_round(*s, w);
      (void)medr1::rl::update(*s, warm_round, w);
      row(("warm-up step " + std::to_string(w + 1) + " (not in the table)").c_str(), secs(t0));
    }
    const int64_t step = warm_steps;  // the timed step
    medr1::rl::set_step_learning_rate(*s, step);
    t0 = Clock::now();
    std::vector<medr1::rl::MicroBatch> round = medr1::rl::generation_round(*s, step);
    const double round_s = secs(t0);
    double ref_s = 0, gen_tokens = 0, prompt_tokens = 0, completion_cols = 0;
    for (const auto& mb : round) {
      ref_s += mb.ref_s;
      gen_tokens += static_cast<double>(mb.r.generated_tokens);
      prompt_tokens = static_cast<double>(mb.r.prompt_ids.size(1));
      completion_cols = static_cast<double>(mb.r.completion_ids.size(1));
    }
    row(phases[0].first, round_s - ref_s);
    row(phases[1].first, ref_s);
    t0 = Clock::now();
    const medr1::rl::StepMetrics m = medr1::rl::update(*s, round, step);
    const double upd = secs(t0);
    row(phases[2].first, m.train_s);
    row(phases[3].first, upd - m.train_s);
    if (save) {
      t0 = Clock::now();
      const std::string dir = medr1::rl::save_checkpoint_step(*s);
      row(("checkpoint save (" + fs::path(dir).filename().string() + ")").c_str(), secs(t0));
    }
    std::printf("prompt %.0f tokens, %.0f generated tokens over G = %lld; loss %.4g, grad norm %.3g\n", prompt_tokens,
                gen_tokens, static_cast<long long>(G), m.loss, m.grad_norm);
    std::printf("parameters %.3f B, trainable %.2f M (%.3f%%); peak RSS %.2f GiB\n", static_cast<double>(params) / 1e9,
                static_cast<double>(trainable) / 1e6, 100.0 * static_cast<double>(trainable) / static_cast<double>(params),
                peak_rss_gb());
    // Accounting (bytes per parameter): bf16 run weights 2; full FT adds the bf16 reference 2, fp32 masters 4,
    // AdamW moments 8, fp32 grads 4 and bf16 grads 2 = 22 B/param; LoRA adds only the adapters' share.
    std::printf("memory accounting, weights + optimizer only (activations and buffers extra):\n");
    for (auto [name, n] : {std::pair<const char*, double>{"2B (Qwen2-VL-2B, 2.21 B)", 2.21e9},
                           std::pair<const char*, double>{"3B (Qwen2.5-VL-3B, 3.75 B)", 3.75e9},
                           std::pair<const char*, double>{"7B (Qwen2.5-VL-7B, 8.29 B)", 8.29e9}}) {
      if (!use_peft) {  // the adapters' share is only known from a LoRA run
        std::printf("  %-28s full fine-tuning %5.1f GB   (LoRA: run with --use-peft 1)\n", name, n * 22 / 1e9);
        continue;
      }
      const double lora_frac = static_cast<double>(trainable) / static_cast<double>(params);
      std::printf("  %-28s LoRA r %lld ~ %5.1f GB   full fine-tuning %5.1f GB\n", name, static_cast<long long>(r),
                  n * 2 / 1e9 + n * lora_frac * 20 / 1e9, n * 22 / 1e9);
    }
    // Model FLOPs of the loss forward: decoder weights over every prompt + completion position of the G rows,
    // the vocabulary head over the completion positions, the vision tower once per image (784 patches at
    // 384x384); attention scores left out. Backward: dX for every weight, dW only for trainable ones (LoRA: the
    // frozen weights' dW is not needed); activation checkpointing adds one forward.
    double dec = 0, vis = 0, head = 0;
    for (const auto& p : s->policy->named_parameters()) {
      const std::string& n = p.key();
      const double k = static_cast<double>(p.value().numel());
      if (n.rfind("visual.", 0) == 0) {
        vis += k;
      } else if (n.find("embed_tokens") != std::string::npos || n.rfind("lm_head", 0) == 0) {
        head = std::max(head, k);
      } else {
        dec += k;
      }
    }
    const double Gd = static_cast<double>(G);
    const double fwd = 2 * dec * Gd * (prompt_tokens + completion_cols) + 2 * head * Gd * completion_cols + 2 * vis * 784;
    const double loss_flops = fwd * ((use_peft ? 2.0 : 3.0) + (ckpt ? 1.0 : 0.0));
    const at::ScalarType mdt = bf16 ? at::kBFloat16 : at::kFloat;
    const auto mm = medr1::bench::matmul_ceiling(1024, 1536, 8960, mdt);
    const double peak = mm.flops_per_s;
    const double bw = medr1::bench::read_bandwidth(int64_t{1} << 30);
    std::printf("ceilings measured now: %s matmul [1024x1536]x[1536x8960] %.1f GFLOP/s (%s GEMM), read bandwidth "
                "%.1f GB/s\n",
                bf16 ? "bf16" : "fp32", peak / 1e9, mm.gemm, bw / 1e9);
    std::printf("loss forward + backward: %.1f GFLOP of model FLOPs in %.1f s = %.1f GFLOP/s, %.2f of the matmul "
                "ceiling\n",
                loss_flops / 1e9, m.train_s, loss_flops / m.train_s / 1e9, loss_flops / m.train_s / peak);
    std::printf("reference log-probs (one forward): %.1f GFLOP in %.1f s = %.2f of the matmul ceiling\n", fwd / 1e9,
                ref_s, ref_s > 0 ? fwd / ref_s / peak : 0.0);

    if (!peer.empty()) {
      std::string cmd = peer;
      cmd.append(" --model ").append(shell_quote(model_dir.string()));
      cmd.append(" --image ").append(shell_quote((root / "ct_384.png").string()));
      cmd.append(" --problem ").append(shell_quote(kProblem));
      cmd.append(" --num-generations ").append(std::to_string(G));
      cmd.append(" --new-tokens ").append(std::to_string(new_tokens));
      cmd.append(" --use-peft ").append(use_peft ? "1" : "0");
      cmd.append(" --lora-r ").append(std::to_string(r));
      cmd.append(" --bf16 ").append(bf16 ? "1" : "0");
      cmd.append(" --gradient-checkpointing ").append(ckpt ? "1" : "0");
      cmd.append(" --threads ").append(std::to_string(at::get_num_threads()));
      cmd.append(" --attn ").append(attn == "eager" ? "eager" : "sdpa");
      cmd.append(" --optim ").append(optim);
      cmd.append(" --warm-steps ").append(std::to_string(warm_steps));
      const nlohmann::json pj = run_peer(cmd);
      const nlohmann::json& ps = pj.at("seconds");
      std::printf("\nside by side, same checkpoint, image, G and length (%s; peer generated %d tokens, medr1 %.0f):\n",
                  pj.value("peer", std::string("peer")).c_str(), pj.value("generated_tokens", 0), gen_tokens);
      std::printf("%-36s %9s %9s %12s\n", "phase", "medr1 s", "peer s", "peer/medr1");
      double a = 0, b = 0;
      for (const auto& [ours_name, key] : phases) {
        const double x = ours[ours_name], y = ps.value(key, 0.0);
        a += x;
        b += y;
        std::printf("%-36s %9.2f %9.2f %11.2fx\n", ours_name, x, y, x > 0 ? y / x : 0.0);
      }
      std::printf("%-36s %9.2f %9.2f %11.2fx\n", "GRPO step (the four above)", a, b, a > 0 ? b / a : 0.0);
      std::printf("peak RSS: medr1 %.2f GiB, peer %.2f GiB\n", peak_rss_gb(), pj.value("peak_rss_gib", 0.0));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "medr1-bench-grpo: %s\n", e.what());
    return 1;
  }
  return 0;
}
