// Helpers of the medr1-train end-to-end dist tests (train_ddp_test.cpp, train_multinode_test.cpp): the tiny
// Qwen2-VL fixture and its SFT / GRPO command lines, a safetensors reader, weight and metrics comparison.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/dist_test_util.h"

namespace medr1::dist::testing {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

inline const fs::path kTrain = fs::path(MEDR1_BINARY_DIR) / "medr1-train";
inline const fs::path kTokenizer = fs::path(MEDR1_TEST_DATA) / "tokenizer" / "qwen2vl" / "tokenizer.json";

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The vendored tiny Qwen2-VL (fp32 weights) + tokenizer, and the first 4 demo records.
struct Fixture {
  fs::path model, data;
  explicit Fixture(const fs::path& root) {
    const fs::path src = fs::path(MEDR1_TEST_DATA) / "qwen2vl-tiny";
    model = root / "model";
    fs::create_directories(model);
    for (const char* f : {"config.json", "model.safetensors", "preprocessor_config.json", "generation_config.json",
                          "tokenizer_config.json", "chat_template.json"})
      fs::copy_file(src / f, model / f, fs::copy_options::overwrite_existing);
    fs::copy_file(kTokenizer, model / "tokenizer.json", fs::copy_options::overwrite_existing);
    for (const auto& e : fs::directory_iterator(model))
      fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
    std::ifstream f(fs::path(MEDR1_SOURCE_DIR) / "data" / "demo" / "train_easy.json");
    const nlohmann::json all = nlohmann::json::parse(f);
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < 4 && i < all.size(); ++i) out.push_back(all[i]);
    data = root / "train.json";
    std::ofstream(data) << out.dump(1);
    // GRPO prompts: the same 4 records, each solution a bare word (no <answer> tag: the accuracy reward then
    // compares it with the whole stripped completion). The words are among the two likeliest first tokens
    // of the tiny model on these prompts, so with top_k 2 some completions of a group match and others
    // do not: non-zero advantages, a real GRPO update (the test checks the rewards are not all zero).
    nlohmann::json grpo = out;
    const char* words[] = {"strained", "Pump", "strained", "Pump"};
    for (size_t i = 0; i < grpo.size(); ++i) grpo[i]["solution"] = words[i];
    grpo_data = root / "train_grpo.json";
    std::ofstream(grpo_data) << grpo.dump(1);
  }
  fs::path grpo_data;
  // SFT (the tiny model's GRPO rewards are all zero, so GRPO would not move the weights), fp32,
  // B = 1 prompt per micro-batch, lr high enough that two steps move every weight.
  std::vector<std::string> args(const fs::path& out, int ga, int steps, int save_steps = 1000) const {
    return {"--algo", "sft", "--output_dir", out.string(), "--model_name_or_path", model.string(),
            "--dataset_name", data.string(), "--dataset_root", (fs::path(MEDR1_SOURCE_DIR) / "data" / "demo").string(),
            "--prompt_template", "nothink", "--per_device_train_batch_size", "1",
            "--gradient_accumulation_steps", std::to_string(ga), "--max_steps", std::to_string(steps),
            "--save_steps", std::to_string(save_steps), "--learning_rate", "1e-3", "--max_pixels", "3136",
            "--min_pixels", "3136", "--max_completion_length", "4", "--seed", "7", "--logging_steps", "1"};
  }
  // GRPO, fp32: 4 generations of 1 token per prompt sampled from the top 2, accuracy reward, KL beta 0.04
  // (the Med-R1 default), B = 1 prompt per micro-batch.
  std::vector<std::string> grpo_args(const fs::path& out, int ga, int steps) const {
    return {"--algo", "grpo", "--output_dir", out.string(), "--model_name_or_path", model.string(),
            "--dataset_name", grpo_data.string(), "--dataset_root",
            (fs::path(MEDR1_SOURCE_DIR) / "data" / "demo").string(), "--prompt_template", "nothink",
            "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", std::to_string(ga),
            "--max_steps", std::to_string(steps), "--save_steps", "1000", "--learning_rate", "1e-3",
            "--max_pixels", "3136", "--min_pixels", "3136", "--max_completion_length", "1", "--num_generations",
            "4", "--top_k", "2", "--temperature", "1.0", "--beta", "0.04", "--reward_funcs", "accuracy", "--seed",
            "7", "--logging_steps", "1"};
  }
};

// A minimal safetensors reader (F32 tensors only): name -> values.
inline std::map<std::string, std::vector<float>> read_f32_safetensors(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), static_cast<std::streamsize>(n));
  const nlohmann::json h = nlohmann::json::parse(header);
  std::map<std::string, std::vector<float>> out;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    EXPECT_EQ(it->at("dtype").get<std::string>(), "F32") << it.key();
    const auto off = it->at("data_offsets").get<std::vector<uint64_t>>();
    std::vector<float> v((off[1] - off[0]) / 4);
    f.seekg(static_cast<std::streamoff>(8 + n + off[0]));
    f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
    out[it.key()] = std::move(v);
  }
  return out;
}

// max |a - b| over all tensors (names and sizes must match).
inline double max_abs_diff(const fs::path& a, const fs::path& b) {
  const auto ta = read_f32_safetensors(a), tb = read_f32_safetensors(b);
  EXPECT_EQ(ta.size(), tb.size());
  double m = 0;
  for (const auto& [name, va] : ta) {
    auto it = tb.find(name);
    if (it == tb.end() || it->second.size() != va.size()) {
      ADD_FAILURE() << name << " missing or resized";
      continue;
    }
    for (size_t i = 0; i < va.size(); ++i) m = std::max(m, std::abs(static_cast<double>(va[i]) - it->second[i]));
  }
  return m;
}

inline bool train_prerequisites() { return fs::exists(kTrain) && fs::exists(kTokenizer); }

inline std::vector<nlohmann::json> read_metrics(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream f(p);
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace medr1::dist::testing
