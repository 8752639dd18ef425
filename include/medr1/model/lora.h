// LoRA adapters on the language model's projections, with PEFT's semantics and file format (peft 0.14
// `LoraConfig`, `lora.Linear`): an adapted projection computes
//   y = base(x) + lora_B(lora_A(dropout(x))) * scaling,   scaling = lora_alpha / r (rsLoRA: / sqrt(r)),
// lora_A [r, in] ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), lora_B [out, r] = 0, so a fresh
// adapter leaves the model unchanged. The adapter parameters are registered on the projection they adapt, so
// their names are PEFT's in-memory names without the adapter name (`model.layers.0.self_attn.q_proj.lora_A.weight`);
// saved files use PEFT's keys (`base_model.model.` + that name). Targets: the decoder's q/k/v/o and gate/up/down
// projections; the vision tower is never adapted (verl / EasyR1 exclude it too), which the adapter_config.json's
// target_modules regex states for PEFT. Letters: r = rank, in/out = the projection's features.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "medr1/io/peft_adapter.h"

namespace medr1::model {

class Qwen2VLForConditionalGenerationImpl;

struct LoraConfig {
  int64_t r = 16;             // TRL ModelConfig lora_r
  double lora_alpha = 32;     // lora_alpha
  double lora_dropout = 0.05; // lora_dropout
  bool use_rslora = false;    // scaling = lora_alpha / sqrt(r)
  // Projection names (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj) or "all-linear"; empty = all seven.
  std::vector<std::string> target_modules;
  double scaling() const;
};

// The seven decoder projections LoRA can adapt, in module order.
const std::vector<std::string>& lora_projection_names();
// target_modules -> the projection names to adapt (validated: r >= 1, alpha > 0, dropout in [0, 1), known names;
// errors name the field and value).
std::vector<std::string> resolve_lora_targets(const LoraConfig& cfg);

// One adapted projection. lora_A / lora_B are children of the base Linear (see above); `enabled` is shared by
// every adapter of one LoraSet (false = the base model, e.g. the GRPO reference policy).
struct LoraAdapter {
  torch::nn::Linear lora_A{nullptr}, lora_B{nullptr};
  double scaling = 1.0, dropout = 0.0;
  std::shared_ptr<bool> enabled;
  // y + lora_B(lora_A(dropout(x))) * scaling (dropout only while lora_A is training), x cast to the adapter's
  // dtype and the sum returned in y's dtype, as PEFT; y unchanged when disabled. x [.., in], y [.., out].
  at::Tensor apply(const at::Tensor& y, const at::Tensor& x) const;
};
using LoraAdapterPtr = std::shared_ptr<LoraAdapter>;

// The adapters of one model. Created by inject_lora (fresh: lora_A random from `seed`, lora_B zero) or
// load_lora_adapter (from a PEFT folder).
class LoraSet {
 public:
  LoraConfig config;
  std::vector<std::string> targets;                             // resolved projection names
  std::vector<std::pair<std::string, LoraAdapterPtr>> adapters;  // module name -> adapter, model order
  std::shared_ptr<bool> enabled = std::make_shared<bool>(true);

  // RAII: adapters off for the guard's life (the base model: no copy of the weights).
  class Disabled {
   public:
    explicit Disabled(const LoraSet& s) : flag_(s.enabled), was_(*s.enabled) { *flag_ = false; }
    ~Disabled() { *flag_ = was_; }
    Disabled(const Disabled&) = delete;
    Disabled& operator=(const Disabled&) = delete;

   private:
    std::shared_ptr<bool> flag_;
    bool was_;
  };

  // adapter_config.json as PEFT 0.14 writes it (task_type CAUSAL_LM, target_modules as a regex over the decoder).
  nlohmann::json peft_config(const std::string& base_model_name_or_path) const;
  // Writes adapter_config.json + adapter_model.safetensors (the adapters' own dtype) into `dir`.
  void save(const std::string& dir, const std::string& base_model_name_or_path) const;
  // Copies `dir`'s adapter_model.safetensors into the adapters (every adapter must be present with its shape;
  // unknown keys are errors naming the file and key).
  void load_weights(const std::string& dir);
};

// True for an adapter parameter's name (".lora_A." / ".lora_B." in it).
bool is_lora_param(const std::string& param_name);

// The PEFT module-name regex of `targets` (decoder layers only, so the vision tower is excluded), e.g.
// "model\.layers\.\d+\.(self_attn\.(q_proj|v_proj)|mlp\.(gate_proj))".
std::string lora_target_regex(const std::vector<std::string>& targets);

// Adds fresh adapters to `m`'s decoder projections (parameters in the model's dtype and device).
std::shared_ptr<LoraSet> inject_lora(Qwen2VLForConditionalGenerationImpl& m, const LoraConfig& cfg, uint64_t seed);

// Reads `dir`/adapter_config.json (PEFT LoRA; DoRA, bias, modules_to_save, rank/alpha patterns and targets
// outside the decoder projections are refused naming the field). Returns the config and the base model path.
std::pair<LoraConfig, std::string> read_lora_adapter_config(const std::string& dir);
// inject_lora with `dir`'s config, then its weights.
std::shared_ptr<LoraSet> load_lora_adapter(Qwen2VLForConditionalGenerationImpl& m, const std::string& dir);

// Merges every adapter into its base weight (PEFT merge_and_unload: W += (B @ A) * scaling, computed in fp32)
// and removes the adapters from the model: afterwards it is a plain model whose checkpoint transformers loads.
void merge_and_unload(Qwen2VLForConditionalGenerationImpl& m, LoraSet& set);


}  // namespace medr1::model
