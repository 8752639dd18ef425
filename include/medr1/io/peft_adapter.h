// PEFT adapter folders on disk (what peft 0.14's save_pretrained writes and
// PeftModel.from_pretrained reads): adapter_config.json next to adapter_model.safetensors whose
// keys carry the "base_model.model." prefix. File format only; the adapters' semantics are in
// model/lora.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace medr1::io {

inline constexpr const char* kPeftAdapterConfig = "adapter_config.json";
inline constexpr const char* kPeftAdapterWeights = "adapter_model.safetensors";

// PEFT's file key of an adapter parameter: "model.layers.0.self_attn.q_proj.lora_A.weight" ->
// "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".
std::string peft_key(const std::string& param_name);

// True when `dir` holds an adapter_config.json.
bool is_peft_adapter_dir(const std::string& dir);

// Writes a PEFT adapter folder: adapter_config.json and adapter_model.safetensors holding `tensors`
// under peft_key names (each file atomically). `tensors` are named as the model's parameters.
void write_peft_adapter(const std::string& dir,
                        const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                        const nlohmann::json& adapter_config);

}  // namespace medr1::io
