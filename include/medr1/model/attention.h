// Which attention math the model runs, as transformers' `attn_implementation`:
//   eager  transformers' eager math (scores in the activations' dtype, softmax in float32, cast back, @ v): what the
//          parity goldens were made with (medr1-parity and the parity tests pin it);
//   sdpa   at::scaled_dot_product_attention (fused flash / memory-efficient kernels on CUDA, ATen's fused CPU
//          kernel);
//   auto   sdpa on every device (the default), as transformers 4.49 chooses for Qwen2-VL when a model is loaded
//          without attn_implementation. On CPU it measured 1.3x to 1.4x eager's bf16 prefill at batch 8 (the
//          vision tower's [16, L, L] scores are not materialised); decode steps go through the fused decode kernel
//          only under eager.
// `flash_attention_2` (Med-R1's flag value) is accepted as sdpa: on CUDA it selects the flash
// kernel where the shapes allow it. The choice is process-wide, like one model config shared by
// every loaded model.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace medr1::model {

enum class AttnImplementation { Auto, Eager, Sdpa };

// "auto" | "eager" | "sdpa" | "flash_attention_2"; anything else throws medr1::Error naming the
// value.
AttnImplementation parse_attn_implementation(const std::string& name);
const char* attn_implementation_name(AttnImplementation impl);

void set_attn_implementation(AttnImplementation impl);
AttnImplementation attn_implementation();

// What `name` runs as on `device` ("flash_attention_2 -> sdpa (at::scaled_dot_product_attention) on
// cpu"); medr1 has no flash-attention kernel of its own: flash_attention_2 maps to ATen's SDPA,
// which picks its flash / memory-efficient CUDA kernels where they apply.
std::string describe_attn_implementation(const std::string& name, const at::Device& device);
// parse + set + one info log line of describe_attn_implementation (what the trainer, infer and eval
// call).
void use_attn_implementation(const std::string& name, const at::Device& device);

// True when attention over tensors on `t`'s device runs through SDPA under the current setting.
bool use_sdpa_for(const at::Tensor& t);

}  // namespace medr1::model
