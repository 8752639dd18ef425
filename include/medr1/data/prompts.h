// Med-R1 prompt templates, verbatim, and the `{Question}` substitution.
// Mirrors QUESTION_TEMPLATE in Med-R1 src/r1-v/src/open_r1/grpo_vqa.py / grpo_vqa_nothink.py
// (training), src/eval_vqa/test_qwen2*_vqa*.py (eval) and the README inference snippet, applied
// like Python's QUESTION_TEMPLATE.format(Question=problem). Does not build the chat turn (tokenizer).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace medr1::data {

// grpo_vqa.py (GRPO training, think).
inline constexpr std::string_view kTrainThinkTemplate =
    "{Question} Your task: 1. Think through the question step by step, enclose your reasoning "
    "process in <think>...</think> tags. 2. Then provide the correct single-letter choice (A, B, "
    "C, D,...) inside <answer>...</answer> tags. 3. No extra information or text outside of these "
    "tags.";
// grpo_vqa_nothink.py (GRPO training, no-think).
inline constexpr std::string_view kTrainNoThinkTemplate =
    "{Question} Your task: 1. Provide the correct single-letter choice (A, B, C, D,...) inside "
    "<answer>...</answer> tags. 2. No extra information or text outside of this tag.";
// test_qwen2vl_vqa.py / test_qwen2_5vl_vqa.py (eval, think; also AdvMed-R1's adversarial eval).
inline constexpr std::string_view kEvalThinkTemplate =
    "{Question} Think through the question step by step in <think>...</think> tags. Then provide "
    "the correct single-letter choice (A, B, C, D,...) inside <answer>...</answer> tags.";
// test_qwen2vl_vqa_nothink.py / test_qwen2_5vl_vqa_nothink.py (eval, no-think).
inline constexpr std::string_view kEvalNoThinkTemplate =
    "{Question} Provide the correct single-letter choice (A, B, C, D,...) inside "
    "<answer>...</answer> tags.";
// test_qwen2vl_vqa_zero_shot.py (eval, zero-shot: no answer tags requested).
inline constexpr std::string_view kEvalZeroShotTemplate =
    "{Question} Provide the correct single-letter choice (A, B, C, D,...).";
// README inference snippet.
inline constexpr std::string_view kReadmeTemplate =
    "{Question} First output the thinking process in <think> </think> and final choice (A, B, C, "
    "D ...) in <answer> </answer> tags.";

// The placeholder every template carries.
inline constexpr std::string_view kQuestionPlaceholder = "{Question}";

// Names accepted by resolve_template, in a stable order:
// "think", "nothink", "zeroshot", "readme", "train_think", "train_nothink".
const std::vector<std::string>& template_names();

// A known name -> its template (eval names are the eval templates; train_* the training ones);
// anything else is taken as a custom template and must contain "{Question}". Errors:
//   "prompt template 'foo': unknown name and no {Question} placeholder (names: think, ...)".
std::string resolve_template(std::string_view name_or_template);

// Replaces every "{Question}" in `tmpl` by `question` (like str.format(Question=...); the Med-R1
// templates hold no other braces). Error if `tmpl` has no placeholder.
std::string format_question(std::string_view tmpl, std::string_view question);

}  // namespace medr1::data
