// Name-walk checkpoint loader / saver for the Qwen2-VL family (safetensors, single file or sharded).
#include "medr1/model/weight_loader.h"

#include "medr1/model/lora.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "medr1/core/error.h"
#include "medr1/io/safetensors.h"

namespace medr1::model {

namespace fs = std::filesystem;

at::ScalarType dtype_from_name(const std::string& name) {
  if (name == "float32" || name == "fp32" || name == "float") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "fp16" || name == "half") return at::kHalf;
  if (name == "float64" || name == "fp64" || name == "double") return at::kDouble;
  fail("unknown dtype \"", name, "\" (expected float32, bfloat16, float16 or float64)");
}

void load_state_by_name(torch::nn::Module& module, const std::map<std::string, at::Tensor>& tensors,
                        const std::set<std::string>& ignorable, const std::string& source) {
  std::vector<std::string> missing, bad_shape, bad_dtype, unexpected;
  std::set<std::string> used;
  at::NoGradGuard no_grad;
  auto walk = [&](const std::string& name, at::Tensor& dst) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      missing.push_back(name);
      return;
    }
    used.insert(name);
    const at::Tensor& src = it->second;
    if (!at::isFloatingType(src.scalar_type())) {
      std::ostringstream os;
      os << name << " (dtype " << src.scalar_type() << ", expected a float type)";
      bad_dtype.push_back(os.str());
      return;
    }
    if (src.sizes() != dst.sizes()) {
      std::ostringstream os;
      os << name << " (checkpoint " << src.sizes() << ", model " << dst.sizes() << ")";
      bad_shape.push_back(os.str());
      return;
    }
    dst.copy_(src);  // converts to the parameter's dtype/device
  };
  for (auto& p : module.named_parameters(/*recurse=*/true)) walk(p.key(), p.value());
  for (auto& b : module.named_buffers(/*recurse=*/true)) {
    if (tensors.count(b.key())) walk(b.key(), b.value());
  }
  for (const auto& kv : tensors)
    if (!used.count(kv.first) && !ignorable.count(kv.first)) unexpected.push_back(kv.first);
  if (missing.empty() && bad_shape.empty() && bad_dtype.empty() && unexpected.empty()) return;
  std::ostringstream os;
  os << source << ": checkpoint does not match the model";
  auto list = [&](const char* what, const std::vector<std::string>& v) {
    if (v.empty()) return;
    os << "; " << what << " (" << v.size() << "):";
    for (size_t i = 0; i < v.size() && i < 20; ++i) os << " " << v[i];
    if (v.size() > 20) os << " ...";
  };
  list("missing tensors", missing);
  list("wrong shape", bad_shape);
  list("wrong dtype", bad_dtype);
  list("unexpected tensors", unexpected);
  fail(os.str());
}

void load_qwen2_vl_weights(Qwen2VLForConditionalGeneration& model, const std::string& path) {
  std::map<std::string, at::Tensor> tensors = io::load_safetensors(path);
  std::set<std::string> ignorable;
  if (model->config().tie_word_embeddings) ignorable.insert("lm_head.weight");
  load_state_by_name(*model, tensors, ignorable, path);
}

Qwen2VLForConditionalGeneration load_qwen2_vl(const std::string& dir, std::optional<at::ScalarType> dtype) {
  if (io::is_peft_adapter_dir(dir) && !fs::exists(fs::path(dir) / "config.json")) {
    // A PEFT adapter folder (what a LoRA run saves): its base model with the adapter merged in, as
    // transformers' from_pretrained does with PEFT installed.
    const auto [lcfg, base_name] = read_lora_adapter_config(dir);
    MEDR1_CHECK(!base_name.empty(), dir, "/adapter_config.json: base_model_name_or_path: empty (which model does "
                "the adapter belong to?)");
    fs::path base = base_name;
    if (!fs::exists(base / "config.json") && base.is_relative() && fs::exists(fs::path(dir) / base / "config.json"))
      base = fs::path(dir) / base;
    MEDR1_CHECK(fs::exists(base / "config.json"), dir, "/adapter_config.json: base_model_name_or_path '", base_name,
                "': no config.json there (download the base model, or edit the path)");
    Qwen2VLForConditionalGeneration model = load_qwen2_vl(base.string(), dtype);
    auto set = load_lora_adapter(*model, dir);
    merge_and_unload(*model, *set);
    model->eval();
    return model;
  }
  Qwen2VLConfig cfg = load_qwen2_vl_config(dir);
  Qwen2VLForConditionalGeneration model(cfg);
  model->to(dtype ? *dtype : dtype_from_name(cfg.torch_dtype));
  load_qwen2_vl_weights(model, dir);
  model->eval();
  return model;
}

void init_weights_hf(torch::nn::Module& module, double std, uint64_t seed) {
  at::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& item : module.named_parameters()) {
    const std::string& name = item.key();
    at::Tensor& p = item.value();
    const bool is_norm =
        name.find("norm") != std::string::npos || name.find("ln_q") != std::string::npos;
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0)
      p.zero_();
    else if (is_norm)
      p.fill_(1.0);
    else
      p.normal_(0.0, std, gen);
  }
}

std::vector<std::pair<std::string, at::Tensor>> named_weights(torch::nn::Module& module) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& p : module.named_parameters(true)) out.emplace_back(p.key(), p.value().detach());
  return out;
}

void save_qwen2_vl(Qwen2VLForConditionalGeneration& model, const std::string& dir, uint64_t max_shard_bytes) {
  fs::create_directories(dir);
  Qwen2VLConfig cfg = model->config();
  const auto dt = model->dtype();
  cfg.torch_dtype = dt == at::kBFloat16 ? "bfloat16" : dt == at::kHalf ? "float16" : "float32";
  {
    const std::string p = (fs::path(dir) / "config.json").string();
    std::ofstream f(p);
    MEDR1_CHECK(f.good(), p, ": cannot open for writing");
    f << to_json(cfg).dump(2) << "\n";
    MEDR1_CHECK(f.good(), p, ": write failed");
  }
  io::save_safetensors_sharded(dir, named_weights(*model), max_shard_bytes);
}

}  // namespace medr1::model
