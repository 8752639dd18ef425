// medr1-merge-adapter: a PEFT LoRA adapter folder (what `medr1-train --use_peft true` saves) merged into its base
// model, written as a plain Hugging Face checkpoint (config.json, safetensors, tokenizer / processor files) that
// transformers loads without PEFT. PEFT's merge_and_unload: W += (lora_B @ lora_A) * scaling, in fp32.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>

#include "medr1/core/logging.h"
#include "medr1/io/checkpoint.h"
#include "medr1/model/lora.h"
#include "medr1/model/weight_loader.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  CLI::App app{"medr1-merge-adapter: LoRA adapter + base model -> merged Hugging Face checkpoint"};
  std::string adapter, base, output, dtype;
  app.add_option("--adapter", adapter, "PEFT adapter folder (adapter_config.json + adapter_model.safetensors)")
      ->required();
  app.add_option("--output", output, "folder for the merged checkpoint (must not exist or be empty)")->required();
  app.add_option("--base", base, "base model folder (default: the adapter's base_model_name_or_path)");
  app.add_option("--dtype", dtype, "float32 | bfloat16 | float16 (default: the base config's torch_dtype)");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto [lcfg, base_in_config] = medr1::model::read_lora_adapter_config(adapter);
    if (base.empty()) base = base_in_config;
    if (base.empty()) throw std::runtime_error(adapter + "/adapter_config.json names no base_model_name_or_path: pass --base");
    if (!fs::exists(fs::path(base) / "config.json"))
      throw std::runtime_error("base model '" + base + "': no config.json (pass --base)");
    if (fs::exists(output) && !(fs::is_directory(output) && fs::is_empty(output)))
      throw std::runtime_error(output + ": exists and is not empty (refusing to overwrite)");
    std::optional<at::ScalarType> dt;
    if (!dtype.empty()) dt = medr1::model::dtype_from_name(dtype);
    auto model = medr1::model::load_qwen2_vl(base, dt);
    auto set = medr1::model::load_lora_adapter(*model, adapter);
    const int64_t n_adapters = static_cast<int64_t>(set->adapters.size());
    medr1::model::merge_and_unload(*model, *set);
    medr1::model::save_qwen2_vl(model, output);
    medr1::io::copy_hf_side_files(base, output);
    std::cout << "merged " << n_adapters << " LoRA adapters (r " << lcfg.r << ", alpha " << lcfg.lora_alpha
              << ") of " << adapter << " into " << base << " -> " << output << "\n";
  } catch (const std::exception& e) {
    std::cerr << "medr1-merge-adapter: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
