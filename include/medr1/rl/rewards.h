// GRPO reward functions of Med-R1 (R1-V open_r1/grpo_vqa.py and grpo_vqa_nothink.py) and a
// small by-name registry. accuracy_reward mirrors the regex path of Med-R1's accuracy_reward
// (first `<answer>(.*?)</answer>`, Python str.strip(), exact compare); format_reward mirrors
// re.fullmatch(pattern, content, re.DOTALL) with the think / no-think patterns. Regexes run on
// PCRE2 configured to Python `re` semantics. Deliberately NOT done: Med-R1's first step,
// math_verify.parse/verify (see accuracy_reward). No torch here on purpose.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace medr1::rl {

// Which Med-R1 training script the run mirrors: grpo_vqa.py (think) or grpo_vqa_nothink.py.
enum class PromptMode { think, nothink };

// "think" | "nothink" -> PromptMode; throws medr1::Error naming the value otherwise.
PromptMode prompt_mode_from_string(std::string_view s);
const char* to_string(PromptMode m);

// Python str.strip() with no argument: removes leading and trailing code points for which
// str.isspace() is true (ASCII \t\n\v\f\r, \x1c-\x1f, space, U+0085, U+00A0, U+1680,
// U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). Input is UTF-8; bytes that are not
// valid UTF-8 count as non-space.
std::string py_strip(std::string_view s);

// Regex matching reads invalid UTF-8 bytes as U+FFFD, as Python sees text that was decoded with
// errors="replace" (HF decoding); valid input is matched in place without a copy.

// The text Med-R1 compares: group(1).strip() of the first re.search(r'<answer>(.*?)</answer>')
// (no DOTALL: `.` does not match '\n'), else the whole text stripped.
std::string extract_answer(std::string_view text);

// 1.0 if extract_answer(completion) == extract_answer(solution) (exact, case-sensitive), else 0.0.
// Med-R1 first tries math_verify.verify(parse(content), parse(sol)) and only falls back to this
// regex path when that gives 0; we skip math_verify. The skip can only lower a reward, and only
// where the regex path fails but math_verify parses an equal expression out of the text (e.g. a
// letter that is not inside well-formed tags); for the single-letter answers of OmniMedVQA the
// regex path decides in practice.
double accuracy_reward(std::string_view completion, std::string_view solution);

// 1.0 if the whole completion matches (re.fullmatch, DOTALL)
//   think:   <think>.*?</think>\s*<answer>.*?</answer>
//   nothink: \s*<answer>.*?</answer>
// else 0.0. `\s` is Python's Unicode \s (the str.isspace() set above).
double format_reward(std::string_view completion, PromptMode mode);

// DAPO's soft overlong punishment (eq. 13; TRL get_soft_overlong_punishment): 0 for a completion of at
// most L_max - L_cache tokens, (L_max - L_cache - length) / L_cache between that and L_max, -1 above
// L_max. Registered as "soft_overlong_punishment" (L_max, L_cache from RewardInputs). L_cache 0 = a hard
// -1 above L_max only.
double soft_overlong_punishment(int64_t completion_length, int64_t max_completion_len, int64_t soft_punish_cache);

// What every reward function sees: N completions (decoded text, skip_special_tokens) and, per
// completion, its dataset solution (prompt columns repeated G times, as TRL passes them).
struct RewardInputs {
  const std::vector<std::string>& completions;  // [N]
  const std::vector<std::string>& solutions;    // [N]
  PromptMode mode = PromptMode::think;
  // Token count of each completion up to and including its first EOS (all its tokens when it has none),
  // as TRL hands completion_ids to reward functions; nullptr when the caller has none (then the
  // length-based rewards refuse to run).
  const std::vector<int64_t>* completion_lengths = nullptr;
  // soft_overlong_punishment's L_max (<= 0: the run's max_completion_length) and L_cache.
  int64_t soft_punish_max_completion_len = 0, soft_punish_cache = 0;
};

// A reward function returns one value per completion; NaN means "not scored" (TRL's None).
using RewardFunc = std::function<std::vector<double>(const RewardInputs&)>;

// Reward functions by name. default_registry() holds "accuracy" and "format" (format picks the
// think / no-think pattern from RewardInputs::mode). Every registry also resolves a name
// "external:<command>" that was not added to it: get() starts <command> on first use
// (make_external_reward, external_reward.h) and keeps it for the process's lifetime, shared by
// all registries.
class RewardRegistry {
 public:
  void add(const std::string& name, RewardFunc fn);      // replaces an existing entry
  bool contains(const std::string& name) const;          // true for added and "external:" names
  const RewardFunc& get(const std::string& name) const;  // throws naming the known names
  std::vector<std::string> names() const;

 private:
  std::map<std::string, RewardFunc> funcs_;
};

const RewardRegistry& default_registry();

// Rewards of one batch: per_func[f][i] is function f on completion i; total[i] is the weighted
// sum over functions, NaN entries skipped (TRL nansum), NaN only when every function gave NaN.
struct RewardResult {
  std::vector<std::string> names;             // [F]
  std::vector<std::vector<double>> per_func;  // [F][N]
  std::vector<double> total;                  // [N]
};

// Runs `names` from `registry` on `in`. `weights` empty = all 1.0 (Med-R1: unweighted sum),
// else one weight per name. Throws on unknown names, size mismatches, or a function returning
// the wrong number of values.
RewardResult compute_rewards(const RewardInputs& in, const std::vector<std::string>& names,
                             const std::vector<double>& weights = {},
                             const RewardRegistry& registry = default_registry());

}  // namespace medr1::rl
