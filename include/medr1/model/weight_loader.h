// Checkpoint loading and saving as a name walk over named_parameters(): every parameter must find a tensor of
// the same name and shape in the checkpoint (float dtypes only, converted to the model's dtype); missing,
// unexpected, mis-shaped and non-float tensors are all reported in one error naming each tensor, as
// transformers' from_pretrained reports them. `lm_head.weight` is optional (and ignored) when tied.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "medr1/model/qwen2_vl.h"

namespace medr1::model {

// Copies `tensors` into `module`'s parameters (and buffers) by name. `ignorable` names may be present in the
// checkpoint without a parameter; `source` names the checkpoint in errors. Parameters keep their dtype/device.
void load_state_by_name(torch::nn::Module& module, const std::map<std::string, at::Tensor>& tensors,
                        const std::set<std::string>& ignorable, const std::string& source);

// "float32" / "bfloat16" / "float16" -> dtype; errors name the value.
at::ScalarType dtype_from_name(const std::string& name);

// Builds the model from `dir`/config.json and loads `dir`'s weights (model.safetensors or a sharded index).
// dtype: the dtype to run in (default: config torch_dtype).
Qwen2VLForConditionalGeneration load_qwen2_vl(const std::string& dir,
                                              std::optional<at::ScalarType> dtype = std::nullopt);
// Loads weights from `path` (file or folder) into an existing model.
void load_qwen2_vl_weights(Qwen2VLForConditionalGeneration& model, const std::string& path);

// transformers' _init_weights of Qwen2-VL in place: Linear / Embedding / Conv weights ~ normal(0, std), biases 0,
// (RMS/Layer)Norm weights 1, drawn from a CPU generator seeded with `seed` (a reproducible start from config.json).
void init_weights_hf(torch::nn::Module& module, double std, uint64_t seed);

// named_parameters() in registration order, detached (the names transformers expects).
std::vector<std::pair<std::string, at::Tensor>> named_weights(torch::nn::Module& module);
// Writes config.json and the weights (sharded above max_shard_bytes) into `dir`.
void save_qwen2_vl(Qwen2VLForConditionalGeneration& model, const std::string& dir,
                   uint64_t max_shard_bytes = 5ull * 1000 * 1000 * 1000);

}  // namespace medr1::model
