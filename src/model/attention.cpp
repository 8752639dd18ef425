// Attention implementation switch (see include/medr1/model/attention.h).
#include "medr1/model/attention.h"

#include <atomic>

#include "medr1/core/error.h"
#include "medr1/core/logging.h"

namespace medr1::model {
namespace {
std::atomic<AttnImplementation> g_impl{AttnImplementation::Auto};
}  // namespace

AttnImplementation parse_attn_implementation(const std::string& name) {
  if (name == "auto") return AttnImplementation::Auto;
  if (name == "eager") return AttnImplementation::Eager;
  if (name == "sdpa" || name == "flash_attention_2") return AttnImplementation::Sdpa;
  fail("attn_implementation: expected auto, eager, sdpa or flash_attention_2, got '", name, "'");
}

const char* attn_implementation_name(AttnImplementation impl) {
  switch (impl) {
    case AttnImplementation::Auto:
      return "auto";
    case AttnImplementation::Eager:
      return "eager";
    case AttnImplementation::Sdpa:
      return "sdpa";
  }
  return "auto";
}

void set_attn_implementation(AttnImplementation impl) {
  g_impl.store(impl, std::memory_order_relaxed);
}
AttnImplementation attn_implementation() { return g_impl.load(std::memory_order_relaxed); }

std::string describe_attn_implementation(const std::string& name, const at::Device& device) {
  const AttnImplementation impl = parse_attn_implementation(name);
  const bool sdpa =
      impl == AttnImplementation::Sdpa || impl == AttnImplementation::Auto;
  std::string s = name;
  if (name != (sdpa ? "sdpa" : "eager")) s += sdpa ? " -> sdpa" : " -> eager";
  s += sdpa ? " (at::scaled_dot_product_attention" : " (transformers' eager attention math";
  if (sdpa && device.is_cuda())
    s += "; ATen picks its flash / memory-efficient kernels where they apply";
  s += ") on " + device.str();
  return s;
}

void use_attn_implementation(const std::string& name, const at::Device& device) {
  const std::string what = describe_attn_implementation(name, device);  // validates the name
  set_attn_implementation(parse_attn_implementation(name));
  spdlog::info("attn_implementation: {}", what);
}

bool use_sdpa_for(const at::Tensor& t) {
  switch (attn_implementation()) {
    case AttnImplementation::Eager:
      return false;
    case AttnImplementation::Sdpa:
      return true;
    case AttnImplementation::Auto:
      break;
  }
  // auto: SDPA on every device, as transformers 4.49 picks it when a model is loaded without attn_implementation.
  (void)t;
  return true;
}

}  // namespace medr1::model
