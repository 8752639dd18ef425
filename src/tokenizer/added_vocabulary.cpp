// Added-token matching (HF AddedVocabulary::find_matches): leftmost-longest exact match with the
// single_word / lstrip / rstrip flags. Word and whitespace classes follow Rust's (Unicode \w and
// char::is_whitespace).
#include "tokenizer/added_vocabulary.h"

#include <algorithm>
#include <cstring>

#include "tokenizer/byte_level.h"

namespace medr1::tokenizer::detail {

namespace {

// Code point that starts before byte `end` (end > 0, valid UTF-8), and its start offset.
char32_t prev_code_point(std::string_view s, size_t end, size_t& start) {
  start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  size_t i = start;
  return next_code_point(s, i);
}

}  // namespace

void AddedTokenMatcher::build(std::vector<const AddedToken*> tokens, std::vector<std::string> patterns) {
  tokens_ = std::move(tokens);
  patterns_ = std::move(patterns);
  for (auto& v : by_first_) v.clear();
  is_first_.fill(false);
  for (size_t i = 0; i < patterns_.size(); ++i) {
    if (patterns_[i].empty()) continue;  // HF never matches an empty token
    const auto b = static_cast<unsigned char>(patterns_[i][0]);
    by_first_[b].push_back(static_cast<int>(i));
    is_first_[b] = true;
  }
  int firsts = 0;
  for (int b = 0; b < 256; ++b) {
    auto& v = by_first_[b];
    std::stable_sort(v.begin(), v.end(), [&](int x, int y) { return patterns_[x].size() > patterns_[y].size(); });
    if (is_first_[b]) {
      ++firsts;
      single_first_ = b;
    }
  }
  if (firsts != 1) single_first_ = -1;
}

int AddedTokenMatcher::find_at_or_after(std::string_view text, size_t pos, size_t& ms, size_t& me) const {
  const char* data = text.data();
  const size_t n = text.size();
  while (pos < n) {
    if (single_first_ >= 0) {
      const void* hit = std::memchr(data + pos, single_first_, n - pos);
      if (hit == nullptr) return -1;
      pos = static_cast<size_t>(static_cast<const char*>(hit) - data);
    } else {
      while (pos < n && !is_first_[static_cast<unsigned char>(data[pos])]) ++pos;
      if (pos == n) return -1;
    }
    // Longest first, so the first hit at the leftmost position is the leftmost-longest match.
    for (int k : by_first_[static_cast<unsigned char>(data[pos])]) {
      const std::string& p = patterns_[static_cast<size_t>(k)];
      if (p.size() <= n - pos && std::memcmp(data + pos, p.data(), p.size()) == 0) {
        ms = pos;
        me = pos + p.size();
        return k;
      }
    }
    ++pos;
  }
  return -1;
}

bool AddedTokenMatcher::single_word_ok(std::string_view text, size_t ms, size_t me) {
  if (ms > 0) {
    size_t st = 0;
    if (is_word_char(prev_code_point(text, ms, st))) return false;
  }
  if (me < text.size()) {
    size_t i = me;
    if (is_word_char(next_code_point(text, i))) return false;
  }
  return true;
}

size_t AddedTokenMatcher::lstrip_start(std::string_view text, size_t ms) {
  size_t start = ms;
  while (start > 0) {
    size_t st = 0;
    if (!is_unicode_whitespace(prev_code_point(text, start, st))) break;
    start = st;
  }
  return start;
}

size_t AddedTokenMatcher::rstrip_end(std::string_view text, size_t me) {
  size_t end = me;
  while (end < text.size()) {
    size_t i = end;
    if (!is_unicode_whitespace(next_code_point(text, i))) break;
    end = i;
  }
  return end;
}

}  // namespace medr1::tokenizer::detail
