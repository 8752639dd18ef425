// libFuzzer target: a checkpoint's config.json (model::parse_qwen2_vl_config, vision_config
// included) and generation_config.json (model::parse_generation_config); the first byte picks
// which. Parsed configs are written back (to_json) and their derived sizes computed.
#include <cstdint>
#include <exception>

#include "medr1/io/json_util.h"
#include "medr1/model/qwen2_vl_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const auto j = medr1::io::parse_json(text, "config.json");
    if (data[0] & 1) {
      const auto g = medr1::model::parse_generation_config(j, "generation_config.json");
      (void)medr1::model::to_json(g).dump();
    } else {
      const auto c = medr1::model::parse_qwen2_vl_config(j, "config.json");
      (void)c.head_dim();
      (void)medr1::model::to_json(c).dump();
    }
  } catch (const std::exception&) {
  }
  return 0;
}
