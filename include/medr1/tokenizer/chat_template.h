// Renderer specialised to the Qwen2-VL / Qwen2.5-VL Instruct chat template (chat_template.json):
// produces exactly the text transformers' apply_chat_template renders with jinja2 (trim_blocks,
// lstrip_blocks): default system prompt when the first message is not "system", string vs list
// content, images/videos as <|vision_start|><|image_pad|><|vision_end|> with optional
// "Picture N: " (add_vision_id), every turn closed by <|im_end|>\n, optional generation prompt.
// It is not a general Jinja engine.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

namespace medr1::tokenizer {

struct ContentPart {
  enum Kind { Text, Image, Video } kind = Text;
  std::string text;  // only for Text

  static ContentPart make_text(std::string t) { return ContentPart{Text, std::move(t)}; }
  static ContentPart make_image() { return ContentPart{Image, {}}; }
  static ContentPart make_video() { return ContentPart{Video, {}}; }
};

struct Message {
  std::string role;  // "system" | "user" | "assistant"
  std::vector<ContentPart> content;
  // HF `content` given as a plain string: rendered as is (the parts' texts joined; images not allowed).
  bool content_is_string = false;

  static Message text(std::string role, std::string content) {
    return Message{std::move(role), {ContentPart::make_text(std::move(content))}, true};
  }
};

// The Qwen2-VL template's default system message text.
inline constexpr const char* kDefaultSystemPrompt = "You are a helpful assistant.";

std::string apply_chat_template(const std::vector<Message>& messages, bool add_generation_prompt,
                                bool add_vision_id = false);

// HF-shaped messages JSON ([{"role":..., "content": "..." | [{"type":"image"}, {"type":"text","text":...}]}])
// -> Messages, following the template's tests: a part is an image if type=="image" or it has an "image" or
// "image_url" key, else a video if type=="video" or it has a "video" key, else text if it has "text",
// else it renders nothing (dropped). Throws medr1::Error on a malformed shape.
std::vector<Message> messages_from_json(const nlohmann::json& messages);

}  // namespace medr1::tokenizer
