// Byte-level helpers shared by the tokenizer: GPT-2's bytes_to_unicode table (HF ByteLevel
// pre-tokenizer / decoder), UTF-8 validation and Rust's String::from_utf8_lossy replacement rule.
// Internal header (src/), not part of the public API.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace medr1::tokenizer::detail {

// byte -> code point of GPT-2's bytes_to_unicode (printable Latin-1 bytes map to themselves,
// the other 68 bytes to U+0100..U+0143).
const std::array<char32_t, 256>& bytes_to_unicode();
// UTF-8 text of bytes_to_unicode()[b] (1 or 2 bytes).
const std::array<std::string, 256>& byte_level_strings();
// Inverse of bytes_to_unicode: code point -> byte, or -1 (code points >= 0x144 are never mapped).
int byte_level_char_to_byte(char32_t cp);

// Appends the UTF-8 encoding of cp.
void append_utf8(std::string& out, char32_t cp);
// Decodes one code point of valid UTF-8 at s[i] and advances i.
char32_t next_code_point(std::string_view s, size_t& i);
// Byte offset of the first invalid UTF-8 sequence, or std::string_view::npos when valid.
size_t find_invalid_utf8(std::string_view s);
// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// ByteLevel decoder on one token: its chars mapped back to bytes when all are in the table,
// else the token's own UTF-8 bytes (HF decode_chain does the same per token).
std::string byte_level_decode_token(std::string_view token);

// Unicode White_Space (Rust char::is_whitespace), and "word" chars (\w: letters, marks, digits,
// connector punctuation) as HF's AddedVocabulary single_word check uses them.
bool is_unicode_whitespace(char32_t cp);
bool is_word_char(char32_t cp);

}  // namespace medr1::tokenizer::detail
