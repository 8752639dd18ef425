// libFuzzer target: tokenizer.json (tokenizer::Tokenizer::from_json_string), then encode / decode
// of a fixed text so that the vocab, merges, added tokens and the pre-tokenizer regex read from the
// input are exercised.
#include <cstdint>
#include <exception>
#include <string>

#include "medr1/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json(reinterpret_cast<const char*>(data), size);
  try {
    const auto tok = medr1::tokenizer::Tokenizer::from_json_string(json);
    const auto ids = tok.encode(
        "Hello world, abc ab\n<x> XY sw 123 \xc3\xa9t\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87  ");
    (void)tok.decode(ids, false);
    (void)tok.decode(ids, true);
    (void)tok.decode({-1, 0, 1, 2147483647}, false);
    (void)tok.vocab_size();
  } catch (const std::exception&) {
  }
  return 0;
}
