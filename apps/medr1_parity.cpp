// medr1-parity: runs a parity set (goldens made by transformers v4.49.0) through medr1 and prints per case and
// tensor the max error vs its pass mark. Exit status 1 when any case fails.
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <iostream>

#include "medr1/core/memory.h"
#include "medr1/core/device.h"
#include "medr1/generate/parity_generate.h"
#include "medr1/model/parity.h"
#include "medr1/model/weight_loader.h"

int main(int argc, char** argv) {
  medr1::keep_freed_memory();  // as medr1-train: large activations are not page-faulted in per call
  CLI::App app{"medr1-parity: compare medr1 with the transformers goldens of a parity set"};
  std::string set_dir, dtype = "fp32", device = "cpu";
  int threads = 0;
  std::vector<std::string> cases;
  app.add_option("--set", set_dir, "parity set folder (goldens.json, goldens.safetensors, ...)")->required();
  app.add_option("--dtype", dtype, "fp32 | bf16 (bf16: errors reported without pass marks) | fp64 (debug)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp64"}));
  app.add_option("--device", device,
                 "cpu | cuda[:N] (CUDA builds): where the model runs; same goldens and pass marks (fp32 on CUDA "
                 "runs without TF32, LibTorch's default)")
      ->capture_default_str();
  std::string attn = "eager";
  app.add_option("--attn-implementation,--attn_implementation", attn,
                 "eager (transformers' math, what the goldens were made with) | sdpa | flash_attention_2 | auto")
      ->capture_default_str();
  app.add_option("--threads", threads, "intra-op threads (0 = LibTorch default)");
  app.add_option("--case", cases, "run only these cases");
  CLI11_PARSE(app, argc, argv);
  try {
    if (threads > 0) at::set_num_threads(threads);
    medr1::generate::register_parity_generate();  // generate cases run through the generation engine
    medr1::model::ParityOptions opt;
    opt.set_dir = set_dir;
    opt.dtype = medr1::model::dtype_from_name(dtype);
    opt.only_cases = cases;
    opt.device = medr1::resolve_device(device);
    opt.attn = medr1::model::parse_attn_implementation(attn);
    auto rep = medr1::model::run_parity_set(opt);
    std::cout << medr1::model::format_report(rep);
    return rep.ok() ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "medr1-parity: " << e.what() << "\n";
    return 2;
  }
}
