// medr1-infer: batched Med-R1-style inference (greedy by default, like Med-R1's eval scripts) over a prompt file,
// writing resumable JSONL. Thin: flags -> medr1::infer::run_inference (src/infer/infer.cpp).
#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>

#include "medr1/core/memory.h"
#include "medr1/infer/infer.h"

int main(int argc, char** argv) {
  medr1::keep_freed_memory();  // as medr1-train: large activations are not page-faulted in per call
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit (ulimit -f) fails the write (EFBIG, reported), not the process
  CLI::App app{"medr1-infer: run a Qwen2-VL / Qwen2.5-VL checkpoint over a Med-R1 prompt file"};
  medr1::infer::InferOptions o;
  o.input = "data/demo/test.json";
  o.dataset_root = "data/demo";
  o.model_dir = "tests/data/qwen2vl-tiny";
  o.output = "infer_out.jsonl";
  int64_t max_new = 256, top_k = 50;
  double temperature = 1.0, top_p = 1.0, rep = 1.0;
  app.add_option("--input", o.input, "prompt file: JSON array or JSONL of {image, problem, solution?}")
      ->capture_default_str();
  app.add_option("--output", o.output, "output JSONL (re-running resumes it)")->capture_default_str();
  app.add_option("--dataset-root", o.dataset_root, "folder the image paths are relative to")->capture_default_str();
  app.add_option("--model", o.model_dir, "HF checkpoint folder")->capture_default_str();
  app.add_option("--tokenizer", o.tokenizer_dir,
                 "folder with tokenizer.json (default: --model, else <model>/../tokenizer/<qwen2vl|qwen2_5vl>)");
  app.add_option("--template", o.template_name, "think | nothink | zeroshot | custom")
      ->check(CLI::IsMember({"think", "nothink", "zeroshot", "custom"}))
      ->capture_default_str();
  app.add_option("--custom-template", o.custom_template, "prompt with {Question} (with --template custom)");
  app.add_option("--batch-size", o.batch_size, "prompts per generate call")->capture_default_str();
  auto* mnt = app.add_option("--max-new-tokens", max_new, "new tokens per answer")->capture_default_str();
  app.add_option("--max-pixels", o.max_pixels, "image processor max_pixels")->capture_default_str();
  app.add_option("--min-pixels", o.min_pixels, "image processor min_pixels")->capture_default_str();
  app.add_option("--dtype", o.dtype, "fp32 | bf16")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
  app.add_option("--device", o.device, "cpu | cuda[:N] (CUDA builds only)")->capture_default_str();
  app.add_option("--attn-implementation,--attn_implementation", o.attn_implementation,
                 "auto | eager | sdpa | flash_attention_2 (auto: sdpa, transformers 4.49's default)")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "intra-op threads (0 = hardware cores)")->capture_default_str();
  app.add_flag("--do-sample", o.do_sample, "sample instead of greedy");
  auto* temp = app.add_option("--temperature", temperature, "sampling temperature (default: generation_config)");
  auto* tk = app.add_option("--top-k", top_k, "top-k, 0 = off (default: generation_config)");
  auto* tp = app.add_option("--top-p", top_p, "top-p (default: generation_config)");
  auto* rp = app.add_option("--repetition-penalty", rep, "repetition penalty (default: generation_config)");
  app.add_option("--seed", o.seed, "sampling seed")->capture_default_str();
  bool quiet = false;
  app.add_flag("--quiet", quiet, "no progress lines on stderr");
  CLI11_PARSE(app, argc, argv);
  if (mnt->count()) o.max_new_tokens = max_new;
  if (temp->count()) o.temperature = temperature;
  if (tk->count()) o.top_k = top_k;
  if (tp->count()) o.top_p = top_p;
  if (rp->count()) o.repetition_penalty = rep;
  o.progress = !quiet;
  try {
    const auto s = medr1::infer::run_inference(o);
    std::cerr << "medr1-infer: " << s.written << " written (" << s.errors << " errors), " << s.skipped
              << " already done, " << s.total << " total; " << s.new_tokens << " new tokens in " << s.seconds
              << " s -> " << o.output << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "medr1-infer: " << e.what() << "\n";
    return 2;
  }
}
