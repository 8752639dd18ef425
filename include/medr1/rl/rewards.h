// GRPO reward functions of Med-R1 (R1-V open_r1/grpo_vqa.py and grpo_vqa_nothink.py) and a
// small by-name registry. accuracy_reward mirrors the regex path of Med-R1's accuracy_reward
// (first `<answer>(.*?)</answer>`, Python str.strip(), exact compare); format_reward mirrors
// re.fullmatch(pattern, content, re.DOTALL) with the think / no-think patterns. Regexes run on
// PCRE2 configured to Python `re` semantics. Deliberately NOT done: Med-R1's first step,
// math_verify.parse/verify (see accuracy_reward). No torch here on purpose.
#pragma once

#include <cstddef>
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

// What every reward function sees: N completions (decoded text, skip_special_tokens) and, per
// completion, its dataset solution (prompt columns repeated G times, as TRL passes them).
struct RewardInputs {
  const std::vector<std::string>& completions;  // [N]
  const std::vector<std::string>& solutions;    // [N]
  PromptMode mode = PromptMode::think;
};

// A reward function returns one value per completion; NaN means "not scored" (TRL's None).
using RewardFunc = std::function<std::vector<double>(const RewardInputs&)>;

// Reward functions by name. default_registry() holds "accuracy" and "format" (format picks the
// think / no-think pattern from RewardInputs::mode).
class RewardRegistry {
 public:
  void add(const std::string& name, RewardFunc fn);  // replaces an existing entry
  bool contains(const std::string& name) const { return funcs_.count(name) != 0; }
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
