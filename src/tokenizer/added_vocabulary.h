// Added tokens of a tokenizer.json and the split that extracts them from text before the
// normalizer / pre-tokenizer run, as HF AddedVocabulary::find_matches does: leftmost-longest
// exact match (aho-corasick LeftmostLongest), single_word boundary check, lstrip / rstrip
// absorbing neighbouring whitespace. Internal header (src/).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace medr1::tokenizer::detail {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

class AddedTokenMatcher {
 public:
  // `patterns[i]` is the text matched for `tokens[i]` (the content, or its normalized form).
  void build(std::vector<const AddedToken*> tokens, std::vector<std::string> patterns);
  bool empty() const { return tokens_.empty(); }

  // Calls f(piece, id) for each piece of `text` in order: id >= 0 for an added token, -1 for text
  // between tokens (never empty unless `text` is empty, then nothing is called).
  template <typename F>
  void split(std::string_view text, F&& f) const {
    if (tokens_.empty()) {
      if (!text.empty()) f(text, -1);
      return;
    }
    size_t start_offset = 0;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t ms = 0, me = 0;
      int k = find_at_or_after(text, pos, ms, me);
      if (k < 0) break;
      const AddedToken& tok = *tokens_[static_cast<size_t>(k)];
      pos = me;  // the matcher resumes after the match, kept or not (non-overlapping iteration)
      if (tok.single_word && !single_word_ok(text, ms, me)) continue;
      size_t start = ms, stop = me;
      if (tok.lstrip) start = std::max(lstrip_start(text, ms), start_offset);
      if (tok.rstrip) stop = rstrip_end(text, me);
      if (start_offset < start) f(text.substr(start_offset, start - start_offset), -1);
      f(text.substr(start, stop - start), tok.id);
      start_offset = stop;
      pos = std::max(pos, stop);
    }
    if (start_offset < text.size()) f(text.substr(start_offset), -1);
  }

 private:
  // Leftmost-longest match at or after pos: index into tokens_ or -1.
  int find_at_or_after(std::string_view text, size_t pos, size_t& ms, size_t& me) const;
  static bool single_word_ok(std::string_view text, size_t ms, size_t me);
  static size_t lstrip_start(std::string_view text, size_t ms);
  static size_t rstrip_end(std::string_view text, size_t me);

  std::vector<const AddedToken*> tokens_;
  std::vector<std::string> patterns_;
  // Candidate pattern indices per first byte, longest first.
  std::array<std::vector<int>, 256> by_first_;
  std::array<bool, 256> is_first_{};
  int single_first_ = -1;  // the only first byte when all patterns share it (memchr scan), else -1
};

}  // namespace medr1::tokenizer::detail
