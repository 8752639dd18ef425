// medr1-eval: OmniMedVQA evaluation of a Qwen2-VL / Qwen2.5-VL checkpoint per modality / question
// type, think / no-think, clean and under FGSM / PGD (Med-R1 test_qwen2*_vqa*.py scoring, AdvMed-R1
// batch_eval_adversarial.py layout). Thin: parse flags, then eval::run_evaluation.
// --nproc-per-node N relaunches N data-parallel workers (torchrun style; or launch with
// RANK/WORLD_SIZE set).
#include <ATen/Parallel.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <chrono>
#include <exception>
#include <optional>

#include "medr1/core/memory.h"
#include "medr1/core/error.h"
#include "medr1/core/logging.h"
#include "medr1/dist/launch_env.h"
#include "medr1/dist/launcher.h"
#include "medr1/dist/process_group.h"
#include "medr1/eval/evaluate.h"

namespace {
// "0.03", "8/255".
double parse_fraction(const std::string& s, const char* flag) {
  try {
    const auto slash = s.find('/');
    if (slash == std::string::npos) return std::stod(s);
    return std::stod(s.substr(0, slash)) / std::stod(s.substr(slash + 1));
  } catch (const std::exception&) {
    medr1::fail(flag, " '", s, "': expected a number or a fraction like 8/255");
  }
}
}  // namespace

int main(int argc, char** argv) {
  medr1::keep_freed_memory();  // as medr1-train: large activations are not page-faulted in per call
  std::signal(SIGXFSZ, SIG_IGN);  // a file-size limit (ulimit -f) fails the write (EFBIG, reported), not the process
  medr1::init_logging();
  CLI::App app{
      "medr1-eval: OmniMedVQA evaluation (clean / FGSM / PGD, think / no-think) with reports"};
  medr1::eval::EvalOptions o;
  std::string split_file, splits_dir, evaluation_type = "modality", epsilon = "8/255",
                                      alpha = "2/255";
  std::string attack_loss = "answer";
  std::vector<std::string> attacks = {"clean"}, attack_types, names;
  std::string output_path;
  int threads = 0, nproc = 0, nnodes = 1, node_rank = 0, master_port = 29500;
  std::string master_addr = "127.0.0.1";
  bool no_quantize = false, no_resume = false, no_progress = false;
  app.add_option("--model,--model_path,--model-path", o.model_dir,
                 "checkpoint folder (config.json, safetensors)")
      ->required();
  app.add_option("--tokenizer", o.tokenizer_dir, "folder with tokenizer.json (default: --model)");
  app.add_option("--split,--test_data,--test-data,--prompt_path", split_file,
                 "one split / prompt file (Med-R1 JSON array or JSONL)");
  app.add_option("--splits-dir,--splits_dir", splits_dir,
                 "Med-R1 Splits/ folder: evaluates every <type>/test/*.json");
  app.add_option("--evaluation-type,--evaluation_type", evaluation_type,
                 "modality | question_type | both (with --splits-dir)");
  app.add_option("--modalities,--names", names,
                 "only these split names (file name minus _test.json)");
  app.add_option("--dataset-root,--dataset_root", o.dataset_root,
                 "folder the records' image paths are relative to");
  auto* out_dir = app.add_option("--output-dir,--output_dir", o.output_dir, "results folder");
  app.add_option(
      "--output_path,--output-path", output_path,
      "AdvMed-R1 eval_qwen2_5vl_adversarial.py: also write the one split's result JSON here "
      "(results folder: --output-dir, else <output_path minus .json>)");
  app.add_option("--attacks", attacks, "any of clean fgsm pgd");
  auto* attack_type = app.add_option("--attack_type,--attack-type", attack_types,
                                     "AdvMed-R1: clean | fgsm | pgd (= --attacks)");
  app.add_option("--template", o.templates,
                 "think | nothink | zeroshot | custom (several = several columns)");
  app.add_option("--prompt-template", o.custom_template, "custom template text with {Question}");
  app.add_option("--max-new-tokens,--max_new_tokens", o.max_new_tokens,
                 "new tokens per answer (Med-R1: 256)");
  app.add_option("--batch-size,--batch_size", o.batch_size, "prompts per generation batch");
  app.add_option("--dtype", o.dtype, "float32 | bfloat16 | float16 (default: config torch_dtype)");
  app.add_option("--attn-implementation,--attn_implementation", o.attn_implementation,
                 "auto | eager | sdpa | flash_attention_2 (auto: sdpa, transformers 4.49's default)");
  app.add_option("--threads", threads, "intra-op threads (0 = LibTorch default)");
  app.add_option("--max-pixels,--max_pixels", o.max_pixels,
                 "image processor max_pixels (Med-R1: 401408)");
  app.add_option("--min-pixels,--min_pixels", o.min_pixels,
                 "image processor min_pixels (Med-R1: 3136)");
  app.add_option("--epsilon", epsilon, "L-inf radius in [0,1] pixel units (default 8/255)");
  app.add_option("--pgd-alpha,--pgd_alpha", alpha, "PGD step (default 2/255)");
  app.add_option("--pgd-iters,--pgd_iters", o.attack.iters, "PGD steps");
  app.add_flag("--pgd-random-start", o.attack.random_start,
               "PGD starts at a random point of the eps-ball");
  app.add_option("--attack-loss,--attack_loss", attack_loss,
                 "answer (CE of the ground-truth answer tokens) | first-token (AdvMed-R1)");
  app.add_option("--seed", o.attack.seed, "seed of the PGD random start");
  app.add_flag("--no-quantize", no_quantize,
               "re-evaluate the float adversarial image (default: rounded to uint8)");
  app.add_option("--save-images,--save_sample_images", o.save_images,
                 "save clean/adversarial/difference PNGs of the first N records");
  app.add_option("--limit", o.limit, "only the first N records of each split");
  app.add_flag("--no-resume", no_resume,
               "start every split over (default: resume from items/*.jsonl)");
  app.add_flag("--no-progress", no_progress, "no progress bar");
  app.add_option("--nproc-per-node,--nproc_per_node", nproc,
                 "launch N local data-parallel workers");
  app.add_option("--nnodes", nnodes, "number of nodes");
  app.add_option("--node-rank,--node_rank", node_rank, "this node's index");
  app.add_option("--master-addr,--master_addr", master_addr, "rank 0 host");
  app.add_option("--master-port,--master_port", master_port, "rank 0 port");
  CLI11_PARSE(app, argc, argv);
  try {
    if (nproc > 0)
      return medr1::dist::launch_local(nproc, nnodes, node_rank, master_addr, master_port, argc,
                                       argv);
    if (threads > 0) at::set_num_threads(threads);
    o.attack.epsilon = parse_fraction(epsilon, "--epsilon");
    o.attack.alpha = parse_fraction(alpha, "--pgd-alpha");
    o.attack.loss = medr1::eval::parse_attack_loss(attack_loss);
    if (attack_type->count()) attacks = attack_types;
    o.attacks.clear();
    for (const auto& a : attacks) o.attacks.push_back(medr1::eval::parse_attack_type(a));
    if (!out_dir->count()) {
      MEDR1_CHECK(!output_path.empty(), "--output-dir (or AdvMed-R1's --output_path) is required");
      o.output_dir = medr1::eval::output_dir_for_output_path(output_path);
    }
    o.quantize_adversarial = !no_quantize;
    o.resume = !no_resume;
    o.progress = !no_progress;
    o.splits = medr1::eval::splits_from_args(split_file, splits_dir, evaluation_type, names);
    const medr1::dist::LaunchEnv env = medr1::dist::read_launch_env();
    std::optional<medr1::dist::ProcessGroup> pg;
    if (env.is_distributed()) {
      medr1::dist::ProcessGroupOptions po;
      po.timeout = std::chrono::hours(
          24);  // a rank may spend hours on its shard of a split between barriers
      pg.emplace(env, po);
    }
    const auto t0 = std::chrono::steady_clock::now();
    medr1::eval::EvalSummary s = medr1::eval::run_evaluation(o, pg ? &*pg : nullptr);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (env.is_main()) {
      for (const auto& setting : s.report.settings())
        if (auto acc = s.report.micro_accuracy(setting))
          spdlog::info("{}: {:.2f}% (micro over splits)", setting, *acc);
      if (!output_path.empty()) medr1::eval::write_single_result(s.report, output_path);
      spdlog::info("done in {:.1f} s; results in {}", secs, o.output_dir);
    }
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
