// External reward process (external_reward.h): the example script agrees with the built-in
// accuracy reward, null -> NaN, and every protocol failure (garbage, exit, wrong count, non-number,
// timeout, a closed pipe) is a medr1::Error naming the command. Failure cases use tiny /bin/sh
// commands; the example script runs with $MEDR1_PYTHON (else <source>/.venv/bin/python, else skip).
#include "medr1/rl/external_reward.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "medr1/core/error.h"
#include "medr1/rl/grpo_config.h"
#include "medr1/rl/rewards.h"

namespace medr1::rl {
namespace {

namespace fs = std::filesystem;

std::string python() {
  if (const char* p = std::getenv("MEDR1_PYTHON"); p && *p) return p;
  const fs::path venv = fs::path(MEDR1_SOURCE_DIR) / ".venv" / "bin" / "python";
  return fs::exists(venv) ? venv.string() : "";
}

std::string example_command() {
  return python() + " " + MEDR1_SOURCE_DIR + "/scripts/rewards/example_external_reward.py";
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const medr1::Error& e) {
    return e.what();
  }
  return "<no error>";
}

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// A shell command that answers every request line with `reply`.
std::string answer_each_line(const std::string& reply) {
  return "while read -r l; do echo '" + reply + "'; done";
}

const std::vector<std::string> kCompletions = {"<think>x</think><answer>A</answer>",
                                               "<answer> B</answer>", "C"};
const std::vector<std::string> kSolutions = {"<answer>A</answer>", "<answer>C</answer>",
                                             "<answer>C</answer>"};

TEST(ExternalReward, NameForm) {
  EXPECT_TRUE(is_external_reward_name("external:python3 x.py"));
  EXPECT_FALSE(is_external_reward_name("external:"));
  EXPECT_FALSE(is_external_reward_name("accuracy"));
  EXPECT_TRUE(default_registry().contains("external:python3 x.py"));
  EXPECT_FALSE(default_registry().contains("external:"));
  EXPECT_FALSE(default_registry().contains("externa:x"));
}

TEST(ExternalReward, ExampleScriptMatchesAccuracyReward) {
  if (python().empty()) GTEST_SKIP() << "MEDR1_PYTHON is not set and there is no .venv: no Python";
  const std::vector<std::string> completions = {
      "<think>..</think><answer> C </answer>",
      "<answer>\nC\n</answer>",
      "  C \n",
      "<answer> B </answer><answer> C </answer>",
      "<answer>c</answer>",
      "<answer>C\r</answer>",
      "<answer>\xc2\xa0"
      "C\xe3\x80\x80</answer>",
      "<answer>\xe2\x80\x8b"
      "C</answer>",
      "<answer>C\x1c</answer>",
      "<answer>\xff</answer>",
      "",
  };
  std::vector<std::string> solutions(completions.size(), "<answer> C </answer>");
  solutions[9] = "<answer>\xfe</answer>";  // both invalid bytes read as U+FFFD
  RewardFunc f = make_external_reward(example_command(), 60);
  for (PromptMode mode : {PromptMode::think, PromptMode::nothink}) {
    const std::vector<double> got = f(RewardInputs{completions, solutions, mode});
    ASSERT_EQ(got.size(), completions.size());
    for (size_t i = 0; i < completions.size(); ++i)
      EXPECT_EQ(got[i], accuracy_reward(completions[i], solutions[i])) << "completion " << i;
  }
}

TEST(ExternalReward, ComputeRewardsWithFormatAndExternal) {
  if (python().empty()) GTEST_SKIP() << "MEDR1_PYTHON is not set and there is no .venv: no Python";
  const std::string name = "external:" + example_command();
  const RewardResult r =
      compute_rewards(RewardInputs{kCompletions, kSolutions, PromptMode::think}, {"format", name});
  ASSERT_EQ(r.per_func.size(), 2u);
  EXPECT_EQ(r.per_func[0], (std::vector<double>{1, 0, 0}));
  EXPECT_EQ(r.per_func[1], (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(r.total, (std::vector<double>{2, 0, 1}));
  // A second batch reuses the running process.
  const RewardResult again =
      compute_rewards(RewardInputs{kCompletions, kSolutions, PromptMode::nothink}, {name});
  EXPECT_EQ(again.total, (std::vector<double>{1, 0, 1}));
}

TEST(ExternalReward, NullIsNotScored) {
  RewardFunc f = make_external_reward(answer_each_line(R"({"rewards": [1, null, 0.5]})"), 30);
  const std::vector<double> v = f(RewardInputs{kCompletions, kSolutions});
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0], 1.0);
  EXPECT_TRUE(std::isnan(v[1]));
  EXPECT_EQ(v[2], 0.5);
}

TEST(ExternalReward, GarbageReplyNamesCommandAndQuotesIt) {
  const std::string cmd = answer_each_line("this is not json");
  RewardFunc f = make_external_reward(cmd, 30);
  const std::string e = error_of([&] { f(RewardInputs{kCompletions, kSolutions}); });
  EXPECT_TRUE(has(e, cmd)) << e;
  EXPECT_TRUE(has(e, "not JSON")) << e;
  EXPECT_TRUE(has(e, "this is not json")) << e;
}

TEST(ExternalReward, LongGarbageIsCutTo200Bytes) {
  RewardFunc f = make_external_reward(answer_each_line(std::string(1000, 'x')), 30);
  const std::string e = error_of([&] { f(RewardInputs{kCompletions, kSolutions}); });
  const size_t at = e.find("reply is not JSON: '");
  ASSERT_NE(at, std::string::npos) << e;
  const std::string quoted = e.substr(at);  // the command itself holds the 1000 x too
  EXPECT_TRUE(has(quoted, std::string(200, 'x') + "...'")) << e;
  EXPECT_FALSE(has(quoted, std::string(201, 'x'))) << e;
}

TEST(ExternalReward, WrongShapeAndEntries) {
  const std::string e1 = error_of([] {
    make_external_reward(answer_each_line(R"({"rewards": [1]})"),
                         30)(RewardInputs{kCompletions, kSolutions});
  });
  EXPECT_TRUE(has(e1, "returned 1 rewards for 3 completions")) << e1;
  const std::string e2 = error_of([] {
    make_external_reward(answer_each_line(R"({"rewards": [1, "x", true]})"),
                         30)(RewardInputs{kCompletions, kSolutions});
  });
  EXPECT_TRUE(has(e2, "rewards[1] is \"x\", not a number or null")) << e2;
  const std::string e3 = error_of([] {
    make_external_reward(answer_each_line(R"({"scores": [1, 1, 1]})"),
                         30)(RewardInputs{kCompletions, kSolutions});
  });
  EXPECT_TRUE(has(e3, "not {\"rewards\": [...]}")) << e3;
  const std::string e4 = error_of([] {
    make_external_reward(answer_each_line(R"({"error": "no math here"})"),
                         30)(RewardInputs{kCompletions, kSolutions});
  });
  EXPECT_TRUE(has(e4, "reported an error: no math here")) << e4;
}

TEST(ExternalReward, ExitedProcessReportsStatusAndRestarts) {
  // Answers one request, then exits with status 3.
  const std::string cmd = R"(read -r l; echo '{"rewards": [1, 1, 1]}'; read -r l; exit 3)";
  RewardFunc f = make_external_reward(cmd, 30);
  const RewardInputs in{kCompletions, kSolutions};
  EXPECT_EQ(f(in), (std::vector<double>{1, 1, 1}));
  const std::string e = error_of([&] { f(in); });
  EXPECT_TRUE(has(e, cmd)) << e;
  EXPECT_TRUE(has(e, "exited with status 3")) << e;
  EXPECT_EQ(f(in), (std::vector<double>{1, 1, 1}));  // started again after the failure
}

TEST(ExternalReward, ClosedPipeIsAnErrorNotSigpipe) {
  // The process exits without reading; 4 MB of input cannot fit the pipe, so the write hits EPIPE.
  RewardFunc f = make_external_reward("exit 0", 30);
  const std::vector<std::string> big(4, std::string(1 << 20, 'a'));
  const std::string e = error_of([&] { f(RewardInputs{big, big}); });
  EXPECT_TRUE(has(e, "external reward 'exit 0'")) << e;
  EXPECT_TRUE(has(e, "exited with status 0")) << e;
}

TEST(ExternalReward, TimeoutKillsAndNamesCommand) {
  const std::string cmd = "sleep 30";
  RewardFunc f = make_external_reward(cmd, 1.0);
  const std::string e = error_of([&] { f(RewardInputs{kCompletions, kSolutions}); });
  EXPECT_TRUE(has(e, cmd)) << e;
  EXPECT_TRUE(has(e, "timeout of 1 s")) << e;
}

TEST(ExternalReward, BadArguments) {
  EXPECT_TRUE(has(error_of([] { make_external_reward("", 1); }), "empty command"));
  EXPECT_TRUE(has(error_of([] { make_external_reward("cat", 0); }), "timeout must be > 0"));
  RewardFunc f = make_external_reward(answer_each_line(R"({"rewards": []})"), 30);
  const std::vector<std::string> one = {"a"};
  EXPECT_TRUE(has(error_of([&] {
                    f(RewardInputs{one, kSolutions});
                  }),
                  "1 completions but 3 solutions"));
  const std::vector<std::string> none;
  EXPECT_TRUE(f(RewardInputs{none, none}).empty());  // nothing to score: no request
}

TEST(ExternalReward, CallsFromThreadsAreSerialised) {
  RewardFunc f = make_external_reward(answer_each_line(R"({"rewards": [0.25, 0.75, 1]})"), 30);
  std::vector<std::thread> ts;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int k = 0; k < 10; ++k)
        if (f(RewardInputs{kCompletions, kSolutions}) == std::vector<double>{0.25, 0.75, 1})
          ++ok[t];
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok, (std::vector<int>{10, 10, 10, 10}));
}

TEST(ExternalReward, ConfigValidatorAcceptsExternalNames) {
  GRPOConfig c;
  c.output_dir = "out";
  c.model_name_or_path = "ckpt";
  c.reward_funcs = {"format", "external:python3 scripts/rewards/example_external_reward.py"};
  EXPECT_NO_THROW(c.validate());  // validation does not start the command
  c.reward_funcs = {"external:"};
  EXPECT_THROW(c.validate(), medr1::Error);
}

}  // namespace
}  // namespace medr1::rl
