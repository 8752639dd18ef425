// Med-R1 accuracy / format rewards on PCRE2 set up to behave like Python `re` on str (rewards.h).
// Python semantics we reproduce: `.` matches any code point but '\n' (NEWLINE set to LF, so '\r'
// is an ordinary character), DOTALL via PCRE2_DOTALL, re.fullmatch via ANCHORED|ENDANCHORED,
// code points not bytes (PCRE2_UTF), and `\s` spelled out as the str.isspace() set, because
// PCRE2's Unicode \s (UCP) omits the ASCII separators \x1c-\x1f that Python counts as space.
#include "medr1/rl/rewards.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "medr1/core/error.h"
#include "medr1/rl/external_reward.h"

namespace medr1::rl {
namespace {

// Python's str.isspace() set (Py_UNICODE_ISSPACE), as used by str.strip() and re's `\s`.
bool py_isspace(uint32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
  return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
         c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// The same set as a PCRE2 class, used wherever the Python pattern says `\s`.
constexpr const char* kPySpace =
    "[\\x{09}-\\x{0d}\\x{1c}-\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}"
    "\\x{202f}\\x{205f}\\x{3000}]";

// Decodes one UTF-8 code point at s[i]; returns its length in bytes and the code point, or
// length 1 and nullopt for an invalid or truncated sequence (treated as a non-space "character").
std::pair<size_t, std::optional<uint32_t>> decode_utf8(std::string_view s, size_t i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return {1, b0};
  size_t n = 0;
  uint32_t cp = 0;
  if ((b0 & 0xe0) == 0xc0) {
    n = 2;
    cp = b0 & 0x1f;
  } else if ((b0 & 0xf0) == 0xe0) {
    n = 3;
    cp = b0 & 0x0f;
  } else if ((b0 & 0xf8) == 0xf0) {
    n = 4;
    cp = b0 & 0x07;
  } else {
    return {1, std::nullopt};
  }
  if (i + n > s.size()) return {1, std::nullopt};
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<uint8_t>(s[i + k]);
    if ((b & 0xc0) != 0x80) return {1, std::nullopt};
    cp = (cp << 6) | (b & 0x3f);
  }
  // Reject overlong forms, surrogates and values past U+10FFFF, as a strict decoder does.
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return {1, std::nullopt};
  return {n, cp};
}

// Text as Python would see it after bytes.decode("utf-8", errors="replace") (which is what HF
// decoding produces): invalid bytes become U+FFFD, so `.` matches them as it matches U+FFFD.
// Returns the input unchanged (no copy) in the normal, valid case.
std::string_view as_valid_utf8(std::string_view s, std::string& storage) {
  bool valid = true;
  for (size_t i = 0; i < s.size() && valid;) {
    auto [n, cp] = decode_utf8(s, i);
    valid = cp.has_value();
    i += n;
  }
  if (valid) return s;
  storage.clear();
  for (size_t i = 0; i < s.size();) {
    auto [n, cp] = decode_utf8(s, i);
    if (cp) storage.append(s.substr(i, n));
    else storage.append("\xef\xbf\xbd");
    i += n;
  }
  return storage;
}

struct CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
struct CompileContextDeleter {
  void operator()(pcre2_compile_context* c) const { pcre2_compile_context_free(c); }
};
using CodePtr = std::unique_ptr<pcre2_code, CodeDeleter>;
using MatchDataPtr = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

// A compiled pattern with Python-`re` options. Compiled once (function-local statics below);
// pcre2_code is read-only during matching, so sharing it across threads is safe.
class PyRegex {
 public:
  PyRegex(const std::string& pattern, bool dotall) {
    std::unique_ptr<pcre2_compile_context, CompileContextDeleter> ctx(
        pcre2_compile_context_create(nullptr));
    MEDR1_CHECK(ctx != nullptr, "rewards: pcre2_compile_context_create failed");
    // '\n' is the only newline, so `.` excludes exactly '\n' like Python (not "\r" or "\r\n").
    pcre2_set_newline(ctx.get(), PCRE2_NEWLINE_LF);
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
    if (dotall) opts |= PCRE2_DOTALL;
    int err = 0;
    PCRE2_SIZE off = 0;
    code_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts,
                              &err, &off, ctx.get()));
    if (!code_) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof(buf));
      fail("rewards: cannot compile regex '", pattern, "' at offset ", off, ": ",
           reinterpret_cast<const char*>(buf));
    }
  }

  // re.search: the first match; returns group `group` (byte range) or nullopt.
  std::optional<std::string_view> search(std::string_view s, int group) const {
    MatchDataPtr md(pcre2_match_data_create_from_pattern(code_.get(), nullptr));
    MEDR1_CHECK(md != nullptr, "rewards: pcre2_match_data_create failed");
    int rc = run(s, 0, md.get());
    if (rc <= group) return std::nullopt;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    if (ov[2 * group] == PCRE2_UNSET) return std::nullopt;
    return s.substr(ov[2 * group], ov[2 * group + 1] - ov[2 * group]);
  }

  // re.fullmatch: the pattern must span the whole subject.
  bool fullmatch(std::string_view s) const {
    MatchDataPtr md(pcre2_match_data_create_from_pattern(code_.get(), nullptr));
    MEDR1_CHECK(md != nullptr, "rewards: pcre2_match_data_create failed");
    return run(s, PCRE2_ANCHORED | PCRE2_ENDANCHORED, md.get()) > 0;
  }

 private:
  int run(std::string_view s, uint32_t opts, pcre2_match_data* md) const {
    int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, opts,
                         md, nullptr);
    // No match is normal; any other negative code (match limit, ...) is a real failure.
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof(buf));
      fail("rewards: pcre2_match failed (", rc, "): ", reinterpret_cast<const char*>(buf));
    }
    return rc;
  }

  CodePtr code_;
};

const PyRegex& answer_regex() {
  static const PyRegex re("<answer>(.*?)</answer>", /*dotall=*/false);
  return re;
}
const PyRegex& format_regex(PromptMode mode) {
  static const PyRegex think(std::string("<think>.*?</think>") + kPySpace + "*<answer>.*?</answer>",
                             /*dotall=*/true);
  static const PyRegex nothink(std::string(kPySpace) + "*<answer>.*?</answer>", /*dotall=*/true);
  return mode == PromptMode::think ? think : nothink;
}

// "external:<command>" functions, started on first use and shared by every registry.
const RewardFunc& external_func(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, RewardFunc> started;
  std::lock_guard<std::mutex> lock(mu);
  auto it = started.find(name);
  if (it == started.end())
    it = started.emplace(name, make_external_reward(name.substr(kExternalRewardPrefix.size())))
             .first;
  return it->second;
}

std::vector<double> accuracy_func(const RewardInputs& in) {
  MEDR1_CHECK(in.completions.size() == in.solutions.size(), "accuracy reward: ",
              in.completions.size(), " completions but ", in.solutions.size(), " solutions");
  std::vector<double> out(in.completions.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = accuracy_reward(in.completions[i], in.solutions[i]);
  return out;
}

std::vector<double> soft_overlong_func(const RewardInputs& in) {
  MEDR1_CHECK(in.completion_lengths != nullptr && in.completion_lengths->size() == in.completions.size(),
              "soft_overlong_punishment reward: needs the completions' token lengths (",
              in.completion_lengths ? in.completion_lengths->size() : 0, " for ", in.completions.size(),
              " completions)");
  std::vector<double> out(in.completions.size());
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = soft_overlong_punishment((*in.completion_lengths)[i], in.soft_punish_max_completion_len,
                                      in.soft_punish_cache);
  return out;
}

std::vector<double> format_func(const RewardInputs& in) {
  std::vector<double> out(in.completions.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = format_reward(in.completions[i], in.mode);
  return out;
}

}  // namespace

double soft_overlong_punishment(int64_t completion_length, int64_t max_completion_len, int64_t soft_punish_cache) {
  MEDR1_CHECK(max_completion_len > 0 && soft_punish_cache >= 0 && soft_punish_cache <= max_completion_len,
              "soft_overlong_punishment: need 0 <= soft_punish_cache (", soft_punish_cache,
              ") <= max_completion_len (", max_completion_len, ") and max_completion_len > 0");
  const int64_t safe = max_completion_len - soft_punish_cache;
  if (completion_length <= safe) return 0.0;
  if (completion_length <= max_completion_len)
    return static_cast<double>(safe - completion_length) / static_cast<double>(soft_punish_cache);
  return -1.0;
}

PromptMode prompt_mode_from_string(std::string_view s) {
  if (s == "think") return PromptMode::think;
  if (s == "nothink") return PromptMode::nothink;
  fail("prompt_template: expected \"think\" or \"nothink\", got \"", s, "\"");
}

const char* to_string(PromptMode m) { return m == PromptMode::think ? "think" : "nothink"; }

std::string py_strip(std::string_view s) {
  size_t begin = s.size();  // byte offset of the first non-space code point
  size_t end = 0;           // byte offset just past the last non-space code point
  for (size_t i = 0; i < s.size();) {
    auto [n, cp] = decode_utf8(s, i);
    if (!cp || !py_isspace(*cp)) {
      if (begin == s.size()) begin = i;
      end = i + n;
    }
    i += n;
  }
  if (begin >= end) return {};
  return std::string(s.substr(begin, end - begin));
}

std::string extract_answer(std::string_view text_in) {
  std::string storage;
  const std::string_view text = as_valid_utf8(text_in, storage);
  if (auto g = answer_regex().search(text, 1)) return py_strip(*g);
  return py_strip(text);
}

double accuracy_reward(std::string_view completion, std::string_view solution) {
  return extract_answer(completion) == extract_answer(solution) ? 1.0 : 0.0;
}

double format_reward(std::string_view completion, PromptMode mode) {
  std::string storage;
  return format_regex(mode).fullmatch(as_valid_utf8(completion, storage)) ? 1.0 : 0.0;
}

void RewardRegistry::add(const std::string& name, RewardFunc fn) {
  MEDR1_CHECK(!name.empty(), "RewardRegistry::add: empty name");
  MEDR1_CHECK(static_cast<bool>(fn), "RewardRegistry::add: empty function for '", name, "'");
  funcs_[name] = std::move(fn);
}

bool RewardRegistry::contains(const std::string& name) const {
  return funcs_.count(name) != 0 || is_external_reward_name(name);
}

const RewardFunc& RewardRegistry::get(const std::string& name) const {
  auto it = funcs_.find(name);
  if (it == funcs_.end()) {
    if (is_external_reward_name(name)) return external_func(name);
    std::string known;
    for (const auto& [k, v] : funcs_) known += (known.empty() ? "" : ", ") + k;
    fail("reward_funcs: unknown reward function '", name, "' (known: ", known,
         ", or external:<command>)");
  }
  return it->second;
}

std::vector<std::string> RewardRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : funcs_) out.push_back(k);
  return out;
}

const RewardRegistry& default_registry() {
  static const RewardRegistry reg = [] {
    RewardRegistry r;
    r.add("accuracy", accuracy_func);
    r.add("format", format_func);
    r.add("soft_overlong_punishment", soft_overlong_func);
    return r;
  }();
  return reg;
}

RewardResult compute_rewards(const RewardInputs& in, const std::vector<std::string>& names,
                             const std::vector<double>& weights, const RewardRegistry& registry) {
  MEDR1_CHECK(!names.empty(), "compute_rewards: no reward functions given");
  MEDR1_CHECK(weights.empty() || weights.size() == names.size(),
              "compute_rewards: ", weights.size(), " reward_weights for ", names.size(),
              " reward_funcs");
  const size_t n = in.completions.size();
  RewardResult r;
  r.names = names;
  r.total.assign(n, 0.0);
  std::vector<bool> any_scored(n, false);
  for (size_t f = 0; f < names.size(); ++f) {
    std::vector<double> v = registry.get(names[f])(in);
    MEDR1_CHECK(v.size() == n, "reward function '", names[f], "' returned ", v.size(),
                " values for ", n, " completions");
    const double w = weights.empty() ? 1.0 : weights[f];
    for (size_t i = 0; i < n; ++i) {
      if (std::isnan(v[i])) continue;  // TRL: nansum over functions
      r.total[i] += w * v[i];
      any_scored[i] = true;
    }
    r.per_func.push_back(std::move(v));
  }
  // A completion no function scored stays NaN, so advantages can exclude it from the baseline.
  for (size_t i = 0; i < n; ++i)
    if (!any_scored[i]) r.total[i] = std::numeric_limits<double>::quiet_NaN();
  return r;
}

}  // namespace medr1::rl
