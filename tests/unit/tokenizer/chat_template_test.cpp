// Chat template renderer against the 9 renderings of shared/parity/tokenizer/chat_template_goldens.jsonl
// (jinja2 configured as transformers' apply_chat_template), plus the struct-based API.
#include <gtest/gtest.h>

#include <algorithm>

#include "medr1/core/error.h"
#include "medr1/tokenizer/chat_template.h"
#include "tokenizer_fixtures.h"

namespace medr1::tokenizer::test {
namespace {

TEST(ChatTemplate, AllGoldens) {
  const auto rows = read_jsonl(data_path("tokenizer/chat_template_goldens.jsonl"));
  ASSERT_EQ(rows.size(), 9u);
  for (const auto& r : rows) {
    const auto messages = messages_from_json(r["messages"]);
    const std::string got =
        apply_chat_template(messages, r["add_generation_prompt"].get<bool>(), r["add_vision_id"].get<bool>());
    EXPECT_EQ(got, r["text"].get<std::string>()) << "case " << r["case"];
  }
}

TEST(ChatTemplate, StructApiMatchesMedR1Prompt) {
  // The Med-R1 training prompt shape: one image then the question, default system prompt.
  const std::vector<Message> msgs = {
      Message{"user", {ContentPart::make_image(), ContentPart::make_text("Q?")}, false}};
  EXPECT_EQ(apply_chat_template(msgs, true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Q?<|im_end|>\n"
            "<|im_start|>assistant\n");
  // A given system message replaces the default one; string content is rendered as is.
  const std::vector<Message> sys = {Message::text("system", "S."), Message::text("user", "Hi")};
  EXPECT_EQ(apply_chat_template(sys, false), "<|im_start|>system\nS.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, VideosAndVisionIdsCountSeparately) {
  const std::vector<Message> msgs = {Message{
      "user", {ContentPart::make_image(), ContentPart::make_video(), ContentPart::make_image()}, false}};
  const std::string text = apply_chat_template(msgs, false, true);
  EXPECT_NE(text.find("Picture 1: <|vision_start|><|image_pad|><|vision_end|>"
                      "Video 1: <|vision_start|><|video_pad|><|vision_end|>"
                      "Picture 2: <|vision_start|><|image_pad|><|vision_end|>"),
            std::string::npos)
      << text;
}

TEST(ChatTemplate, MalformedMessagesAreRejected) {
  EXPECT_THROW(messages_from_json(nlohmann::json::parse(R"({"role": "user"})")), medr1::Error);
  EXPECT_THROW(messages_from_json(nlohmann::json::parse(R"([{"role": "user"}])")), medr1::Error);
  EXPECT_THROW(messages_from_json(nlohmann::json::parse(R"([{"role": "user", "content": 3}])")), medr1::Error);
  // Parts the template ignores (no image/video/text) render nothing.
  const auto m = messages_from_json(nlohmann::json::parse(R"([{"role": "user", "content": [{"type": "audio"}]}])"));
  ASSERT_EQ(m.size(), 1u);
  EXPECT_TRUE(m[0].content.empty());
}

TEST(ChatTemplate, RenderedPromptTokenizesWithSpecialTokens) {
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen2vl");
  const Tokenizer& tok = fixture("qwen2vl");
  const std::vector<Message> msgs = {
      Message{"user", {ContentPart::make_image(), ContentPart::make_text("Hello world")}, false}};
  const auto ids = tok.encode(apply_chat_template(msgs, true));
  // <|im_start|>=151644 ... <|vision_start|>=151652 <|image_pad|>=151655 <|vision_end|>=151653, "Hello world"=9707 1879
  const std::vector<int32_t> vision = {151652, 151655, 151653, 9707, 1879, 151645};
  ASSERT_GT(ids.size(), vision.size());
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_NE(std::search(ids.begin(), ids.end(), vision.begin(), vision.end()), ids.end());
}

}  // namespace
}  // namespace medr1::tokenizer::test
