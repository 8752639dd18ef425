// Qwen2-VL / Qwen2.5-VL chat template rendered in C++ (see chat_template.h). Mirrors, statement by
// statement, the Jinja source in tests/data/tokenizer/chat_template.json; with trim_blocks and
// lstrip_blocks that template emits no whitespace of its own outside the literal "\n"s kept here.
#include "medr1/tokenizer/chat_template.h"

#include <nlohmann/json.hpp>

#include "medr1/core/error.h"

namespace medr1::tokenizer {

std::string apply_chat_template(const std::vector<Message>& messages, bool add_generation_prompt,
                                bool add_vision_id) {
  std::string out;
  int image_count = 0;
  int video_count = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const Message& m = messages[i];
    if (i == 0 && m.role != "system") {
      out += "<|im_start|>system\n";
      out += kDefaultSystemPrompt;
      out += "<|im_end|>\n";
    }
    out += "<|im_start|>";
    out += m.role;
    out += "\n";
    if (m.content_is_string) {
      for (const ContentPart& p : m.content) {
        MEDR1_CHECK(p.kind == ContentPart::Text, "apply_chat_template: messages[", i,
                    "]: string content can only hold text");
        out += p.text;
      }
      out += "<|im_end|>\n";
      continue;
    }
    for (const ContentPart& p : m.content) {
      switch (p.kind) {
        case ContentPart::Image:
          ++image_count;
          if (add_vision_id) out += "Picture " + std::to_string(image_count) + ": ";
          out += "<|vision_start|><|image_pad|><|vision_end|>";
          break;
        case ContentPart::Video:
          ++video_count;
          if (add_vision_id) out += "Video " + std::to_string(video_count) + ": ";
          out += "<|vision_start|><|video_pad|><|vision_end|>";
          break;
        case ContentPart::Text:
          out += p.text;
          break;
      }
    }
    out += "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::vector<Message> messages_from_json(const nlohmann::json& messages) {
  MEDR1_CHECK(messages.is_array(), "messages: expected an array, got ", messages.type_name());
  std::vector<Message> out;
  out.reserve(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    MEDR1_CHECK(m.is_object() && m.contains("role") && m["role"].is_string() && m.contains("content"),
                "messages[", i, "]: expected {\"role\": <string>, \"content\": ...}, got ", m.dump());
    Message msg;
    msg.role = m["role"].get<std::string>();
    const auto& c = m["content"];
    if (c.is_string()) {
      msg.content_is_string = true;
      msg.content.push_back(ContentPart::make_text(c.get<std::string>()));
    } else {
      MEDR1_CHECK(c.is_array(), "messages[", i, "].content: expected a string or an array, got ", c.type_name());
      for (size_t k = 0; k < c.size(); ++k) {
        const auto& part = c[k];
        MEDR1_CHECK(part.is_object(), "messages[", i, "].content[", k, "]: expected an object, got ", part.dump());
        const std::string type = part.contains("type") && part["type"].is_string() ? part["type"].get<std::string>()
                                                                                   : std::string();
        // Same precedence as the template's if / elif chain.
        if (type == "image" || part.contains("image") || part.contains("image_url")) {
          msg.content.push_back(ContentPart::make_image());
        } else if (type == "video" || part.contains("video")) {
          msg.content.push_back(ContentPart::make_video());
        } else if (part.contains("text")) {
          MEDR1_CHECK(part["text"].is_string(), "messages[", i, "].content[", k, "].text: expected a string");
          msg.content.push_back(ContentPart::make_text(part["text"].get<std::string>()));
        }
      }
    }
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace medr1::tokenizer
