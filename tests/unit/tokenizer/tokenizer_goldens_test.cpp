// Tokenizer against the goldens of shared/parity/tokenizer (vendored in tests/data/tokenizer/):
// 75 encode cases with the Qwen3 file (`ids`) and the Qwen2-VL cut (`ids_qwen2vl`), 7 decode
// cases, decode(encode(x)) == NFC(x), special ids and tokenizer_config.json values.
#include <gtest/gtest.h>
#include <utf8proc.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "medr1/core/error.h"
#include "tokenizer_fixtures.h"

namespace medr1::tokenizer::test {
namespace {

std::vector<int32_t> ids_of(const nlohmann::json& a) { return a.get<std::vector<int32_t>>(); }

// NFC through utf8proc directly (independent of the tokenizer's own normalizer path).
std::string nfc(const std::string& s) {
  utf8proc_uint8_t* dst = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                              static_cast<utf8proc_ssize_t>(s.size()), &dst,
                              static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  EXPECT_GE(n, 0);
  std::string out(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  std::free(dst);
  return out;
}

void check_encode_goldens(const std::string& fixture_name, const char* key) {
  MEDR1_REQUIRE_TOKENIZER_FIXTURE(fixture_name);
  const Tokenizer& tok = fixture(fixture_name);
  const auto rows = read_jsonl(data_path("tokenizer/tokenizer_goldens.jsonl"));
  ASSERT_EQ(rows.size(), 75u);
  int mismatches = 0;
  for (const auto& r : rows) {
    const std::string text = r["text"];
    const auto got = tok.encode(text);
    const auto want = ids_of(r[key]);
    if (got != want) {
      ++mismatches;
      ADD_FAILURE() << fixture_name << " " << key << " mismatch for " << nlohmann::json(text).dump()
                    << "\n got  " << nlohmann::json(got).dump() << "\n want " << nlohmann::json(want).dump();
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(TokenizerGoldens, EncodeQwen3File) { check_encode_goldens("qwen3", "ids"); }

TEST(TokenizerGoldens, EncodeQwen2VLFile) { check_encode_goldens("qwen2vl", "ids_qwen2vl"); }

TEST(TokenizerGoldens, DecodeGoldens) {
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen3");
  const Tokenizer& tok = fixture("qwen3");
  const auto rows = read_jsonl(data_path("tokenizer/tokenizer_decode_goldens.jsonl"));
  ASSERT_EQ(rows.size(), 7u);
  for (const auto& r : rows) {
    EXPECT_EQ(tok.decode(ids_of(r["ids"])), r["text"].get<std::string>()) << r.dump();
  }
}

TEST(TokenizerGoldens, RoundTripIsNfc) {
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen3");
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen2vl");
  const auto rows = read_jsonl(data_path("tokenizer/tokenizer_goldens.jsonl"));
  for (const char* name : {"qwen3", "qwen2vl"}) {
    const Tokenizer& tok = fixture(name);
    for (const auto& r : rows) {
      const std::string text = r["text"];
      ASSERT_TRUE(r["roundtrip_ok"].get<bool>());
      EXPECT_EQ(tok.decode(tok.encode(text)), nfc(text)) << name << " " << nlohmann::json(text).dump();
    }
  }
  // The decomposed e-acute case really changes under NFC (so the check above can fail).
  EXPECT_NE(nfc("e\xCC\x81"), "e\xCC\x81");
}

TEST(TokenizerGoldens, SpecialIdsAndConfig) {
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen3");
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen2vl");
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen2_5vl");
  const auto summary = nlohmann::json::parse(std::ifstream(data_path("tokenizer/tokenizer_summary.json")));
  const Tokenizer& q3 = fixture("qwen3");
  const Tokenizer& q2 = fixture("qwen2vl");
  const Tokenizer& q25 = fixture("qwen2_5vl");
  for (const auto& [tok, id] : summary["special_ids"].items()) {
    EXPECT_EQ(q3.token_to_id(tok), std::optional<int32_t>(id.get<int32_t>())) << tok;
    EXPECT_EQ(q3.encode(tok), std::vector<int32_t>{id.get<int32_t>()}) << tok;
  }
  // Qwen2-VL's file has no <think>: it is plain text there.
  EXPECT_FALSE(q2.token_to_id("<think>").has_value());
  EXPECT_EQ(q2.token_to_id("<|video_pad|>"), std::optional<int32_t>(151656));
  EXPECT_EQ(q25.token_to_id("<|fim_pad|>"), std::optional<int32_t>(151662));
  EXPECT_FALSE(q25.token_to_id("<think>").has_value());
  // regular vocab 151643 + added tokens 26 / 14 / 22
  EXPECT_EQ(q3.vocab_size(), 151643u + summary["added_tokens"].get<size_t>());
  EXPECT_EQ(q2.vocab_size(), 151657u);
  EXPECT_EQ(q25.vocab_size(), 151665u);
  // tokenizer_config.json: eos <|im_end|>, pad <|endoftext|>
  for (const Tokenizer* t : {&q3, &q2, &q25}) {
    EXPECT_EQ(t->eos_token(), "<|im_end|>");
    EXPECT_EQ(t->eos_token_id(), 151645);
    EXPECT_EQ(t->pad_token(), "<|endoftext|>");
    EXPECT_EQ(t->pad_token_id(), 151643);
  }
  EXPECT_TRUE(q2.is_special(151655));
  EXPECT_FALSE(q3.is_special(151667));  // <think> is an added token but not "special"
  EXPECT_FALSE(q2.is_special(9707));
  // chat_template.json (Qwen2-VL) beside the Qwen2-VL files; the Qwen3 config's own template otherwise.
  EXPECT_NE(q2.chat_template().find("Picture {{ image_count.value }}: "), std::string::npos);
  EXPECT_EQ(q3.chat_template().find("Picture"), std::string::npos);
  EXPECT_FALSE(q3.chat_template().empty());
}

TEST(TokenizerGoldens, DecodeSkipSpecialAndUnknownIds) {
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen2vl");
  const Tokenizer& tok = fixture("qwen2vl");
  // <|im_start|> user \n ... <|im_end|> (ids from the decode goldens)
  const std::vector<int32_t> ids = {151644, 872, 198, 9707, 1879, 151645};
  EXPECT_EQ(tok.decode(ids), "<|im_start|>user\nHello world<|im_end|>");
  EXPECT_EQ(tok.decode(ids, /*skip_special_tokens=*/true), "user\nHello world");
  // Ids without a token (a random model can emit them) are dropped, as HF does.
  EXPECT_EQ(tok.decode({9707, 151900, 151657, 1879}), "Hello world");
  EXPECT_EQ(tok.decode({-1, 9707}), "Hello");
}

TEST(TokenizerGoldens, DecodeInvalidUtf8IsLossy) {
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen3");
  const Tokenizer& tok = fixture("qwen3");
  // Byte-level chars: byte 0xE4 is "ä" (U+00E4), 0xBD is "½" (U+00BD); "你" is E4 BD A0.
  const auto e4 = tok.token_to_id("\xC3\xA4");
  const auto bd = tok.token_to_id("\xC2\xBD");
  ASSERT_TRUE(e4 && bd);
  // A truncated sequence is one U+FFFD (maximal subpart), then the ASCII that follows.
  EXPECT_EQ(tok.decode({*e4, *bd, 9707}), "\xEF\xBF\xBDHello");
  EXPECT_EQ(tok.decode({*bd}), "\xEF\xBF\xBD");
  // Two leads in a row: two replacements.
  EXPECT_EQ(tok.decode({*e4, *e4}), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(TokenizerGoldens, EncodeRejectsInvalidUtf8) {
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen3");
  const Tokenizer& tok = fixture("qwen3");
  try {
    tok.encode("ok\xC3");
    FAIL() << "expected medr1::Error";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid UTF-8 at byte 2"), std::string::npos) << e.what();
  }
}

TEST(TokenizerGoldens, ConcurrentEncodeMatchesSerial) {
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen3");
  const Tokenizer& tok = fixture("qwen3");
  const auto rows = read_jsonl(data_path("tokenizer/tokenizer_goldens.jsonl"));
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int rep = 0; rep < 20; ++rep) {
        for (const auto& r : rows) {
          if (tok.encode(r["text"].get<std::string>()) != ids_of(r["ids"])) ++bad;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace medr1::tokenizer::test

namespace medr1::tokenizer::test {
namespace {

// Cases where a plain PCRE2 + utf8proc pipeline differs from HF's Rust tokenizers (Oniguruma with
// Unicode 16 classes and White_Space for \s, NFC tables older than Unicode 10). Expected ids are
// the Rust tokenizer's (tokenizers 0.22.2; made via npm's @anush008/tokenizers 0.6.0), not medr1 output.
TEST(TokenizerGoldens, UnicodeVersionQuirksMatchHf) {
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen3");
  const Tokenizer& tok = fixture("qwen3");
  // U+180E is not whitespace for HF (PCRE2's \s says it is).
  EXPECT_EQ(tok.encode("a \xE1\xA0\x8E b"), (std::vector<int32_t>{64, 86089, 254, 236, 293}));
  // U+1D2C0 KAKTOVIK NUMERAL ZERO (Unicode 15) is \p{N} for HF.
  EXPECT_EQ(tok.encode("x \xF0\x9D\x8B\x80 1\xF0\x9D\x8B\x80"),
            (std::vector<int32_t>{87, 220, 56252, 233, 222, 220, 16, 56252, 233, 222}));
  // U+1DFA (Unicode 14, class 218) has class 0 in HF's NFC: "1 U+059D U+302D U+1DFA" -> 302D 059D 1DFA.
  EXPECT_EQ(tok.encode("1\xD6\x9D\xE3\x80\xAD\xE1\xB7\xBA"),
            (std::vector<int32_t>{16, 1277, 255, 146, 251, 157, 115, 118}));
}

}  // namespace
}  // namespace medr1::tokenizer::test
