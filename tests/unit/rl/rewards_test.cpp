// Table-driven tests of the Med-R1 accuracy / format rewards. Every expected value below was
// checked against CPython `re` running the Med-R1 functions verbatim (scripts/make_rl_goldens.py
// documents the interpreter; the table itself is hand-written).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "medr1/core/error.h"
#include "medr1/rl/rewards.h"

namespace medr1::rl {
namespace {

struct AccCase {
  const char* name;
  std::string completion, solution;
  double expected;
};

// Hex escapes are split from the following text ("\xc2\xa0" "C") so C++ does not read more digits.
const std::vector<AccCase>& acc_cases() {
  static const std::string S = "<answer> C </answer>";
  static const std::vector<AccCase> cases = {
      {"think_then_answer_strips", "<think>..</think><answer> C </answer>", S, 1},
      {"no_spaces", "<answer>C</answer>", S, 1},
      {"newline_inside_tags_no_match", "<answer>\nC\n</answer>", S, 0},
      {"trailing_newline_inside_tags", "<answer>C\n</answer>", S, 0},
      {"no_tags_whole_text", "C", S, 1},
      {"no_tags_whole_text_stripped", "  C \n", S, 1},
      {"first_answer_wins_wrong", "<answer> B </answer><answer> C </answer>", S, 0},
      {"first_answer_wins_right", "<answer> C </answer><answer> B </answer>", S, 1},
      {"case_sensitive", "<answer>c</answer>", S, 0},
      {"carriage_return_is_dot_and_stripped", "<answer>C\r</answer>", S, 1},
      {"unicode_nbsp_ideographic_space", "<answer>\xc2\xa0" "C\xe3\x80\x80</answer>", S, 1},
      {"zero_width_space_is_not_space", "<answer>\xe2\x80\x8b" "C</answer>", S, 0},
      {"ascii_file_separator_is_space", "<answer>C\x1c</answer>", S, 1},
      {"nel_is_space", "<answer>C\xc2\x85</answer>", S, 1},
      {"line_paragraph_separators_stripped", "\xe2\x80\xa8" "C\xe2\x80\xa9", S, 1},
      {"search_skips_broken_first_tag", "<answer>\nC</answer> <answer>C</answer>", S, 1},
      {"empty_answers_equal", "<answer></answer>", "<answer>  </answer>", 1},
      {"solution_without_tags", "<answer>A</answer>", "A", 1},
      {"uppercase_tags_not_tags", "<ANSWER>C</ANSWER>", S, 0},
      {"solution_newline_inside_tags", S, "<answer>\nC\n</answer>", 0},
      {"solution_first_answer", "<answer>C</answer>", "<answer>C</answer> <answer>D</answer>", 1},
  };
  return cases;
}

TEST(AccuracyReward, MatchesPythonRegexPath) {
  for (const auto& c : acc_cases())
    EXPECT_EQ(accuracy_reward(c.completion, c.solution), c.expected) << c.name;
}

TEST(AccuracyReward, ExtractAnswer) {
  EXPECT_EQ(extract_answer("<think>x</think><answer> C </answer>"), "C");
  EXPECT_EQ(extract_answer("<answer>\nC\n</answer>"), "<answer>\nC\n</answer>");
  EXPECT_EQ(extract_answer(" \t plain \n"), "plain");
}

TEST(PyStrip, PythonWhitespaceSet) {
  EXPECT_EQ(py_strip(""), "");
  EXPECT_EQ(py_strip(" \t\n\v\f\r"), "");
  EXPECT_EQ(py_strip("\x1c\x1d\x1e\x1f" "a b\x1f"), "a b");
  EXPECT_EQ(py_strip("\xe2\x80\x80" "x\xe2\x80\x8a"), "x");  // U+2000, U+200A
  EXPECT_EQ(py_strip("\xe2\x80\x8b" "x"), "\xe2\x80\x8b" "x");  // U+200B is not space
  EXPECT_EQ(py_strip("\xe1\xa0\x8e" "x"), "\xe1\xa0\x8e" "x");  // U+180E is not space (Py3.7+)
  EXPECT_EQ(py_strip(" \xff "), "\xff");                        // invalid UTF-8 kept
}

TEST(AccuracyReward, InvalidUtf8ReadAsReplacementChar) {
  // Invalid bytes are read as U+FFFD, as Python sees text decoded with errors="replace".
  EXPECT_EQ(accuracy_reward("<answer>\xff</answer>", "<answer> C </answer>"), 0.0);
  EXPECT_EQ(accuracy_reward("<answer>\xff</answer>", "<answer>\xef\xbf\xbd</answer>"), 1.0);
  EXPECT_EQ(accuracy_reward("<answer> C </answer>\xff", "<answer> C </answer>"), 1.0);
  EXPECT_EQ(format_reward("<answer>\xc3</answer>", PromptMode::nothink), 1.0);
  EXPECT_EQ(format_reward("<answer>C</answer>\xc3", PromptMode::nothink), 0.0);
}

struct FmtCase {
  const char* name;
  std::string completion;
  PromptMode mode;
  double expected;
};

TEST(FormatReward, FullmatchDotallTable) {
  const auto T = PromptMode::think, N = PromptMode::nothink;
  const std::vector<FmtCase> cases = {
      {"think_basic", "<think>x</think><answer>C</answer>", T, 1},
      {"think_whitespace_between", "<think>x</think>\n\n <answer>C</answer>", T, 1},
      {"think_newlines_inside_dotall", "<think>a\nb</think>\n<answer>\nC\n</answer>", T, 1},
      {"think_trailing_newline_fails", "<think>x</think><answer>C</answer>\n", T, 0},
      {"think_leading_space_fails", " <think>x</think><answer>C</answer>", T, 0},
      {"think_missing_think", "<answer>C</answer>", T, 0},
      {"think_text_between_fails", "<think>x</think>text<answer>C</answer>", T, 0},
      {"think_unicode_space_between", "<think>x</think>\xe3\x80\x80<answer>C</answer>", T, 1},
      {"think_file_separator_between", "<think>x</think>\x1c<answer>C</answer>", T, 1},
      {"think_zwsp_between_fails", "<think>x</think>\xe2\x80\x8b<answer>C</answer>", T, 0},
      {"think_lazy_extends_to_last", "<think>x</think><answer>C</answer> tail </answer>", T, 1},
      {"think_crlf_between", "<think>x</think>\r\n<answer>C</answer>", T, 1},
      {"think_empty", "", T, 0},
      {"nothink_basic", "<answer>C</answer>", N, 1},
      {"nothink_leading_space", "\n <answer>C</answer>", N, 1},
      {"nothink_with_think_fails", "<think>x</think><answer>C</answer>", N, 0},
      {"nothink_trailing_text_fails", "<answer>C</answer>.", N, 0},
      {"nothink_newline_inside", "<answer>a\nb</answer>", N, 1},
      {"nothink_empty", "", N, 0},
  };
  for (const auto& c : cases) EXPECT_EQ(format_reward(c.completion, c.mode), c.expected) << c.name;
}

TEST(RewardRegistry, DefaultSumAndWeights) {
  const std::vector<std::string> comps = {"<think>a</think><answer> C </answer>",
                                          "<answer>C</answer>", "C", "<answer>B</answer>"};
  const std::vector<std::string> sols(4, "<answer> C </answer>");
  RewardInputs in{comps, sols, PromptMode::think};
  RewardResult r = compute_rewards(in, {"accuracy", "format"});
  ASSERT_EQ(r.per_func.size(), 2u);
  EXPECT_EQ(r.per_func[0], (std::vector<double>{1, 1, 1, 0}));
  EXPECT_EQ(r.per_func[1], (std::vector<double>{1, 0, 0, 0}));
  EXPECT_EQ(r.total, (std::vector<double>{2, 1, 1, 0}));  // Med-R1: unweighted sum
  RewardInputs in_nothink{comps, sols, PromptMode::nothink};
  RewardResult w = compute_rewards(in_nothink, {"accuracy", "format"}, {0.5, 2.0});
  EXPECT_EQ(w.per_func[1], (std::vector<double>{0, 1, 0, 1}));
  EXPECT_EQ(w.total, (std::vector<double>{0.5, 2.5, 0.5, 2.0}));
}

TEST(RewardRegistry, PluggableNaNAndErrors) {
  RewardRegistry reg;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  reg.add("len", [](const RewardInputs& in) {
    std::vector<double> v;
    for (const auto& c : in.completions) v.push_back(static_cast<double>(c.size()));
    return v;
  });
  reg.add("partial", [nan](const RewardInputs&) { return std::vector<double>{nan, 1.0}; });
  reg.add("none", [nan](const RewardInputs&) { return std::vector<double>{nan, nan}; });
  reg.add("short", [](const RewardInputs&) { return std::vector<double>{1.0}; });
  const std::vector<std::string> comps = {"ab", "abc"}, sols = {"", ""};
  RewardInputs in{comps, sols};
  RewardResult r = compute_rewards(in, {"len", "partial"}, {}, reg);
  EXPECT_EQ(r.total, (std::vector<double>{2.0, 4.0}));  // NaN skipped (nansum)
  RewardResult n = compute_rewards(in, {"none"}, {}, reg);
  EXPECT_TRUE(std::isnan(n.total[0]) && std::isnan(n.total[1]));  // unscored stays NaN
  EXPECT_THROW(compute_rewards(in, {"short"}, {}, reg), medr1::Error);
  EXPECT_THROW(compute_rewards(in, {"nope"}, {}, reg), medr1::Error);
  EXPECT_THROW(compute_rewards(in, {"len"}, {1.0, 2.0}, reg), medr1::Error);
  EXPECT_TRUE(default_registry().contains("accuracy"));
  EXPECT_TRUE(default_registry().contains("format"));
  EXPECT_EQ(prompt_mode_from_string("nothink"), PromptMode::nothink);
  EXPECT_THROW(prompt_mode_from_string("Think"), medr1::Error);
}

}  // namespace
}  // namespace medr1::rl

namespace medr1::rl {
namespace {

// DAPO eq. 13 / TRL get_soft_overlong_punishment, at and around each boundary (TRL's docstring example:
// L_max 100, L_cache 20, 90 tokens -> -0.5).
TEST(SoftOverlongPunishment, FormulaAndBoundaries) {
  EXPECT_DOUBLE_EQ(soft_overlong_punishment(90, 100, 20), -0.5);
  EXPECT_DOUBLE_EQ(soft_overlong_punishment(0, 100, 20), 0.0);
  EXPECT_DOUBLE_EQ(soft_overlong_punishment(80, 100, 20), 0.0);
  EXPECT_DOUBLE_EQ(soft_overlong_punishment(81, 100, 20), -0.05);
  EXPECT_DOUBLE_EQ(soft_overlong_punishment(100, 100, 20), -1.0);
  EXPECT_DOUBLE_EQ(soft_overlong_punishment(101, 100, 20), -1.0);
  // L_cache 0: no linear band, -1 only above L_max (no division by zero).
  EXPECT_DOUBLE_EQ(soft_overlong_punishment(100, 100, 0), 0.0);
  EXPECT_DOUBLE_EQ(soft_overlong_punishment(101, 100, 0), -1.0);
  // L_cache = L_max: the whole range is the band.
  EXPECT_DOUBLE_EQ(soft_overlong_punishment(3, 4, 4), -0.75);
  EXPECT_THROW(soft_overlong_punishment(1, 100, 101), Error);
  EXPECT_THROW(soft_overlong_punishment(1, 0, 0), Error);
  EXPECT_THROW(soft_overlong_punishment(1, 100, -1), Error);
}

TEST(SoftOverlongPunishment, RegisteredAndNeedsLengths) {
  const std::vector<std::string> c{"a", "b", "c"}, sol{"x", "y", "z"};
  const std::vector<int64_t> len{10, 90, 120};
  RewardInputs in{c, sol, PromptMode::nothink};
  EXPECT_THROW(compute_rewards(in, {"soft_overlong_punishment"}), Error);  // no lengths
  in.completion_lengths = &len;
  in.soft_punish_max_completion_len = 100;
  in.soft_punish_cache = 20;
  const RewardResult r = compute_rewards(in, {"soft_overlong_punishment"});
  ASSERT_EQ(r.total.size(), 3u);
  EXPECT_DOUBLE_EQ(r.total[0], 0.0);
  EXPECT_DOUBLE_EQ(r.total[1], -0.5);
  EXPECT_DOUBLE_EQ(r.total[2], -1.0);
  const std::vector<int64_t> short_len{1};
  in.completion_lengths = &short_len;
  try {
    compute_rewards(in, {"soft_overlong_punishment"});
    ADD_FAILURE() << "a length count that is not the completion count must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token lengths"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace medr1::rl
