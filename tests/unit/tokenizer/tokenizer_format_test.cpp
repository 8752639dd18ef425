// tokenizer.json handling on a tiny hand-written byte-level BPE: both merge formats, merge rank
// order, added-token flags (lstrip / rstrip / single_word) as HF AddedVocabulary applies them,
// unknown symbols dropped (no unk_token), and clear errors for malformed files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "medr1/core/error.h"
#include "medr1/tokenizer/tokenizer.h"

namespace medr1::tokenizer::test {
namespace {

// GPT-2 byte-level: printable ASCII maps to itself, ' ' to "Ġ" (U+0120), '\n' to "Ċ" (U+010A).
const char* kVocab = R"({"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5, "Ġ": 6, "Ġa": 7, "s": 8, "w": 9,
  "X": 10, "Y": 11, "<": 12, ">": 13, "x": 14, "Ċ": 15})";

const char* kQwenRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

nlohmann::json tiny_tokenizer(const nlohmann::json& merges) {
  nlohmann::json j;
  j["version"] = "1.0";
  j["added_tokens"] = nlohmann::json::parse(R"([
    {"id": 20, "content": "<x>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 21, "content": "XY", "single_word": false, "lstrip": true, "rstrip": true, "normalized": false, "special": false},
    {"id": 22, "content": "sw", "single_word": true, "lstrip": false, "rstrip": false, "normalized": false, "special": false}
  ])");
  j["normalizer"] = {{"type", "NFC"}};
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", kQwenRegex}}}, {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}}}};
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  j["model"] = {{"type", "BPE"},           {"dropout", nullptr},  {"unk_token", nullptr},
                {"continuing_subword_prefix", ""}, {"end_of_word_suffix", ""}, {"fuse_unk", false},
                {"byte_fallback", false},  {"ignore_merges", false}, {"vocab", nlohmann::json::parse(kVocab)},
                {"merges", merges}};
  return j;
}

Tokenizer tiny(const nlohmann::json& merges) { return Tokenizer::from_json_string(tiny_tokenizer(merges).dump()); }

using Ids = std::vector<int32_t>;

TEST(TokenizerFormat, PairAndStringMergesAgree) {
  const auto pairs = nlohmann::json::parse(R"([["a","b"],["b","c"],["ab","c"],["Ġ","a"]])");
  const auto strings = nlohmann::json::parse(R"(["a b","b c","ab c","Ġ a"])");
  const Tokenizer tp = tiny(pairs);
  const Tokenizer ts = tiny(strings);
  // "abc": (a,b) rank 0 first, then (ab,c) -> abc.
  EXPECT_EQ(tp.encode("abc"), Ids{5});
  // "bcab": (a,b) rank 0 beats (b,c) rank 1; then (b,c); (c,ab) has no merge.
  EXPECT_EQ(tp.encode("bcab"), (Ids{4, 3}));
  // " a" is one pre-token "Ġa".
  EXPECT_EQ(tp.encode("c a"), (Ids{2, 7}));
  for (const char* text : {"abc", "bcab", "c a", "ab ab\nabc", "  a", ""}) {
    EXPECT_EQ(tp.encode(text), ts.encode(text)) << text;
  }
  EXPECT_EQ(tp.decode({2, 7, 15, 5}), "c a\nabc");
}

TEST(TokenizerFormat, MergeRankOrderDecides) {
  // With (b,c) ranked first, "abc" becomes a + bc and (a,bc) has no merge.
  const Tokenizer t = tiny(nlohmann::json::parse(R"([["b","c"],["a","b"],["ab","c"]])"));
  EXPECT_EQ(t.encode("abc"), (Ids{0, 4}));
}

TEST(TokenizerFormat, LongWordUsesSameMergeOrder) {
  // 200 symbols takes the heap path; the result must follow the same rank order as short words.
  const Tokenizer t = tiny(nlohmann::json::parse(R"([["a","b"],["b","c"],["ab","c"]])"));
  std::string word;
  Ids want;
  for (int i = 0; i < 40; ++i) {
    word += "abcbc";  // abc + bc per repetition
    want.push_back(5);
    want.push_back(4);
  }
  EXPECT_EQ(t.encode(word), want);
  EXPECT_EQ(t.encode("abcbc"), (Ids{5, 4}));
}

TEST(TokenizerFormat, AddedTokenFlags) {
  const Tokenizer t = tiny(nlohmann::json::parse(R"([["a","b"],["b","c"],["ab","c"],["Ġ","a"]])"));
  // Plain special token: split out before pre-tokenization.
  EXPECT_EQ(t.encode("a<x>b"), (Ids{0, 20, 1}));
  EXPECT_EQ(t.encode("a <x> b"), (Ids{0, 6, 20, 6, 1}));
  // lstrip + rstrip: the token absorbs the whitespace around it.
  EXPECT_EQ(t.encode("a XY b"), (Ids{0, 21, 1}));
  EXPECT_EQ(t.encode("aXYb"), (Ids{0, 21, 1}));
  // single_word: only when not glued to word characters.
  EXPECT_EQ(t.encode("sw"), Ids{22});
  EXPECT_EQ(t.encode("a sw"), (Ids{0, 6, 22}));
  EXPECT_EQ(t.encode("asw"), (Ids{0, 8, 9}));
  EXPECT_EQ(t.encode("swa"), (Ids{8, 9, 0}));
  // Decoding keeps or drops the special token.
  EXPECT_EQ(t.decode({0, 20, 1}), "a<x>b");
  EXPECT_EQ(t.decode({0, 20, 1}, true), "ab");
  EXPECT_EQ(t.decode({0, 21, 1}, true), "aXYb");  // XY is not special
  EXPECT_TRUE(t.is_special(20));
  EXPECT_FALSE(t.is_special(21));
  EXPECT_EQ(t.token_to_id("XY"), std::optional<int32_t>(21));
  EXPECT_EQ(t.vocab_size(), 23u);
}

TEST(TokenizerFormat, UnknownSymbolsAreDroppedWithoutUnkToken) {
  const Tokenizer t = tiny(nlohmann::json::parse(R"([["a","b"]])"));
  EXPECT_EQ(t.encode("abd"), Ids{3});  // "d" is not in the vocab and there is no unk_token
}

void expect_error(const std::string& json, const std::string& fragment) {
  try {
    Tokenizer::from_json_string(json);
    ADD_FAILURE() << "expected medr1::Error containing \"" << fragment << "\"";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(TokenizerFormat, MalformedFilesGiveClearErrors) {
  const auto good_merges = nlohmann::json::parse(R"([["a","b"]])");
  expect_error("{\"model\": ", "tokenizer.json: invalid JSON");
  expect_error("[1, 2]", "expected a JSON object");
  expect_error("{\"version\": \"1.0\"}", "missing \"model\"");

  auto j = tiny_tokenizer(nlohmann::json::parse(R"(["ab"])"));
  expect_error(j.dump(), "model.merges[0]: expected \"left right\" with exactly one space");
  j = tiny_tokenizer(nlohmann::json::parse(R"([["a","b"], ["a","q"]])"));
  expect_error(j.dump(), "model.merges[1]: token \"q\" is not in the vocab");
  j = tiny_tokenizer(nlohmann::json::parse(R"([["b","a"]])"));
  expect_error(j.dump(), "merged token \"ba\" is not in the vocab");
  j = tiny_tokenizer(nlohmann::json::parse(R"([["a","b","c"]])"));
  expect_error(j.dump(), "model.merges[0]: expected");
  j = tiny_tokenizer(good_merges);
  j["model"]["vocab"]["zz"] = "seven";
  expect_error(j.dump(), "model.vocab[\"zz\"]: expected a non-negative integer id");
  j = tiny_tokenizer(good_merges);
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  expect_error(j.dump(), "pre_tokenizer type \"Metaspace\" is not supported");
  j = tiny_tokenizer(good_merges);
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "([a-";
  expect_error(j.dump(), "cannot compile regex");
  j = tiny_tokenizer(good_merges);
  j["added_tokens"][0].erase("content");
  expect_error(j.dump(), "added_tokens[0]: expected");
  j = tiny_tokenizer(good_merges);
  j["model"]["type"] = "WordPiece";
  expect_error(j.dump(), "model.type: expected \"BPE\"");
}

TEST(TokenizerFormat, MissingFileMentionsSetupScript) {
  try {
    Tokenizer::from_dir("/nonexistent/medr1/tokenizer");
    FAIL() << "expected medr1::Error";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("scripts/tokenizer_fixtures.sh"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace medr1::tokenizer::test
