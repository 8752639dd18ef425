// Pre-tokenizer of a tokenizer.json: HF Split (regex or literal pattern, behaviours Isolated/Removed,
// invert) and ByteLevel (optional GPT-2 regex, add_prefix_space), alone or in a Sequence.
// Regexes are compiled with PCRE2 (UTF, Unicode properties, JIT); Hugging Face uses Oniguruma with
// the same pattern text. The byte-to-unicode mapping of ByteLevel is done inside BPE on raw bytes.
// Internal header (src/).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace medr1::tokenizer::detail {

// A compiled PCRE2 pattern; match() is thread-safe (per-thread match data and JIT stack).
class Pcre2Regex {
 public:
  Pcre2Regex(const std::string& pattern, bool literal, const std::string& where);
  ~Pcre2Regex();
  Pcre2Regex(const Pcre2Regex&) = delete;
  Pcre2Regex& operator=(const Pcre2Regex&) = delete;

  // Finds the first match in valid UTF-8 `text` at or after byte `offset` (a code point
  // boundary); false when there is none.
  bool find(std::string_view text, size_t offset, size_t& start, size_t& end) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

class PreTokenizer {
 public:
  // `spec` is tokenizer.json's "pre_tokenizer" (may be null).
  static std::unique_ptr<PreTokenizer> from_json(const nlohmann::json& spec);

  // Splits a normalized piece into pre-tokens, calling f on each non-empty one in order.
  // The views point into `text`, or into a temporary string when add_prefix_space changed it.
  template <typename F>
  void split(std::string_view text, F&& f) const {
    split_from(0, text, std::ref(f));
  }

  // Whether a ByteLevel step is present (BPE then works on bytes through bytes_to_unicode).
  bool byte_level() const { return byte_level_; }

 private:
  enum class Behavior { Isolated, Removed };
  struct Step {
    std::unique_ptr<Pcre2Regex> regex;  // null for a ByteLevel step without regex
    Behavior behavior = Behavior::Isolated;
    bool invert = false;
    bool add_prefix_space = false;
  };

  template <typename F>
  void split_from(size_t step, std::string_view text, F f) const;
  template <typename F>
  void split_step(size_t step, std::string_view text, F f) const;
  void add_step(const nlohmann::json& spec, bool first);

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

template <typename F>
void PreTokenizer::split_from(size_t step, std::string_view text, F f) const {
  if (text.empty()) return;
  if (step == steps_.size()) {
    f(text);
    return;
  }
  if (steps_[step].add_prefix_space && text.front() != ' ') {
    std::string with_space;
    with_space.reserve(text.size() + 1);
    with_space.push_back(' ');
    with_space.append(text);
    split_step(step, with_space, f);  // views handed to f live while this frame does
  } else {
    split_step(step, text, f);
  }
}

template <typename F>
void PreTokenizer::split_step(size_t step, std::string_view text, F f) const {
  const Step& s = steps_[step];
  if (!s.regex) {
    split_from(step + 1, text, f);
    return;
  }
  // A piece is a delimiter when it is a match (or a gap, with invert); Removed drops delimiters.
  auto emit = [&](size_t b, size_t e, bool is_match) {
    if (e <= b) return;
    const bool is_delim = is_match != s.invert;
    if (is_delim && s.behavior == Behavior::Removed) return;
    split_from(step + 1, text.substr(b, e - b), f);
  };
  size_t last = 0, search = 0, ms = 0, me = 0;
  while (search <= text.size() && s.regex->find(text, search, ms, me)) {
    emit(last, ms, false);
    if (me == ms) {
      // Empty match: only a split point; resume one code point further.
      last = ms;
      search = ms + 1;
      while (search < text.size() && (static_cast<unsigned char>(text[search]) & 0xC0) == 0x80) ++search;
      continue;
    }
    emit(ms, me, true);
    last = search = me;
  }
  emit(last, text.size(), false);
}

}  // namespace medr1::tokenizer::detail
