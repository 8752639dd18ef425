// Med-R1 prompt templates: verbatim against /work/shared/MEDR1_REFERENCE.md §1.2, and substitution.
#include <gtest/gtest.h>

#include "medr1/core/error.h"
#include "medr1/data/prompts.h"

using namespace medr1::data;

// Strings copied from the reference document (not from our header).
TEST(Prompts, TrainTemplatesVerbatim) {
  EXPECT_EQ(kTrainThinkTemplate,
            "{Question} Your task: 1. Think through the question step by step, enclose your "
            "reasoning process in <think>...</think> tags. 2. Then provide the correct "
            "single-letter choice (A, B, C, D,...) inside <answer>...</answer> tags. 3. No extra "
            "information or text outside of these tags.");
  EXPECT_EQ(kTrainNoThinkTemplate,
            "{Question} Your task: 1. Provide the correct single-letter choice (A, B, C, D,...) "
            "inside <answer>...</answer> tags. 2. No extra information or text outside of this "
            "tag.");
}

TEST(Prompts, EvalTemplatesVerbatim) {
  EXPECT_EQ(resolve_template("think"),
            "{Question} Think through the question step by step in <think>...</think> tags. Then "
            "provide the correct single-letter choice (A, B, C, D,...) inside <answer>...</answer> "
            "tags.");
  EXPECT_EQ(resolve_template("nothink"),
            "{Question} Provide the correct single-letter choice (A, B, C, D,...) inside "
            "<answer>...</answer> tags.");
  EXPECT_EQ(resolve_template("zeroshot"),
            "{Question} Provide the correct single-letter choice (A, B, C, D,...).");
  EXPECT_EQ(resolve_template("readme"),
            "{Question} First output the thinking process in <think> </think> and final choice "
            "(A, B, C, D ...) in <answer> </answer> tags.");
  EXPECT_EQ(resolve_template("train_think"), std::string(kTrainThinkTemplate));
  EXPECT_EQ(resolve_template("train_nothink"), std::string(kTrainNoThinkTemplate));
}

TEST(Prompts, FormatQuestionLikePythonFormat) {
  const std::string q = "What imaging technique is employed for obtaining this image? A)Mammogram, "
                        "B)Positron emission tomography (PET), C)CT, D)Fluoroscopy";
  EXPECT_EQ(format_question(resolve_template("nothink"), q),
            q + " Provide the correct single-letter choice (A, B, C, D,...) inside "
                "<answer>...</answer> tags.");
  // Braces inside the question are data, not placeholders.
  EXPECT_EQ(format_question("Q: {Question}!", "a {Question} b"), "Q: a {Question} b!");
  EXPECT_EQ(format_question("{Question}/{Question}", "x"), "x/x");
}

TEST(Prompts, CustomTemplateNeedsPlaceholder) {
  EXPECT_EQ(resolve_template("Answer: {Question}"), "Answer: {Question}");
  try {
    resolve_template("thinking");
    FAIL() << "expected an error";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("{Question}"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("nothink"), std::string::npos) << e.what();
  }
  EXPECT_THROW(format_question("no placeholder", "q"), medr1::Error);
  EXPECT_EQ(template_names().size(), 6u);
}
