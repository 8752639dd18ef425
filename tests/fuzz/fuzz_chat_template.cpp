// libFuzzer target: HF-shaped messages JSON (tokenizer::messages_from_json) rendered by the
// Qwen2-VL chat template.
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>

#include "medr1/tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // First byte: the two flags; the rest is the JSON.
  const bool gen_prompt = (data[0] & 1) != 0;
  const bool vision_id = (data[0] & 2) != 0;
  try {
    const auto j = nlohmann::json::parse(data + 1, data + size);
    const auto messages = medr1::tokenizer::messages_from_json(j);
    (void)medr1::tokenizer::apply_chat_template(messages, gen_prompt, vision_id);
  } catch (const std::exception&) {
  }
  return 0;
}
