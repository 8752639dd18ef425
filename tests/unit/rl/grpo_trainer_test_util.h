// Shared fixtures of the grpo_trainer_* tests: a temp run folder, the vendored qwen2vl-tiny checkpoint made
// trainable (plus the vendored Qwen2-VL tokenizer.json), a 4-record slice of the demo data set, and a
// config with tiny rollouts.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "medr1/rl/grpo_config.h"
#include "medr1/rl/rewards.h"

namespace medr1::rl::test {

namespace fs = std::filesystem;

using medr1::test::make_temp_dir;

// Returns "" (and the caller skips) when the tokenizer fixture was not fetched (scripts/tokenizer_fixtures.sh).
inline std::string make_tiny_model_dir(const fs::path& root) {
  const fs::path tok = fs::path(MEDR1_TEST_DATA) / "tokenizer" / "qwen2vl" / "tokenizer.json";
  if (!fs::exists(tok)) return "";
  const fs::path src = fs::path(MEDR1_TEST_DATA) / "qwen2vl-tiny";
  const fs::path dst = root / "model";
  fs::create_directories(dst);
  for (const char* f : {"config.json", "model.safetensors", "preprocessor_config.json", "generation_config.json",
                        "tokenizer_config.json", "chat_template.json"})
    fs::copy_file(src / f, dst / f, fs::copy_options::overwrite_existing);
  fs::copy_file(tok, dst / "tokenizer.json", fs::copy_options::overwrite_existing);
  for (const auto& e : fs::directory_iterator(dst))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  return dst.string();
}

// The first `n` records of data/demo/train_easy.json (images resolved against data/demo).
inline std::string make_demo_slice(const fs::path& root, size_t n) {
  std::ifstream f(fs::path(MEDR1_SOURCE_DIR) / "data" / "demo" / "train_easy.json");
  nlohmann::json all = nlohmann::json::parse(f);
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < n && i < all.size(); ++i) out.push_back(all[i]);
  const fs::path p = root / "train.json";
  std::ofstream(p) << out.dump(1);
  return p.string();
}

inline GRPOConfig tiny_run_config(const std::string& model_dir, const std::string& dataset, const fs::path& out) {
  GRPOConfig c;
  c.output_dir = out.string();
  c.model_name_or_path = model_dir;
  c.dataset_name = dataset;
  c.dataset_root = (fs::path(MEDR1_SOURCE_DIR) / "data" / "demo").string();
  c.prompt_template = "nothink";
  c.num_generations = 2;
  c.per_device_train_batch_size = 1;
  c.gradient_accumulation_steps = 1;
  c.max_completion_length = 4;
  c.max_pixels = 3136;
  c.min_pixels = 3136;
  c.learning_rate = 1e-3;
  c.max_steps = 2;
  c.save_steps = 1000;
  c.save_only_model = false;
  return c;
}

// The default rewards with "accuracy" replaced by a toy score: (byte length of the completion mod 3) / 2, so that an untrained model's
// completions get different rewards (non-zero advantages) and a step really moves the weights.
inline RewardRegistry toy_registry() {
  RewardRegistry reg = default_registry();
  reg.add("accuracy", [](const RewardInputs& in) {
    std::vector<double> out;
    for (const auto& c : in.completions) out.push_back(static_cast<double>(c.size() % 3) / 2.0);
    return out;
  });
  return reg;
}

}  // namespace medr1::rl::test
