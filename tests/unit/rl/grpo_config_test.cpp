// GRPOConfig: Med-R1 defaults, JSON round trip, strict reader errors, string / CLI overrides,
// validate() rules, and every preset in configs/train/ loads, validates and round-trips.
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>
#include <string>
#include <vector>

#include "medr1/core/error.h"
#include "medr1/io/json_util.h"
#include "medr1/rl/grpo_config.h"
#include "medr1/rl/grpo_config_cli.h"

namespace medr1::rl {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("medr1_rl_cfg_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const medr1::Error& e) {
    return e.what();
  }
  return "<no error>";
}

GRPOConfig runnable() {
  GRPOConfig c;
  c.output_dir = "out";
  c.model_name_or_path = "ckpt";
  return c;
}

TEST(GrpoConfig, DefaultsAreMedR1s) {
  GRPOConfig c;
  EXPECT_EQ(c.learning_rate, 1e-6);
  EXPECT_EQ(c.num_generations, 4);
  EXPECT_EQ(c.per_device_train_batch_size, 1);
  EXPECT_EQ(c.gradient_accumulation_steps, 2);
  EXPECT_EQ(c.max_prompt_length, 1024);
  EXPECT_EQ(c.max_completion_length, 256);
  EXPECT_EQ(c.num_train_epochs, 2.0);
  EXPECT_EQ(c.beta, 0.04);
  EXPECT_EQ(c.temperature, 1.0);
  EXPECT_EQ(c.top_k, 50);
  EXPECT_EQ(c.max_pixels, 401408);
  EXPECT_EQ(c.seed, 42);
  EXPECT_EQ(c.lr_scheduler_type, "linear");
  EXPECT_EQ(c.loss_type, "grpo");
  EXPECT_EQ(c.scale_rewards, "group");
  EXPECT_FALSE(c.epsilon_high.has_value());
  EXPECT_EQ(c.resolved_epsilon_high(), 0.2);
  EXPECT_EQ(c.reward_funcs, (std::vector<std::string>{"accuracy", "format"}));
  EXPECT_TRUE(c.reward_weights.empty());
  EXPECT_NO_THROW(runnable().validate());
}

TEST(GrpoConfig, JsonRoundTripThroughFile) {
  GRPOConfig c = runnable();
  c.learning_rate = 3e-6;
  c.bf16 = true;
  c.epsilon_high = 0.28;
  c.reward_funcs = {"format"};
  c.reward_weights = {0.5};
  c.max_steps = 7;
  c.prompt_template = "nothink";
  const fs::path p = temp_dir() / "resolved_config.json";
  save_grpo_config(c, p.string());
  GRPOConfig back = load_grpo_config(p.string());
  EXPECT_EQ(to_json(back), to_json(c));
  EXPECT_EQ(back.epsilon_high, std::optional<double>(0.28));
  EXPECT_EQ(back.reward_weights, std::vector<double>{0.5});
  EXPECT_TRUE(to_json(GRPOConfig{})["epsilon_high"].is_null());
  // a partial file keeps the defaults for absent keys
  GRPOConfig partial = grpo_config_from_json(nlohmann::json{{"beta", 0.0}}, "x.json");
  EXPECT_EQ(partial.beta, 0.0);
  EXPECT_EQ(partial.learning_rate, 1e-6);
}

TEST(GrpoConfig, UnknownKeyAndWrongTypeNameFileAndKey) {
  const fs::path p = temp_dir() / "typo.json";
  write(p, R"({"learnin_rate": 1e-6})");
  const std::string e = error_of([&] { load_grpo_config(p.string()); });
  EXPECT_NE(e.find(p.string()), std::string::npos) << e;
  EXPECT_NE(e.find("learnin_rate"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key"), std::string::npos) << e;
  const std::string t = error_of([] { grpo_config_from_json(nlohmann::json{{"beta", "0.1"}}, "c.json"); });
  EXPECT_NE(t.find("c.json"), std::string::npos) << t;
  EXPECT_NE(t.find("beta"), std::string::npos) << t;
  EXPECT_NE(error_of([] { grpo_config_from_json(nlohmann::json{{"bf16", 1}}, "c.json"); }), "<no error>");
  EXPECT_NE(error_of([] { grpo_config_from_json(nlohmann::json{{"num_generations", 2.5}}, "c.json"); }),
            "<no error>");
  EXPECT_NE(error_of([] { grpo_config_from_json(nlohmann::json{{"reward_funcs", "accuracy"}}, "c.json"); }),
            "<no error>");
  EXPECT_NE(error_of([] { grpo_config_from_json(nlohmann::json::array(), "c.json"); }), "<no error>");
}

TEST(GrpoConfig, StringOverrides) {
  GRPOConfig c;
  apply_override(c, "bf16", {});
  EXPECT_TRUE(c.bf16);
  apply_override(c, "bf16", {"false"});
  EXPECT_FALSE(c.bf16);
  apply_override(c, "reward_funcs", {"accuracy,format", "len"});
  EXPECT_EQ(c.reward_funcs, (std::vector<std::string>{"accuracy", "format", "len"}));
  apply_set(c, "reward_weights=[1, 0.5]");
  EXPECT_EQ(c.reward_weights, (std::vector<double>{1.0, 0.5}));
  apply_set(c, "reward_weights=[]");
  EXPECT_TRUE(c.reward_weights.empty());
  apply_set(c, "epsilon_high=0.3");
  EXPECT_EQ(c.epsilon_high, std::optional<double>(0.3));
  apply_set(c, "epsilon_high=none");
  EXPECT_FALSE(c.epsilon_high.has_value());
  apply_set(c, "max_steps=-3");
  EXPECT_EQ(c.max_steps, -3);
  EXPECT_THROW(apply_set(c, "max_steps=3.5"), medr1::Error);
  EXPECT_THROW(apply_set(c, "learning_rate=fast"), medr1::Error);
  EXPECT_THROW(apply_set(c, "bf16=maybe"), medr1::Error);
  EXPECT_THROW(apply_set(c, "no_such_key=1"), medr1::Error);
  EXPECT_THROW(apply_set(c, "beta"), medr1::Error);
}

TEST(GrpoConfig, CliFlagsWithTrlNames) {
  const fs::path p = temp_dir() / "base.json";
  write(p, R"({"output_dir": "o", "model_name_or_path": "m", "beta": 0.5, "seed": 1})");
  CLI::App app("test");
  GrpoCli cli;
  add_grpo_config_options(app, cli);
  std::vector<std::string> args = {"prog", "--config", p.string(), "--learning_rate", "2e-6",
                                   "--bf16", "--gradient_checkpointing", "false",
                                   "--reward_funcs", "accuracy", "format", "--reward_weights", "1",
                                   "0.5", "--set", "seed=5",
                                   "--set", "beta=0.25", "--seed", "7", "--epsilon_high", "0.28"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  app.parse(static_cast<int>(argv.size()), argv.data());
  GRPOConfig c = resolve_grpo_config(cli);
  EXPECT_EQ(c.output_dir, "o");
  EXPECT_EQ(c.learning_rate, 2e-6);
  EXPECT_TRUE(c.bf16);
  EXPECT_FALSE(c.gradient_checkpointing);
  EXPECT_EQ(c.reward_funcs, (std::vector<std::string>{"accuracy", "format"}));
  EXPECT_EQ(c.reward_weights, (std::vector<double>{1.0, 0.5}));
  EXPECT_EQ(c.beta, 0.25);  // --set over the file
  EXPECT_EQ(c.seed, 7);     // per-field flag over --set
  EXPECT_EQ(c.resolved_epsilon_high(), 0.28);
  EXPECT_NO_THROW(c.validate());
}

TEST(GrpoConfig, ValidateCrossFieldRules) {
  auto fails = [](auto mutate, const char* needle) {
    GRPOConfig c = runnable();
    mutate(c);
    const std::string e = error_of([&] { c.validate(); });
    EXPECT_NE(e.find(needle), std::string::npos) << e;
  };
  fails([](GRPOConfig& c) { c.num_generations = 1; }, "num_generations");
  fails([](GRPOConfig& c) { c.max_completion_length = 32000; }, "max_position_embeddings");
  fails([](GRPOConfig& c) { c.reward_weights = {1.0}; }, "reward_weights");
  fails([](GRPOConfig& c) { c.reward_funcs = {"accuracy", "bleu"}; }, "bleu");
  fails([](GRPOConfig& c) { c.loss_type = "ppo"; }, "loss_type");
  fails([](GRPOConfig& c) { c.scale_rewards = "true"; }, "scale_rewards");
  fails([](GRPOConfig& c) { c.lr_scheduler_type = "cosine_with_restarts"; }, "lr_scheduler_type");
  fails([](GRPOConfig& c) { c.output_dir.clear(); }, "output_dir");
  fails([](GRPOConfig& c) { c.min_pixels = c.max_pixels + 1; }, "min_pixels");
  fails([](GRPOConfig& c) { c.top_p = 0; }, "top_p");
  fails([](GRPOConfig& c) { c.num_train_epochs = 0; }, "num_train_epochs");
  GRPOConfig ok = runnable();
  ok.num_train_epochs = 0;
  ok.max_steps = 10;  // max_steps > 0 overrides epochs
  EXPECT_NO_THROW(ok.validate());
  EXPECT_THROW(runnable().validate(1, 1200), medr1::Error);  // 1024 + 256 > 1200
  EXPECT_NO_THROW(runnable().validate(2, 1280));
  GRPOConfig sft = runnable();
  sft.algo = "sft";
  sft.num_generations = 1;  // G is a GRPO rule only
  EXPECT_NO_THROW(sft.validate());
  EXPECT_EQ(runnable().global_completion_batch(2), 2 * 1 * 2 * 4);
}

TEST(GrpoConfig, TopEntropyQuantile) {
  // TRL's default 1.0 (every token); JSON, --set and the CLI flag; [0, 1] enforced naming the field
  EXPECT_EQ(GRPOConfig{}.top_entropy_quantile, 1.0);
  EXPECT_EQ(to_json(GRPOConfig{})["top_entropy_quantile"], 1.0);
  EXPECT_EQ(grpo_config_from_json(nlohmann::json{{"top_entropy_quantile", 0.2}}, "x.json").top_entropy_quantile,
            0.2);
  GRPOConfig s;
  apply_set(s, "top_entropy_quantile=0.5");
  EXPECT_EQ(s.top_entropy_quantile, 0.5);
  CLI::App app("test");
  GrpoCli cli;
  add_grpo_config_options(app, cli);
  std::vector<std::string> args = {"prog", "--output_dir", "o", "--model_name_or_path", "m",
                                   "--top_entropy_quantile", "0.2"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  app.parse(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(resolve_grpo_config(cli).top_entropy_quantile, 0.2);
  for (double ok : {0.0, 0.2, 1.0}) {
    GRPOConfig v = runnable();
    v.top_entropy_quantile = ok;
    EXPECT_NO_THROW(v.validate()) << ok;
  }
  for (double bad : {-0.1, 1.01, std::nan("")}) {
    GRPOConfig v = runnable();
    v.top_entropy_quantile = bad;
    EXPECT_NE(error_of([&] { v.validate(); }).find("top_entropy_quantile: must be in [0, 1]"), std::string::npos)
        << bad;
  }
}

TEST(GrpoConfig, ImportanceSamplingLevelAndDelta) {
  // Defaults: TRL's ("token", None), dumped as such
  GRPOConfig d;
  EXPECT_EQ(d.importance_sampling_level, "token");
  EXPECT_FALSE(d.delta.has_value());
  EXPECT_EQ(to_json(d)["importance_sampling_level"], "token");
  EXPECT_TRUE(to_json(d)["delta"].is_null());
  // JSON
  const nlohmann::json j = {{"importance_sampling_level", "sequence"}, {"delta", 1.5}};
  GRPOConfig c = grpo_config_from_json(j, "x.json");
  EXPECT_EQ(c.importance_sampling_level, "sequence");
  EXPECT_EQ(c.delta, std::optional<double>(1.5));
  EXPECT_FALSE(
      grpo_config_from_json(nlohmann::json{{"delta", nullptr}}, "x.json").delta.has_value());
  EXPECT_NE(error_of([] {
              grpo_config_from_json(nlohmann::json{{"delta", "big"}}, "x.json");
            }).find("delta"),
            std::string::npos);
  // --set and CLI flags
  GRPOConfig s;
  apply_set(s, "delta=2");
  EXPECT_EQ(s.delta, std::optional<double>(2.0));
  apply_set(s, "delta=none");
  EXPECT_FALSE(s.delta.has_value());
  CLI::App app("test");
  GrpoCli cli;
  add_grpo_config_options(app, cli);
  std::vector<std::string> args = {
      "prog",     "--output_dir", "o", "--model_name_or_path", "m", "--importance_sampling_level",
      "sequence", "--delta",      "4"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  app.parse(static_cast<int>(argv.size()), argv.data());
  GRPOConfig f = resolve_grpo_config(cli);
  EXPECT_EQ(f.importance_sampling_level, "sequence");
  EXPECT_EQ(f.delta, std::optional<double>(4.0));
  EXPECT_NO_THROW(f.validate());
  // validate: bad values are refused naming the field
  auto error_with = [](auto mutate) {
    GRPOConfig v = runnable();
    mutate(v);
    return error_of([&] { v.validate(); });
  };
  std::string e = error_with([](GRPOConfig& v) { v.importance_sampling_level = "sentence"; });
  EXPECT_NE(e.find("importance_sampling_level"), std::string::npos) << e;
  EXPECT_NE(e.find("sentence"), std::string::npos) << e;
  for (double bad : {1.0, 0.5, -2.0, std::nan(""), HUGE_VAL}) {
    e = error_with([&](GRPOConfig& v) { v.delta = bad; });
    EXPECT_NE(e.find("delta: must be > 1"), std::string::npos) << bad << ": " << e;
  }
  // TRL only recommends delta > 1 + epsilon_high: 1.1 is accepted (with a warning)
  EXPECT_EQ(error_with([](GRPOConfig& v) { v.delta = 1.1; }), "<no error>");
  EXPECT_EQ(error_with([](GRPOConfig& v) {
              v.importance_sampling_level = "sequence";
              v.loss_type = "bnpo";  // TRL warns, accepts
            }),
            "<no error>");
}

TEST(GrpoConfig, FieldListDrivesHelp) {
  auto fields = grpo_config_fields();
  ASSERT_GE(fields.size(), 45u);
  bool seen = false;
  for (const auto& f : fields) {
    EXPECT_FALSE(f.help.empty()) << f.key;
    if (f.key == "learning_rate") {
      seen = true;
      EXPECT_EQ(f.type, "float");
      EXPECT_EQ(f.default_value, "1e-06");
    }
  }
  EXPECT_TRUE(seen);
}

TEST(GrpoConfig, TrainPresetsLoadValidateAndRoundTrip) {
  const fs::path dir = fs::path(MEDR1_SOURCE_DIR) / "configs" / "train";
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".json") continue;
    const nlohmann::json raw = io::read_json_file(e.path().string());
    if (raw.value("algo", std::string("grpo")) != "grpo" && raw.value("algo", std::string()) != "sft")
      continue;
    SCOPED_TRACE(e.path().string());
    GRPOConfig c = load_grpo_config(e.path().string());
    EXPECT_NO_THROW(c.validate());
    EXPECT_EQ(to_json(grpo_config_from_json(to_json(c), "dump")), to_json(c));
    ++n;
  }
  EXPECT_GE(n, 1);
}

}  // namespace
}  // namespace medr1::rl
