// Length-based rewards in a real GRPO step on the tiny Qwen2-VL checkpoint: the trainer hands every
// reward the completions' token lengths (up to and including the first EOS, as TRL's completion_ids), so
// soft_overlong_punishment with L_cache = L_max = max_completion_length scores -length / L_max and its
// logged mean is -completion_length / L_max; a cache above L_max is refused by the config check.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "grpo_trainer_test_util.h"
#include "medr1/core/error.h"
#include "medr1/rl/grpo_trainer.h"

namespace medr1::rl {
namespace {

namespace fs = test::fs;

TEST(GrpoTrainerRewards, SoftOverlongPunishmentSeesTheCompletionLengths) {
  const auto root = test::make_temp_dir("grpo_overlong");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty()) GTEST_SKIP() << "tests/data/tokenizer/qwen2vl/tokenizer.json missing";
  GRPOConfig c = test::tiny_run_config(model, test::make_demo_slice(root, 2), root / "out");
  c.max_steps = 1;
  c.max_completion_length = 4;
  c.reward_funcs = {"soft_overlong_punishment", "format"};
  c.soft_punish_cache = 4;  // L_max = max_completion_length = 4: reward = -length / 4
  TrainerHooks h;
  h.progress_bar = false;
  TrainResult r = train(c, h);
  ASSERT_EQ(r.log_history.size(), 1u);
  const auto& rec = r.log_history[0];
  const double len = rec.at("completion_length").get<double>();
  const double pun = rec.at("rewards/soft_overlong_punishment").get<double>();
  std::printf("completion_length %.4f, rewards/soft_overlong_punishment %.4f\n", len, pun);
  EXPECT_GT(len, 0.0);
  EXPECT_NEAR(pun, -len / 4.0, 1e-9);

  GRPOConfig bad = c;
  bad.soft_punish_cache = 5;
  try {
    bad.validate();
    ADD_FAILURE() << "soft_punish_cache > L_max must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("soft_punish_cache"), std::string::npos) << e.what();
  }
  bad.soft_punish_cache = 2;
  bad.soft_punish_max_completion_len = 1;  // an explicit L_max below the cache
  EXPECT_THROW(bad.validate(), Error);
  fs::remove_all(root);
}

}  // namespace
}  // namespace medr1::rl
