// PCRE2 wrapper and the tokenizer.json pre_tokenizer reader (HF Split / ByteLevel / Sequence).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pre_tokenizer.h"

#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "medr1/core/error.h"

namespace medr1::tokenizer::detail {

namespace {

// GPT-2's split regex, used by ByteLevel when use_regex is true (HF ByteLevel::new).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Unicode White_Space, spelled out for a PCRE2 character class. PCRE2's \s (with UCP) also matches
// U+180E MONGOLIAN VOWEL SEPARATOR (its \h list predates Unicode 6.3); Oniguruma, which HF uses,
// follows White_Space, where U+180E is not a space since Unicode 6.3.
constexpr const char* kWhiteSpaceClassBody =
    R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

// Letters and numbers that Oniguruma (HF; Unicode 16 tables) has and PCRE2 10.42 (Unicode 14) lacks,
// added to \p{L} / \p{N}; harmless with a newer PCRE2. Made by probing every code point with HF's
// pre-tokenizer ("x?x" one piece = letter; "??", "!?", " ?" two pieces = number) against PCRE2.
constexpr const char* kExtraLetters =
    R"(\x{1C89}-\x{1C8A}\x{A7CB}-\x{A7CD}\x{A7DA}-\x{A7DC}\x{105C0}-\x{105F3}\x{10D4A}-\x{10D65}\x{10D6F}-\x{10D85})"
    R"(\x{10EC2}-\x{10EC4}\x{1123F}-\x{11240}\x{11380}-\x{11389}\x{1138B}\x{1138E}\x{11390}-\x{113B5}\x{113B7})"
    R"(\x{113D1}\x{113D3}\x{11BC0}-\x{11BE0}\x{11F02}\x{11F04}-\x{11F10}\x{11F12}-\x{11F33}\x{1342F}\x{13441}-)"
    R"(\x{13446}\x{13460}-\x{143FA}\x{16100}-\x{1611D}\x{16D40}-\x{16D6C}\x{18CFF}\x{1B132}\x{1B155}\x{1DF25}-)"
    R"(\x{1DF2A}\x{1E030}-\x{1E06D}\x{1E4D0}-\x{1E4EB}\x{1E5D0}-\x{1E5ED}\x{1E5F0}\x{2B739}\x{2EBF0}-\x{2EE5D})"
    R"(\x{31350}-\x{323AF})";
constexpr const char* kExtraNumbers =
    R"(\x{10D40}-\x{10D49}\x{116D0}-\x{116E3}\x{11BF0}-\x{11BF9}\x{11F50}-\x{11F59}\x{16130}-\x{16139}\x{16D70}-)"
    R"(\x{16D79}\x{1CCF0}-\x{1CCF9}\x{1D2C0}-\x{1D2D3}\x{1E4F0}-\x{1E4F9}\x{1E5F1}-\x{1E5FA})";

// Rewrites \s / \S so that PCRE2 matches exactly Unicode White_Space (see above): \s -> [ws],
// \S -> [^ws], and inside a class \s -> ws (\S inside a class has no such spelling: refused);
// \p{L} / \p{N} get the extra letters / numbers above.
std::string onig_compatible_pattern(const std::string& pat, const std::string& where) {
  std::string out;
  out.reserve(pat.size() + 64);
  bool in_class = false;
  bool quoted = false;  // inside \Q...\E
  for (size_t i = 0; i < pat.size(); ++i) {
    const char c = pat[i];
    if (quoted) {
      if (c == '\\' && i + 1 < pat.size() && pat[i + 1] == 'E') {
        quoted = false;
        out += "\\E";
        ++i;
      } else {
        out.push_back(c);
      }
      continue;
    }
    if (c == '\\' && i + 1 < pat.size()) {
      const char e = pat[i + 1];
      ++i;
      if (e == 'p' && (pat.compare(i + 1, 3, "{L}") == 0 || pat.compare(i + 1, 3, "{N}") == 0)) {
        const bool letters = pat[i + 2] == 'L';
        if (!in_class) out.push_back('[');
        out.append(letters ? "\\p{L}" : "\\p{N}");
        out.append(letters ? kExtraLetters : kExtraNumbers);
        if (!in_class) out.push_back(']');
        i += 3;
      } else if (e == 's') {
        if (!in_class) out.push_back('[');
        out.append(kWhiteSpaceClassBody);
        if (!in_class) out.push_back(']');
      } else if (e == 'S') {
        MEDR1_CHECK(!in_class, where, ": \\S inside a character class is not supported");
        out.append("[^");
        out.append(kWhiteSpaceClassBody);
        out.push_back(']');
      } else {
        if (e == 'Q') quoted = true;
        out.push_back('\\');
        out.push_back(e);
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pat.size() && pat[i + 1] == '^') out.push_back(pat[++i]);
      if (i + 1 < pat.size() && pat[i + 1] == ']') out.push_back(pat[++i]);
      continue;
    }
    if (in_class && c == '[' && i + 1 < pat.size() && pat[i + 1] == ':') {
      const size_t end = pat.find(":]", i + 2);  // POSIX class [:alpha:]
      if (end != std::string::npos) {
        out.append(pat, i, end + 2 - i);
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return std::string(reinterpret_cast<const char*>(buf));
}

// Per-thread match data, match context and JIT stack, shared by all patterns: one ovector pair
// is enough since only the whole match is used (pcre2 then returns 0 for patterns with groups).
struct ThreadMatchState {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mctx = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;

  ThreadMatchState() {
    md = pcre2_match_data_create(1, nullptr);
    mctx = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, nullptr);
    if (mctx && jit_stack) pcre2_jit_stack_assign(mctx, nullptr, jit_stack);
  }
  ~ThreadMatchState() {
    if (jit_stack) pcre2_jit_stack_free(jit_stack);
    if (mctx) pcre2_match_context_free(mctx);
    if (md) pcre2_match_data_free(md);
  }
  ThreadMatchState(const ThreadMatchState&) = delete;
  ThreadMatchState& operator=(const ThreadMatchState&) = delete;
};

ThreadMatchState& thread_state() {
  thread_local ThreadMatchState state;
  return state;
}

}  // namespace

Pcre2Regex::Pcre2Regex(const std::string& pattern, bool literal, const std::string& where) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  uint32_t options = PCRE2_UTF | PCRE2_UCP;
  if (literal) options |= PCRE2_LITERAL;
  const std::string pat = literal ? pattern : onig_compatible_pattern(pattern, where);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(), options,
                                   &err, &err_off, nullptr);
  MEDR1_CHECK(code != nullptr, where, ": cannot compile regex /", pattern, "/ at offset ", err_off, ": ",
              pcre2_message(err));
  code_ = code;
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Pcre2Regex::~Pcre2Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

bool Pcre2Regex::find(std::string_view text, size_t offset, size_t& start, size_t& end) const {
  if (offset > text.size()) return false;
  ThreadMatchState& st = thread_state();
  MEDR1_CHECK(st.md != nullptr && st.mctx != nullptr, "tokenizer: PCRE2 out of memory");
  auto* code = static_cast<pcre2_code*>(code_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc;
  if (jit_) {
    rc = pcre2_jit_match(code, subject, text.size(), offset, 0, st.md, st.mctx);
    // Very long runs can exhaust the JIT stack: the interpreter (heap frames) still works.
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, st.md, st.mctx);
    }
  } else {
    rc = pcre2_match(code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, st.md, st.mctx);
  }
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  MEDR1_CHECK(rc >= 0, "tokenizer: regex match failed: ", pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.md);
  start = ov[0];
  end = ov[1];
  return true;
}

std::unique_ptr<PreTokenizer> PreTokenizer::from_json(const nlohmann::json& spec) {
  auto pt = std::make_unique<PreTokenizer>();
  if (spec.is_null()) return pt;
  MEDR1_CHECK(spec.is_object() && spec.contains("type") && spec["type"].is_string(),
              "tokenizer.json: pre_tokenizer: expected an object with a string \"type\"");
  if (spec["type"] == "Sequence") {
    MEDR1_CHECK(spec.contains("pretokenizers") && spec["pretokenizers"].is_array(),
                "tokenizer.json: pre_tokenizer.pretokenizers: expected an array");
    bool first = true;
    for (const auto& sub : spec["pretokenizers"]) {
      pt->add_step(sub, first);
      first = false;
    }
  } else {
    pt->add_step(spec, true);
  }
  return pt;
}

void PreTokenizer::add_step(const nlohmann::json& spec, bool first) {
  MEDR1_CHECK(spec.is_object() && spec.contains("type") && spec["type"].is_string(),
              "tokenizer.json: pre_tokenizer step: expected an object with a string \"type\", got ", spec.dump());
  const std::string type = spec["type"];
  Step step;
  if (type == "Split") {
    const std::string where = "tokenizer.json: pre_tokenizer Split";
    MEDR1_CHECK(spec.contains("pattern") && spec["pattern"].is_object(), where, ": missing \"pattern\" object");
    const auto& pat = spec["pattern"];
    if (pat.contains("Regex") && pat["Regex"].is_string()) {
      step.regex = std::make_unique<Pcre2Regex>(pat["Regex"].get<std::string>(), false, where);
    } else if (pat.contains("String") && pat["String"].is_string()) {
      step.regex = std::make_unique<Pcre2Regex>(pat["String"].get<std::string>(), true, where);
    } else {
      fail(where, ": pattern: expected {\"Regex\": ...} or {\"String\": ...}, got ", pat.dump());
    }
    const std::string behavior = spec.value("behavior", std::string("Isolated"));
    if (behavior == "Isolated") {
      step.behavior = Behavior::Isolated;
    } else if (behavior == "Removed") {
      step.behavior = Behavior::Removed;
    } else {
      fail(where, ": behavior \"", behavior, "\" is not supported (Isolated, Removed)");
    }
    step.invert = spec.value("invert", false);
  } else if (type == "ByteLevel") {
    byte_level_ = true;
    step.add_prefix_space = spec.value("add_prefix_space", false);
    MEDR1_CHECK(!step.add_prefix_space || first,
                "tokenizer.json: pre_tokenizer ByteLevel with add_prefix_space is only supported as the first step");
    if (spec.value("use_regex", true)) {
      step.regex = std::make_unique<Pcre2Regex>(kGpt2Pattern, false, "ByteLevel regex");
    }
  } else {
    fail("tokenizer.json: pre_tokenizer type \"", type, "\" is not supported (Split, ByteLevel, Sequence)");
  }
  steps_.push_back(std::move(step));
}

}  // namespace medr1::tokenizer::detail
