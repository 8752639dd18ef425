// Byte-level BPE tokenizer read from a Hugging Face `tokenizer.json` (Qwen2 / Qwen2-VL / Qwen3 family).
// Mirrors the Rust `tokenizers` pipeline: AddedVocabulary split (leftmost-longest, lstrip/rstrip/
// single_word/normalized flags) -> NFC -> Split pre-tokenizer regex (PCRE2, read from the file) ->
// ByteLevel -> BPE by merge rank; decode mirrors the ByteLevel decoder (lossy UTF-8).
// Encoding adds no special tokens (no post-processor template is applied), as in HF with Qwen files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace medr1::tokenizer {

struct TokenizerImpl;

class Tokenizer {
 public:
  // `dir` holds tokenizer.json and optionally tokenizer_config.json and chat_template.json
  // (chat_template.json wins over tokenizer_config.json's chat_template, as in HF processors).
  static Tokenizer from_dir(const std::string& dir);
  // tokenizer_config_json may be empty (then eos/pad ids are -1 and chat_template() is empty).
  static Tokenizer from_file(const std::string& tokenizer_json, const std::string& tokenizer_config_json = "");
  // Same, from in-memory JSON texts (tests, tiny tokenizers).
  static Tokenizer from_json_string(const std::string& tokenizer_json, const std::string& tokenizer_config_json = "");

  // Thread-safe; text must be valid UTF-8 (throws medr1::Error otherwise).
  std::vector<int32_t> encode(std::string_view text) const;
  // Ids unknown to the tokenizer are skipped (as HF does); invalid UTF-8 becomes U+FFFD.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The token string (vocab or added token) of `id`, if any; byte-level form for vocab tokens.
  std::optional<std::string> id_to_token(int32_t id) const;
  // -1 when no tokenizer_config.json or no such token in it.
  int32_t eos_token_id() const;
  int32_t pad_token_id() const;
  std::string eos_token() const;
  std::string pad_token() const;
  // Jinja source from chat_template.json or tokenizer_config.json ("" when none).
  std::string chat_template() const;
  // Highest id + 1 over the vocab and the added tokens (151665 for Qwen2.5-VL, 151657 for Qwen2-VL).
  size_t vocab_size() const;
  // True for added tokens flagged "special": true (skipped by decode(skip_special_tokens=true)).
  bool is_special(int32_t id) const;

 private:
  explicit Tokenizer(std::shared_ptr<const TokenizerImpl> impl);
  std::shared_ptr<const TokenizerImpl> impl_;
};

}  // namespace medr1::tokenizer
