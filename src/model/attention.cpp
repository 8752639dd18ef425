// Attention implementation switch (see include/medr1/model/attention.h).
#include "medr1/model/attention.h"

#include <atomic>

#include "medr1/core/error.h"

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
    case AttnImplementation::Auto: return "auto";
    case AttnImplementation::Eager: return "eager";
    case AttnImplementation::Sdpa: return "sdpa";
  }
  return "auto";
}

void set_attn_implementation(AttnImplementation impl) { g_impl.store(impl, std::memory_order_relaxed); }
AttnImplementation attn_implementation() { return g_impl.load(std::memory_order_relaxed); }

bool use_sdpa_for(const at::Tensor& t) {
  switch (attn_implementation()) {
    case AttnImplementation::Eager: return false;
    case AttnImplementation::Sdpa: return true;
    case AttnImplementation::Auto: break;
  }
  return t.is_cuda();
}

}  // namespace medr1::model
