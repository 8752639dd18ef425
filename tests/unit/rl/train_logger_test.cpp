// The run's logs (rl/train_logger.h): report_to names, JSONL cut-back on resume (no step twice, a
// torn last line dropped), the completions cap, the SVG curve set, and an end-to-end tiny GRPO run
// whose TensorBoard file is read back by the real tensorboard package ($MEDR1_PYTHON) with the
// values of metrics.jsonl (float32).
#include "medr1/rl/train_logger.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "grpo_trainer_test_util.h"
#include "medr1/core/error.h"
#include "medr1/rl/grpo_trainer.h"

namespace medr1::rl {
namespace {

namespace fs = test::fs;

std::vector<nlohmann::json> read_jsonl(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream f(p);
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no throw>";
}

TEST(TrainLogger, ReportToNames) {
  EXPECT_FALSE(parse_report_to({"none"}).tensorboard);
  EXPECT_FALSE(parse_report_to({}).tensorboard);
  EXPECT_TRUE(parse_report_to({"tensorboard"}).tensorboard);
  EXPECT_TRUE(parse_report_to({"all"}).tensorboard);
  EXPECT_FALSE(parse_report_to({"all"}).wandb_requested);
  const ReportTo w = parse_report_to({"wandb"});
  EXPECT_TRUE(w.wandb_requested);
  EXPECT_TRUE(w.tensorboard);  // still logged locally
  EXPECT_TRUE(parse_report_to({"tensorboard", "wandb"}).wandb_requested);
  EXPECT_NE(error_of([] {
              parse_report_to({"comet_ml"});
            }).find("report_to: unknown integration 'comet_ml'"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_report_to({"none", "tensorboard"});
            }).find("report_to"),
            std::string::npos);
  GRPOConfig c;
  c.output_dir = "x";
  c.model_name_or_path = "m";
  c.report_to = {"tensorbord"};
  EXPECT_NE(error_of([&] { c.validate(); }).find("report_to"), std::string::npos);
}

TEST(TrainLogger, TruncateJsonlKeepsStepsUpToTheCheckpointAndDropsATornLine) {
  const auto root = test::make_temp_dir("logger_trunc");
  const fs::path p = root / "c.jsonl";
  std::ofstream(p) << "{\"step\":1,\"a\":1}\n{\"step\":2,\"a\":2}\n{\"step\":2,\"a\":3}\n{\"step\":"
                      "3}\n{\"step\":";
  EXPECT_EQ(truncate_jsonl_after_step(p.string(), 2), 3u);
  const auto rows = read_jsonl(p);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2]["a"], 3);
  EXPECT_EQ(truncate_jsonl_after_step((root / "missing.jsonl").string(), 2), 0u);
  EXPECT_FALSE(fs::exists(root / "missing.jsonl"));
  fs::remove_all(root);
}

std::vector<nlohmann::json> rows_of_step(int64_t step, int n) {
  std::vector<nlohmann::json> rows;
  for (int i = 0; i < n; ++i)
    rows.push_back({{"step", step}, {"generation", i}, {"completion", "c"}});
  return rows;
}

TEST(TrainLogger, ResumeContinuesCompletionsWithoutDuplicatesAndCapsRows) {
  const auto root = test::make_temp_dir("logger_resume");
  GRPOConfig c;
  c.output_dir = (root / "run").string();
  c.report_to = {"none"};
  c.log_completions = true;
  c.num_completions_to_print = 2;
  fs::create_directories(c.output_dir);
  std::vector<nlohmann::json> hist;
  {
    TrainLogger lg(c, true, {}, 0);
    for (int64_t s = 1; s <= 3; ++s) {
      hist.push_back({{"step", s}, {"loss", 0.1 * static_cast<double>(s)}});
      lg.log(hist.back(), rows_of_step(s, 4));  // capped to 2 rows per step
    }
  }
  EXPECT_EQ(read_jsonl(root / "run" / "completions.jsonl").size(), 6u);
  hist.resize(2);  // the checkpoint was at step 2; step 3 is logged again by the resumed run
  {
    TrainLogger lg(c, true, hist, 2);
    EXPECT_EQ(read_jsonl(root / "run" / "metrics.jsonl").size(), 2u);
    lg.log({{"step", 3}, {"loss", 0.3}}, rows_of_step(3, 4));
  }
  const auto rows = read_jsonl(root / "run" / "completions.jsonl");
  std::map<int64_t, int> per_step;
  for (const auto& r : rows) per_step[r["step"].get<int64_t>()] += 1;
  EXPECT_EQ(per_step, (std::map<int64_t, int>{{1, 2}, {2, 2}, {3, 2}}));
  EXPECT_EQ(read_jsonl(root / "run" / "metrics.jsonl").size(), 3u);
  // A non-main rank writes nothing.
  GRPOConfig other = c;
  other.output_dir = (root / "rank1").string();
  {
    TrainLogger lg(other, false, {}, 0);
    lg.log({{"step", 1}}, rows_of_step(1, 1));
    lg.write_plots({});
  }
  EXPECT_FALSE(fs::exists(root / "rank1"));
  fs::remove_all(root);
}

TEST(TrainLogger, PlotSetOfAGrpoAndAnSftRun) {
  const auto root = test::make_temp_dir("logger_plots");
  std::vector<nlohmann::json> grpo;
  for (int s = 1; s <= 5; ++s)
    grpo.push_back({{"step", s},
                    {"loss", 0.01 * s},
                    {"rewards/accuracy", 0.5},
                    {"rewards/format", 0.9},
                    {"reward", 1.4},
                    {"kl", 0.001 * s},
                    {"completion_length", 12.0},
                    {"grad_norm", 0.3},
                    {"learning_rate", 1e-6}});
  const auto files = write_training_plots((root / "g").string(), grpo, "demo");
  for (const char* f : {"reward.svg", "rewards_accuracy.svg", "rewards_format.svg",
                        "rewards_and_lengths.svg", "completion_length.svg", "kl.svg", "loss.svg",
                        "grad_norm.svg", "learning_rate.svg", "index.html"})
    EXPECT_TRUE(fs::exists(root / "g" / "plots" / f)) << f;
  EXPECT_EQ(files.size(), 10u);
  // Reward names that are no file names (external:<command>): one safe file each, clashes numbered.
  std::vector<nlohmann::json> ext;
  for (int s = 1; s <= 3; ++s)
    ext.push_back({{"step", s},
                   {"rewards/external:python3 scripts/r.py --x=1", 0.5},
                   {"rewards/external:python3 scripts/r.py --x?1", 0.25},
                   {"reward", 0.75}});
  write_training_plots((root / "e").string(), ext, "");
  EXPECT_TRUE(fs::exists(root / "e" / "plots" / "rewards_external_python3_scripts_r.py_--x_1.svg"));
  EXPECT_TRUE(fs::exists(root / "e" / "plots" / "rewards_external_python3_scripts_r.py_--x_1_2.svg"));
  std::ifstream f(root / "g" / "plots" / "rewards_and_lengths.svg");
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_NE(ss.str().find("completion length (tokens)"), std::string::npos);
  EXPECT_NE(ss.str().find("demo: rewards and completion length"), std::string::npos);
  std::vector<nlohmann::json> sft = {{{"step", 1}, {"loss", 2.0}, {"completion_length", 3.0}}};
  write_training_plots((root / "s").string(), sft, "");
  EXPECT_FALSE(fs::exists(root / "s" / "plots" / "reward.svg"));
  EXPECT_TRUE(fs::exists(root / "s" / "plots" / "loss.svg"));
  EXPECT_FALSE(fs::exists(root / "s" / "plots" / "kl.svg"));
  fs::remove_all(root);
}

// A tiny GRPO run with report_to tensorboard and log_completions: completions.jsonl holds B x G
// rows per step with the step's rewards, the SVGs are there, and tensorboard reads back every
// metrics.jsonl value.
TEST(TrainLogger, TinyRunWritesEventsCompletionsAndPlots) {
  const auto root = test::make_temp_dir("logger_run");
  const std::string model = test::make_tiny_model_dir(root);
  if (model.empty())
    GTEST_SKIP()
        << "tests/data/tokenizer/qwen2vl/tokenizer.json missing (scripts/tokenizer_fixtures.sh)";
  GRPOConfig c = test::tiny_run_config(model, test::make_demo_slice(root, 4), root / "run");
  c.max_steps = 3;
  c.report_to = {"tensorboard"};
  c.log_completions = true;
  RewardRegistry reg = test::toy_registry();
  TrainerHooks h;
  h.progress_bar = false;
  h.rewards = &reg;
  const TrainResult r = train(c, h);
  const fs::path run = root / "run";
  const auto metrics = read_jsonl(run / "metrics.jsonl");
  ASSERT_EQ(metrics.size(), 3u);
  const auto rows = read_jsonl(run / "completions.jsonl");
  ASSERT_EQ(rows.size(), 3u * 2u);  // B 1 x G 2 per step
  double acc = 0;
  for (const auto& row : rows)
    if (row["step"] == 1) acc += row["rewards"]["accuracy"].get<double>() / 2;
  EXPECT_DOUBLE_EQ(acc, metrics[0]["rewards/accuracy"].get<double>());
  EXPECT_TRUE(fs::exists(run / "plots" / "rewards_and_lengths.svg"));
  std::string event;
  for (const auto& e : fs::directory_iterator(run))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
      event = e.path().string();
  ASSERT_FALSE(event.empty());
  const char* py = std::getenv("MEDR1_PYTHON");
  if (py == nullptr || *py == '\0')
    GTEST_SKIP() << "MEDR1_PYTHON not set: event file not read back";
  const fs::path script = root / "read.py", out = root / "events.json";
  std::ofstream(script)
      << "import json, sys\n"
         "from tensorboard.backend.event_processing import event_accumulator as ea\n"
         "a = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})\n"
         "a.Reload()\n"
         "print(json.dumps({'scalars': {t: [[e.step, e.value] for e in a.Scalars(t)] "
         "for t in a.Tags()['scalars']}, 'texts': {t: len(a.Tensors(t)) for t in "
         "a.Tags()['tensors']}}))\n";
  std::ostringstream cmd;  // (a stream: GCC 12 warns falsely on "'" + std::string chains)
  cmd << "'" << py << "' '" << script.string() << "' '" << run.string() << "' > '" << out.string()
      << "'";
  ASSERT_EQ(std::system(cmd.str().c_str()), 0);
  std::ifstream jf(out);
  const nlohmann::json got = nlohmann::json::parse(jf);
  for (const auto& rec : metrics)
    for (auto it = rec.begin(); it != rec.end(); ++it) {
      if (it.key() == "step") continue;
      const auto& s = got["scalars"][it.key()];
      const int64_t step = rec["step"].get<int64_t>();
      ASSERT_EQ(s.size(), metrics.size()) << it.key();
      EXPECT_EQ(s[step - 1][0].get<int64_t>(), step);
      EXPECT_EQ(s[step - 1][1].get<double>(),
                static_cast<double>(static_cast<float>(it->get<double>())))
          << it.key();
    }
  EXPECT_EQ(got["texts"]["completions"], 3);
  EXPECT_EQ(r.global_step, 3);
  fs::remove_all(root);
}

}  // namespace
}  // namespace medr1::rl
