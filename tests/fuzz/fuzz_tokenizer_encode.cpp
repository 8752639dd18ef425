// libFuzzer target: encode / decode of arbitrary text (prompts and model output are untrusted) with
// a fixed tiny byte-level BPE tokenizer in the Qwen2 format (the Qwen pre-tokenizer regex, NFC,
// added tokens with every flag).
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "medr1/tokenizer/tokenizer.h"

namespace {

const char* kTokenizerJson = R"({"version": "1.0",
 "added_tokens": [
  {"id": 20, "content": "<|im_start|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
  {"id": 21, "content": "XY", "single_word": false, "lstrip": true, "rstrip": true, "normalized": false, "special": false},
  {"id": 22, "content": "sw", "single_word": true, "lstrip": false, "rstrip": false, "normalized": false, "special": false},
  {"id": 23, "content": "\u00e9t", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false}],
 "normalizer": {"type": "NFC"},
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
  {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]},
 "post_processor": null,
 "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
 "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "", "end_of_word_suffix": "",
  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
  "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5, "\u0120": 6, "\u0120a": 7, "s": 8, "w": 9,
            "X": 10, "Y": 11, "<": 12, ">": 13, "x": 14, "\u010a": 15},
  "merges": [["a", "b"], ["b", "c"], ["ab", "c"], ["\u0120", "a"]]}})";

const medr1::tokenizer::Tokenizer& tok() {
  static const auto t = medr1::tokenizer::Tokenizer::from_json_string(kTokenizerJson);
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto ids = tok().encode(text);
    (void)tok().decode(ids, true);
  } catch (const std::exception&) {  // invalid UTF-8 is a medr1::Error
  }
  // Arbitrary ids (model output) through decode: 4 bytes each.
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 4 <= size; i += 4) {
    int32_t v = 0;
    for (int k = 0; k < 4; ++k)
      v |= static_cast<int32_t>(static_cast<uint32_t>(data[i + k]) << (8 * k));
    ids.push_back(v);
  }
  (void)tok().decode(ids, false);
  return 0;
}
