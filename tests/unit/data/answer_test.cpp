// Med-R1 eval answer parsing: re.search(r'<answer>\s*(\w+)\s*</answer>') semantics, table-driven.
#include <gtest/gtest.h>

#include "medr1/data/answer.h"

using namespace medr1::data;

namespace {
struct Case {
  const char* text;
  const char* expected;  // nullptr = None
};
}  // namespace

TEST(Answer, ExtractTable) {
  // Expected values are what Python's re gives for the Med-R1 regex (worked by hand).
  const Case cases[] = {
      {"<answer> C </answer>", "C"},
      {"<answer>B</answer>", "B"},
      {"<think>look</think>\n<answer>\n D \n</answer>", "D"},  // \s spans newlines
      {"<answer> A) CT </answer>", nullptr},                    // ')' is not \w, no match
      {"<answer> AB </answer>", "AB"},
      {"<answer> A B </answer>", nullptr},
      {"<answer></answer>", nullptr},
      {"<Answer> C </Answer>", nullptr},                        // tags are case-sensitive
      {"C", nullptr},
      {"<answer> C </answer><answer> D </answer>", "C"},        // first match
      {"<answer> x </answer> <answer> B </answer>", "x"},
      {"<answer> <answer> B </answer>", "B"},                   // search resumes after the first tag
      {"<answer> option_2 </answer>", "option_2"},
      {"<answer> É </answer>", "É"},                            // Unicode \w (Python 3 str)
      {"<answer>\xC2\xA0" "B\xC2\xA0</answer>", "B"},           // NBSP is Unicode \s
      {"<answer> 3 </answer>", "3"},
  };
  for (const auto& c : cases) {
    auto got = extract_option_answer(c.text);
    if (c.expected == nullptr) {
      EXPECT_FALSE(got.has_value()) << c.text << " -> " << got.value_or("");
    } else {
      ASSERT_TRUE(got.has_value()) << c.text;
      EXPECT_EQ(*got, c.expected) << c.text;
    }
  }
}

TEST(Answer, IgnoreCaseTagsOption) {
  AnswerOptions o;
  o.ignore_case_tags = true;
  EXPECT_EQ(extract_option_answer("<ANSWER> c </Answer>", o).value_or("?"), "c");
}

TEST(Answer, InvalidUtf8DoesNotThrow) {
  const std::string s = std::string("\xff\xfe junk ") + "<answer> B </answer>";
  EXPECT_EQ(extract_option_answer(s).value_or("?"), "B");
}

TEST(Answer, JudgeIgnoresCaseByDefault) {
  EXPECT_TRUE(judge_answer("<answer> c </answer>", "<answer> C </answer>").correct);
  EXPECT_TRUE(judge_answer("<think>..</think><answer>B</answer>", "<answer> B </answer>").correct);
  EXPECT_FALSE(judge_answer("<answer> A </answer>", "<answer> B </answer>").correct);
  EXPECT_FALSE(judge_answer("B", "<answer> B </answer>").correct);  // None never matches
  EXPECT_FALSE(judge_answer("<answer> B </answer>", "B").correct);  // unparseable ground truth
  auto j = judge_answer("<answer> é </answer>", "<answer> É </answer>");
  EXPECT_TRUE(j.correct);
  EXPECT_EQ(j.extracted_answer.value_or(""), "é");
  EXPECT_EQ(j.gt_answer.value_or(""), "É");
  AnswerOptions exact;
  exact.ignore_case_compare = false;
  EXPECT_FALSE(judge_answer("<answer> c </answer>", "<answer> C </answer>", exact).correct);
  EXPECT_TRUE(judge_answer("<answer> C </answer>", "<answer> C </answer>", exact).correct);
}
