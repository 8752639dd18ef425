// Answer extraction and scoring for Med-R1 evaluation.
// Mirrors extract_option_answer in Med-R1 src/eval_vqa/test_qwen2*_vqa.py:
//   re.search(r'<answer>\s*(\w+)\s*</answer>', text) -> group(1) or None (first match; Python 3
//   str patterns are Unicode, so \w and \s are Unicode classes: PCRE2 UTF|UCP here).
// Scoring: correct iff both the output and the solution yield an answer and they are equal
// ignoring case (AdvMed-R1 eval_qwen2_5vl_adversarial.py: .upper() equality). Med-R1's own scripts
// differ per file: the think scripts compare the extracted answers exactly (case-sensitive);
// test_qwen2vl_vqa_nothink.py and _zero_shot.py compare the raw output string to the letter;
// test_qwen2_5vl_vqa_nothink.py uses the regex only if "answer" occurs in the output. We keep one
// rule for every setting so clean/attacked and think/no-think numbers are comparable.
// The training reward (rl/rewards) uses a different regex, <answer>(.*?)</answer>; not this one.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace medr1::data {

struct AnswerOptions {
  // false: tags must be lower-case "<answer>" (Med-R1); true: re.IGNORECASE (AdvMed-R1).
  bool ignore_case_tags = false;
  // true: compare answers ignoring case (default, see above); false: exact equality (Med-R1 think).
  bool ignore_case_compare = true;
};

// First <answer> X </answer> in `text` where X is one run of word characters; nullopt if none.
// Invalid UTF-8 in `text` does not throw: matching skips over invalid sequences.
std::optional<std::string> extract_option_answer(std::string_view text,
                                                 const AnswerOptions& opts = {});

// Both present and equal (ignoring case per opts; Unicode simple upper-case mapping).
bool answers_match(const std::optional<std::string>& predicted,
                   const std::optional<std::string>& truth, const AnswerOptions& opts = {});

struct AnswerJudgement {
  std::optional<std::string> extracted_answer;  // from the model output
  std::optional<std::string> gt_answer;         // from the solution
  bool correct = false;
};

// extract_option_answer on both, then answers_match.
AnswerJudgement judge_answer(std::string_view model_output, std::string_view solution,
                             const AnswerOptions& opts = {});

}  // namespace medr1::data
