// medr1::tokenizer::Tokenizer: loads tokenizer.json (+ tokenizer_config.json, chat_template.json) and
// runs HF tokenizers' encode pipeline: AddedVocabulary split on the raw text, normalizer on the
// remaining pieces (then the normalized added tokens), pre-tokenizer, BPE with a word cache (HF's BPE
// keeps one too); decode mirrors HF Tokenizer::decode with the ByteLevel decoder. No post-processor
// template is applied (Qwen files only hold a ByteLevel one, which adds nothing).
#include "medr1/tokenizer/tokenizer.h"

#include <utf8proc.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "medr1/core/error.h"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizer.h"

namespace medr1::tokenizer {

using detail::AddedToken;
using detail::StringHash;

namespace {

constexpr size_t kCacheCapacity = size_t{1} << 17;  // words; HF's BPE cache holds 10k
constexpr size_t kMaxCachedWord = 256;              // bytes (< 2^16 for the cache slots)

std::string read_file(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  MEDR1_CHECK(f.good(), what, ": cannot open ", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

template <typename... Args>
std::string detail_cat(Args&&... args) {
  return ::medr1::detail::cat(std::forward<Args>(args)...);
}

nlohmann::json parse_json(const std::string& text, const std::string& what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail(what, ": invalid JSON: ", e.what());
  }
}

// Parses tokenizer.json. model.vocab and model.merges (~300k entries) go straight into `src` through
// the parser callback instead of the JSON DOM (left as an empty object / array), which makes
// loading several times faster. Errors in them are reported after the parse, first one wins.
nlohmann::json parse_tokenizer_json(const std::string& text, detail::BpeSource& src) {
  using Event = nlohmann::json::parse_event_t;
  std::string key1, key2, pending_key, error;
  bool in_vocab = false, in_merges = false, pair_bad = false;
  std::vector<std::string> pair;
  size_t merge_index = 0;
  auto set_error = [&](auto&&... parts) {
    if (error.empty()) error = detail_cat("tokenizer.json: model.", parts...);
  };
  auto add_legacy_merge = [&](const std::string& m) {
    const size_t sp = m.find(' ');
    if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos) {
      set_error("merges[", merge_index, "]: expected \"left right\" with exactly one space, got \"", m, "\"");
    } else {
      src.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
    ++merge_index;
  };
  nlohmann::json::parser_callback_t cb = [&](int depth, Event ev, nlohmann::json& parsed) -> bool {
    if (in_vocab && depth >= 3) {
      if (ev == Event::key && depth == 3) {
        pending_key = parsed.get_ref<const std::string&>();
      } else if (ev == Event::value && depth == 3) {
        if (parsed.is_number_integer() && parsed.get<int64_t>() >= 0 && parsed.get<int64_t>() <= INT32_MAX) {
          src.vocab.insert(pending_key, parsed.get<int32_t>());
        } else {
          set_error("vocab[\"", pending_key, "\"]: expected a non-negative integer id, got ", parsed.dump());
        }
      } else if (ev == Event::object_start || ev == Event::array_start) {
        set_error("vocab[\"", pending_key, "\"]: expected a non-negative integer id, got a container");
      }
      return false;
    }
    if (in_merges && depth >= 3) {
      if (depth == 3 && ev == Event::value) {
        if (parsed.is_string()) {
          add_legacy_merge(parsed.get_ref<const std::string&>());
        } else {
          set_error("merges[", merge_index++, "]: expected \"left right\" or [\"left\", \"right\"], got ",
                    parsed.dump());
        }
        return false;
      }
      if (depth == 3 && ev == Event::array_start) {
        pair.clear();
        pair_bad = false;
        return true;  // keep it open so its items reach this callback
      }
      if (depth == 4 && ev == Event::value) {
        if (parsed.is_string()) {
          pair.push_back(parsed.get_ref<const std::string&>());
        } else {
          pair_bad = true;
        }
        return false;
      }
      if (depth == 3 && ev == Event::array_end) {
        if (pair_bad || pair.size() != 2) {
          set_error("merges[", merge_index, "]: expected \"left right\" or [\"left\", \"right\"], got an array of ",
                    pair.size() + (pair_bad ? 1 : 0), " items");
        } else {
          src.merges.emplace_back(std::move(pair[0]), std::move(pair[1]));
        }
        ++merge_index;
        return false;
      }
      if (ev == Event::object_start || (depth >= 4 && ev == Event::array_start)) {
        pair_bad = true;
        if (depth == 3) {
          set_error("merges[", merge_index++, "]: expected \"left right\" or [\"left\", \"right\"], got an object");
        }
        return false;
      }
      return false;
    }
    if (ev == Event::key) {
      if (depth == 1) key1 = parsed.get_ref<const std::string&>();
      if (depth == 2) key2 = parsed.get_ref<const std::string&>();
    } else if (depth == 2 && key1 == "model") {
      if (ev == Event::object_start && key2 == "vocab") in_vocab = true;
      if (ev == Event::array_start && key2 == "merges") in_merges = true;
      if (ev == Event::object_end) in_vocab = false;
      if (ev == Event::array_end) in_merges = false;
    }
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, cb);
  } catch (const nlohmann::json::parse_error& e) {
    fail("tokenizer.json: invalid JSON: ", e.what());
  }
  MEDR1_CHECK(error.empty(), error);
  return j;
}

// A normalizer step: utf8proc options for NFC / NFD / NFKC / NFKD.
struct NormStep {
  utf8proc_option_t options;
  bool nfc;
};

// True when `s` is certainly NFC already: every code point below U+0300 or in U+4000..U+9FFF
// (CJK), all of which have canonical combining class 0 and NFC_Quick_Check=Yes.
bool quick_nfc(std::string_view s) {
  for (unsigned char b : s) {
    if (b >= 0xCC && !(b >= 0xE4 && b <= 0xE9)) return false;
  }
  return true;
}

// Code points whose NFC differs between HF's Rust normalizer and utf8proc (Unicode 15): HF's tables
// are older, so it gives these newer combining marks class 0 and does not compose U+11935 U+11930.
// HF therefore treats each as an unassigned starter: nothing reorders across it or composes with it,
// which is what normalizing the text between them separately reproduces.
// Made by scripts/tokenizer_nfc_probe.py (every utf8proc code point with a combining class or a
// decomposition, probed against the Rust normalizer).
constexpr char32_t kNfcUnknownToHf[] = {
    0x7FD, 0x898, 0x899, 0x89A, 0x89B, 0x89C, 0x89D, 0x89E, 0x89F, 0x8CA, 0x8CB, 0x8CC, 0x8CD, 0x8CE, 0x8CF,
    0x8D0, 0x8D1, 0x8D2, 0x8D3, 0x9FE, 0xC3C, 0xD3B, 0xD3C, 0xEBA, 0x1715, 0x1ABF, 0x1AC0, 0x1AC1, 0x1AC2,
    0x1AC3, 0x1AC4, 0x1AC5, 0x1AC6, 0x1AC7, 0x1AC8, 0x1AC9, 0x1ACA, 0x1ACB, 0x1ACC, 0x1ACD, 0x1ACE, 0x1DF6,
    0x1DF7, 0x1DF8, 0x1DF9, 0x1DFA, 0xA82C, 0x10D24, 0x10D25, 0x10D26, 0x10D27, 0x10EAB, 0x10EAC, 0x10EFD,
    0x10EFE, 0x10EFF, 0x10F46, 0x10F47, 0x10F48, 0x10F49, 0x10F4A, 0x10F4B, 0x10F4C, 0x10F4D, 0x10F4E,
    0x10F4F, 0x10F50, 0x10F82, 0x10F83, 0x10F84, 0x10F85, 0x11070, 0x1133B, 0x1145E, 0x11839, 0x1183A,
    0x11930, 0x11935, 0x11938, 0x1193D, 0x1193E, 0x11943, 0x119E0, 0x11A34, 0x11A47, 0x11A99, 0x11D42,
    0x11D44, 0x11D45, 0x11D97, 0x11F41, 0x11F42, 0x16FF0, 0x16FF1, 0x1E08F, 0x1E130, 0x1E131, 0x1E132,
    0x1E133, 0x1E134, 0x1E135, 0x1E136, 0x1E2AE, 0x1E2EC, 0x1E2ED, 0x1E2EE, 0x1E2EF, 0x1E4EC, 0x1E4ED,
    0x1E4EE, 0x1E4EF};

bool unknown_to_hf(char32_t cp) {
  return cp >= kNfcUnknownToHf[0] &&
         std::binary_search(std::begin(kNfcUnknownToHf), std::end(kNfcUnknownToHf), cp);
}

// utf8proc normalization of `s` appended to `out`.
void utf8proc_append(std::string_view s, utf8proc_option_t options, std::string& out) {
  if (s.empty()) return;
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                          static_cast<utf8proc_ssize_t>(s.size()), &dst, options);
  MEDR1_CHECK(n >= 0, "tokenizer: normalization failed: ", utf8proc_errmsg(n));
  out.append(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  std::free(dst);
}

// Normalizes like HF: the runs between kNfcUnknownToHf code points separately, those kept as is.
std::string normalize_like_hf(std::string_view s, utf8proc_option_t options) {
  std::string out;
  out.reserve(s.size() + 8);
  size_t seg = 0, i = 0;
  while (i < s.size()) {
    const size_t at = i;
    const char32_t cp = detail::next_code_point(s, i);
    if (unknown_to_hf(cp)) {
      utf8proc_append(s.substr(seg, at - seg), options, out);
      out.append(s.substr(at, i - at));
      seg = i;
    }
  }
  utf8proc_append(s.substr(seg), options, out);
  return out;
}

bool all_ascii(std::string_view s) {
  for (unsigned char b : s) {
    if (b >= 0x80) return false;
  }
  return true;
}

// "<tok>" or {"content": "<tok>", ...} in tokenizer_config.json.
std::string token_field(const nlohmann::json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return {};
  const auto& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  fail("tokenizer_config.json: ", key, ": expected a string or {\"content\": ...}, got ", v.dump());
}

// chat_template: a string, or a list of {"name", "template"} (the "default" one, else the first).
std::string template_field(const nlohmann::json& j, const std::string& what) {
  if (!j.contains("chat_template") || j["chat_template"].is_null()) return {};
  const auto& v = j["chat_template"];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    for (const auto& t : v) {
      if (t.is_object() && t.value("name", std::string()) == "default" && t.contains("template")) {
        return t["template"].get<std::string>();
      }
    }
    if (!v.empty() && v[0].is_object() && v[0].contains("template")) return v[0]["template"].get<std::string>();
  }
  fail(what, ": chat_template: expected a string or a list of {name, template}");
}

// Pre-token -> ids cache (HF's BPE keeps one too): open addressing over one key arena and one id
// arena, insert-only up to kCacheCapacity words. Not thread-safe by itself (TokenizerImpl guards it).
class WordCache {
 public:
  // Appends the ids of `word` to `out`; false when the word is not cached.
  bool lookup(std::string_view word, uint64_t h, std::vector<int32_t>& out) const {
    if (slots_.empty()) return false;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.hash == 0) return false;
      if (s.hash == h && s.key_len == word.size() &&
          std::memcmp(keys_.data() + s.key_off, word.data(), word.size()) == 0) {
        out.insert(out.end(), ids_.begin() + s.ids_off, ids_.begin() + s.ids_off + s.n_ids);
        return true;
      }
    }
  }
  void insert(std::string_view word, uint64_t h, const int32_t* ids, size_t n) {
    if (size_ >= kCacheCapacity || n > 0xFFFF) return;
    if (slots_.empty()) {
      slots_.assign(kCacheCapacity * 2, Slot{});
      mask_ = slots_.size() - 1;
    }
    size_t i = h & mask_;
    while (slots_[i].hash != 0) {
      if (slots_[i].hash == h && slots_[i].key_len == word.size() &&
          std::memcmp(keys_.data() + slots_[i].key_off, word.data(), word.size()) == 0) {
        return;  // another thread cached it meanwhile
      }
      i = (i + 1) & mask_;
    }
    slots_[i] = Slot{h, static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(ids_.size()),
                     static_cast<uint16_t>(word.size()), static_cast<uint16_t>(n)};
    keys_.append(word);
    ids_.insert(ids_.end(), ids, ids + n);
    ++size_;
  }
  // Hash for the cache: never 0 (0 marks an empty slot).
  static uint64_t hash(std::string_view word) { return detail::hash_bytes(word) | 1; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_off = 0;
    uint32_t ids_off = 0;
    uint16_t key_len = 0;
    uint16_t n_ids = 0;
  };
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> ids_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace

struct TokenizerImpl {
  std::vector<AddedToken> added;
  detail::AddedTokenMatcher raw_matcher;   // added tokens with normalized=false
  detail::AddedTokenMatcher norm_matcher;  // added tokens with normalized=true (matched on normalized text)
  std::vector<NormStep> normalizer;
  std::unique_ptr<detail::PreTokenizer> pre;
  detail::BPE bpe;
  bool decoder_byte_level = false;

  // Per id: token string (added content overrides the vocab), its decoded bytes, flags.
  std::string token_blob, decoded_blob;
  std::vector<uint32_t> token_off, decoded_off;
  std::vector<uint8_t> flags;  // kHasToken | kSpecial
  static constexpr uint8_t kHasToken = 1, kSpecial = 2;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> added_by_content;

  int32_t eos_id = -1, pad_id = -1;
  std::string eos, pad, chat_template;

  mutable std::mutex cache_mu;
  mutable WordCache cache;

  std::string normalize(std::string_view s) const;
  void encode_piece(std::string_view normalized, std::vector<int32_t>& out) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  std::string_view token_of(int32_t id) const {
    return std::string_view(token_blob).substr(token_off[id], token_off[id + 1] - token_off[id]);
  }
  std::string_view decoded_of(int32_t id) const {
    return std::string_view(decoded_blob).substr(decoded_off[id], decoded_off[id + 1] - decoded_off[id]);
  }
  bool has(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < flags.size() && (flags[id] & kHasToken);
  }
};

std::string TokenizerImpl::normalize(std::string_view s) const {
  std::string cur(s);
  for (const NormStep& step : normalizer) {
    if (step.nfc ? quick_nfc(cur) : all_ascii(cur)) continue;
    cur = normalize_like_hf(cur, step.options);
  }
  return cur;
}

void TokenizerImpl::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  const bool cacheable = word.size() <= kMaxCachedWord;
  uint64_t h = 0;
  if (cacheable) {
    h = WordCache::hash(word);
    // try_lock: a contended cache is skipped rather than waited for.
    if (cache_mu.try_lock()) {
      const bool hit = cache.lookup(word, h, out);
      cache_mu.unlock();
      if (hit) return;
    }
  }
  const size_t before = out.size();
  bpe.encode_word(word, out);
  if (cacheable && cache_mu.try_lock()) {
    cache.insert(word, h, out.data() + before, out.size() - before);
    cache_mu.unlock();
  }
}

void TokenizerImpl::encode_piece(std::string_view normalized, std::vector<int32_t>& out) const {
  pre->split(normalized, [&](std::string_view word) { encode_word(word, out); });
}

Tokenizer::Tokenizer(std::shared_ptr<const TokenizerImpl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::from_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path d(dir);
  const fs::path tok = d / "tokenizer.json";
  MEDR1_CHECK(fs::exists(tok), "tokenizer: ", tok.string(),
              " not found (for medr1's test fixtures run scripts/tokenizer_fixtures.sh)");
  const fs::path cfg = d / "tokenizer_config.json";
  std::string cfg_text = fs::exists(cfg) ? read_file(cfg.string(), "tokenizer_config.json") : std::string();
  Tokenizer t = from_json_string(read_file(tok.string(), "tokenizer.json"), cfg_text);
  const fs::path ct = d / "chat_template.json";
  if (fs::exists(ct)) {
    const nlohmann::json j = parse_json(read_file(ct.string(), "chat_template.json"), ct.string());
    const std::string tpl = template_field(j, ct.string());
    if (!tpl.empty()) std::const_pointer_cast<TokenizerImpl>(t.impl_)->chat_template = tpl;
  }
  return t;
}

Tokenizer Tokenizer::from_file(const std::string& tokenizer_json, const std::string& tokenizer_config_json) {
  MEDR1_CHECK(std::filesystem::exists(tokenizer_json), "tokenizer: ", tokenizer_json,
              " not found (for medr1's test fixtures run scripts/tokenizer_fixtures.sh)");
  std::string cfg_text;
  if (!tokenizer_config_json.empty()) cfg_text = read_file(tokenizer_config_json, "tokenizer_config.json");
  return from_json_string(read_file(tokenizer_json, "tokenizer.json"), cfg_text);
}

Tokenizer Tokenizer::from_json_string(const std::string& tokenizer_json, const std::string& tokenizer_config_json) {
  auto impl = std::make_shared<TokenizerImpl>();
  detail::BpeSource bpe_src;
  const nlohmann::json j = parse_tokenizer_json(tokenizer_json, bpe_src);
  MEDR1_CHECK(j.is_object(), "tokenizer.json: expected a JSON object at the top level");
  MEDR1_CHECK(j.contains("model"), "tokenizer.json: missing \"model\"");

  // Normalizer.
  auto add_norm = [&](const nlohmann::json& n, auto& self) -> void {
    if (n.is_null()) return;
    MEDR1_CHECK(n.is_object() && n.contains("type"), "tokenizer.json: normalizer: expected an object with \"type\"");
    const std::string type = n["type"].get<std::string>();
    if (type == "NFC") {
      impl->normalizer.push_back({static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE), true});
    } else if (type == "NFD") {
      impl->normalizer.push_back({static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE), false});
    } else if (type == "NFKC") {
      impl->normalizer.push_back(
          {static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT), false});
    } else if (type == "NFKD") {
      impl->normalizer.push_back(
          {static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT), false});
    } else if (type == "Sequence") {
      MEDR1_CHECK(n.contains("normalizers") && n["normalizers"].is_array(),
                  "tokenizer.json: normalizer.normalizers: expected an array");
      for (const auto& sub : n["normalizers"]) self(sub, self);
    } else {
      fail("tokenizer.json: normalizer type \"", type, "\" is not supported (NFC, NFD, NFKC, NFKD, Sequence)");
    }
  };
  add_norm(j.value("normalizer", nlohmann::json()), add_norm);

  impl->pre = detail::PreTokenizer::from_json(j.value("pre_tokenizer", nlohmann::json()));
  impl->bpe = detail::BPE::build(j["model"], std::move(bpe_src), impl->pre->byte_level());

  const nlohmann::json dec = j.value("decoder", nlohmann::json());
  if (!dec.is_null()) {
    MEDR1_CHECK(dec.is_object() && dec.value("type", std::string()) == "ByteLevel",
                "tokenizer.json: decoder: only ByteLevel (or null) is supported, got ", dec.dump());
    impl->decoder_byte_level = true;
  }

  // Added tokens.
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    const auto& at = j["added_tokens"];
    MEDR1_CHECK(at.is_array(), "tokenizer.json: added_tokens: expected an array");
    for (size_t i = 0; i < at.size(); ++i) {
      const auto& t = at[i];
      MEDR1_CHECK(t.is_object() && t.contains("id") && t["id"].is_number_integer() && t["id"].get<int64_t>() >= 0 &&
                      t.contains("content") && t["content"].is_string(),
                  "tokenizer.json: added_tokens[", i, "]: expected {\"id\": <int >= 0>, \"content\": <string>, ...}, got ",
                  t.dump());
      AddedToken a;
      a.id = t["id"].get<int32_t>();
      a.content = t["content"].get<std::string>();
      a.single_word = t.value("single_word", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      a.normalized = t.value("normalized", !t.value("special", false));
      a.special = t.value("special", false);
      MEDR1_CHECK(detail::find_invalid_utf8(a.content) == std::string_view::npos, "tokenizer.json: added_tokens[", i,
                  "].content: invalid UTF-8");
      impl->added.push_back(std::move(a));
    }
  }
  std::vector<const AddedToken*> raw_toks, norm_toks;
  std::vector<std::string> raw_pats, norm_pats;
  for (const AddedToken& a : impl->added) {
    impl->added_by_content[a.content] = a.id;
    if (a.normalized) {
      norm_toks.push_back(&a);
      norm_pats.push_back(impl->normalize(a.content));
    } else {
      raw_toks.push_back(&a);
      raw_pats.push_back(a.content);
    }
  }
  impl->raw_matcher.build(std::move(raw_toks), std::move(raw_pats));
  impl->norm_matcher.build(std::move(norm_toks), std::move(norm_pats));

  // Id tables.
  size_t size = 0;
  impl->bpe.vocab().for_each([&](std::string_view, int32_t id) { size = std::max(size, static_cast<size_t>(id) + 1); });
  for (const AddedToken& a : impl->added) size = std::max(size, static_cast<size_t>(a.id) + 1);
  std::vector<std::string_view> tok_of(size);
  std::vector<uint8_t> present(size, 0);
  impl->bpe.vocab().for_each([&](std::string_view tok, int32_t id) {
    tok_of[id] = tok;
    present[id] = 1;
  });
  impl->flags.assign(size, 0);
  for (const AddedToken& a : impl->added) {
    tok_of[a.id] = a.content;
    present[a.id] = 1;
    impl->flags[a.id] = a.special ? TokenizerImpl::kSpecial : 0;
  }
  impl->token_off.assign(size + 1, 0);
  impl->decoded_off.assign(size + 1, 0);
  for (size_t id = 0; id < size; ++id) {
    if (present[id]) {
      impl->flags[id] |= TokenizerImpl::kHasToken;
      impl->token_blob += tok_of[id];
      if (impl->decoder_byte_level) {
        impl->decoded_blob += detail::byte_level_decode_token(tok_of[id]);
      } else {
        impl->decoded_blob += tok_of[id];
      }
    }
    impl->token_off[id + 1] = static_cast<uint32_t>(impl->token_blob.size());
    impl->decoded_off[id + 1] = static_cast<uint32_t>(impl->decoded_blob.size());
  }

  // tokenizer_config.json.
  if (!tokenizer_config_json.empty()) {
    const nlohmann::json cfg = parse_json(tokenizer_config_json, "tokenizer_config.json");
    MEDR1_CHECK(cfg.is_object(), "tokenizer_config.json: expected a JSON object");
    impl->eos = token_field(cfg, "eos_token");
    impl->pad = token_field(cfg, "pad_token");
    impl->chat_template = template_field(cfg, "tokenizer_config.json");
  }
  Tokenizer t(impl);
  if (!impl->eos.empty()) impl->eos_id = t.token_to_id(impl->eos).value_or(-1);
  if (!impl->pad.empty()) impl->pad_id = t.token_to_id(impl->pad).value_or(-1);
  return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const TokenizerImpl& im = *impl_;
  const size_t bad = detail::find_invalid_utf8(text);
  MEDR1_CHECK(bad == std::string_view::npos, "tokenizer: encode: invalid UTF-8 at byte ", bad);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  im.raw_matcher.split(text, [&](std::string_view piece, int32_t id) {
    if (id >= 0) {
      out.push_back(id);
      return;
    }
    const std::string normalized = im.normalize(piece);
    im.norm_matcher.split(normalized, [&](std::string_view p2, int32_t id2) {
      if (id2 >= 0) {
        out.push_back(id2);
      } else {
        im.encode_piece(p2, out);
      }
    });
  });
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const TokenizerImpl& im = *impl_;
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    if (!im.has(id)) continue;  // HF drops ids it has no token for
    if (skip_special_tokens && (im.flags[id] & TokenizerImpl::kSpecial)) continue;
    if (!im.decoder_byte_level && !first) bytes.push_back(' ');  // no decoder: HF joins tokens with spaces
    bytes += im.decoded_of(id);
    first = false;
  }
  return detail::utf8_lossy(bytes);
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->added_by_content.find(token);
  if (it != impl_->added_by_content.end()) return it->second;
  return impl_->bpe.token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (!impl_->has(id)) return std::nullopt;
  return std::string(impl_->token_of(id));
}

int32_t Tokenizer::eos_token_id() const { return impl_->eos_id; }
int32_t Tokenizer::pad_token_id() const { return impl_->pad_id; }
std::string Tokenizer::eos_token() const { return impl_->eos; }
std::string Tokenizer::pad_token() const { return impl_->pad; }
std::string Tokenizer::chat_template() const { return impl_->chat_template; }
size_t Tokenizer::vocab_size() const { return impl_->flags.size(); }
bool Tokenizer::is_special(int32_t id) const {
  return impl_->has(id) && (impl_->flags[id] & TokenizerImpl::kSpecial);
}

}  // namespace medr1::tokenizer
