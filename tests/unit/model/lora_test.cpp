// LoRA (model/lora.h): PEFT's formula per projection, a fresh adapter leaves the model unchanged, adapters off =
// the base model, merge = unmerged forward, PEFT files round trip, clear errors for adapters we cannot load, and
// (PeftLogits.*) the real PEFT 0.14 on transformers 4.49 loading our adapter and our merged checkpoint with the
// same logits.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "test_util.h"
#include "medr1/io/checkpoint.h"
#include "medr1/io/json_util.h"
#include "medr1/io/safetensors.h"
#include "medr1/model/lora.h"
#include "medr1/model/qwen2_text.h"
#include "medr1/model/qwen2_vl.h"
#include "medr1/model/weight_loader.h"

namespace {

using namespace medr1::model;
namespace fs = std::filesystem;
using nlohmann::json;

const std::string kTiny = std::string(MEDR1_TEST_DATA) + "/qwen2vl-tiny";
const std::string kTiny25 = std::string(MEDR1_TEST_DATA) + "/qwen2_5vl-tiny";

fs::path temp_dir(const std::string& name) { return medr1::test::make_temp_dir("lora_test_" + name); }

using medr1::test::what_of;

// One prompt with one 4x4-patch image (4 image tokens) between text tokens.
Qwen2VLInputs image_prompt(const Qwen2VLConfig& cfg) {
  auto gen = at::detail::createCPUGenerator(7);
  Qwen2VLInputs in;
  std::vector<int64_t> ids = {151644, 872, 198, cfg.vision_start_token_id};
  for (int i = 0; i < 4; ++i) ids.push_back(cfg.image_token_id);
  for (int64_t t : {cfg.vision_end_token_id, int64_t{3838}, int64_t{374}, int64_t{279}, int64_t{2168}, int64_t{30}})
    ids.push_back(t);
  in.input_ids = at::tensor(ids, at::kLong).view({1, -1});
  in.attention_mask = at::ones_like(in.input_ids);
  in.pixel_values = at::randn({16, 1176}, gen, at::kFloat);
  in.image_grid_thw = at::tensor(std::vector<int64_t>{1, 4, 4}, at::kLong).view({1, 3});
  return in;
}

at::Tensor logits_of(Qwen2VLForConditionalGeneration& m, const Qwen2VLInputs& in) {
  at::NoGradGuard ng;
  return m->forward(in).logits;
}

// Gives every adapter random, clearly non-zero B (and A) so the adapted model differs from the base.
void randomize(LoraSet& set, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  at::NoGradGuard ng;
  for (auto& [name, a] : set.adapters) {
    a->lora_A->weight.normal_(0.0, 0.5, gen);
    a->lora_B->weight.normal_(0.0, 0.5, gen);
  }
}

LoraConfig small_lora(std::vector<std::string> targets = {}) {
  LoraConfig c;
  c.r = 4;
  c.lora_alpha = 8;
  c.lora_dropout = 0.0;
  c.target_modules = std::move(targets);
  return c;
}

TEST(Lora, FreshAdapterLeavesTheModelUnchanged) {
  auto m = load_qwen2_vl(kTiny, at::kFloat);
  const Qwen2VLInputs in = image_prompt(m->config());
  const at::Tensor base = logits_of(m, in);
  auto set = inject_lora(*m, small_lora(), 1);
  EXPECT_EQ(set->adapters.size(), 2u * 7u);  // 2 decoder layers x q k v o gate up down
  for (const auto& [name, a] : set->adapters) EXPECT_EQ(a->lora_B->weight.abs().max().item<float>(), 0.0f) << name;
  EXPECT_TRUE(at::equal(logits_of(m, in), base));
  // lora_A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform with a = sqrt(5)).
  const at::Tensor a0 = set->adapters[0].second->lora_A->weight;
  EXPECT_LE(a0.abs().max().item<float>(), 1.0 / std::sqrt(64.0));
  EXPECT_GT(a0.abs().max().item<float>(), 0.5 / std::sqrt(64.0));
}

TEST(Lora, ProjectionFollowsPeftFormula) {
  auto m = load_qwen2_vl(kTiny, at::kFloat);
  LoraConfig c = small_lora({"q_proj"});
  auto set = inject_lora(*m, c, 1);
  randomize(*set, 3);
  ASSERT_EQ(set->adapters.size(), 2u);
  EXPECT_EQ(set->adapters[0].first, "model.layers.0.self_attn.q_proj");
  const LoraAdapter& a = *set->adapters[0].second;
  EXPECT_DOUBLE_EQ(a.scaling, 2.0);  // alpha / r
  auto gen = at::detail::createCPUGenerator(5);
  const at::Tensor x = at::randn({3, 64}, gen, at::kFloat);
  const at::Tensor y = at::randn({3, 64}, gen, at::kFloat);
  const at::Tensor got = a.apply(y, x);
  const at::Tensor want = y.to(at::kDouble) + x.to(at::kDouble).matmul(a.lora_A->weight.to(at::kDouble).t())
                                                   .matmul(a.lora_B->weight.to(at::kDouble).t()) * 2.0;
  EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), 1e-5);
  LoraConfig rs = c;
  rs.use_rslora = true;
  EXPECT_DOUBLE_EQ(rs.scaling(), 8.0 / 2.0);  // alpha / sqrt(r)
  // Dropout only while training: in eval mode p = 0.5 changes nothing, in train mode it does.
  LoraAdapter& w = *set->adapters[0].second;
  w.dropout = 0.5;
  w.lora_A->eval();
  EXPECT_TRUE(at::equal(w.apply(y, x), got));
  w.lora_A->train();
  EXPECT_FALSE(at::equal(w.apply(y, x), got));
}

TEST(Lora, DisabledIsTheBaseModelAndMergeEqualsTheAdaptedForward) {
  for (const std::string& dir : {kTiny, kTiny25}) {
    auto m = load_qwen2_vl(dir, at::kFloat);
    const Qwen2VLInputs in = image_prompt(m->config());
    const at::Tensor base = logits_of(m, in);
    auto set = inject_lora(*m, small_lora(), 1);
    randomize(*set, 2);
    const at::Tensor adapted = logits_of(m, in);
    EXPECT_GT((adapted - base).abs().max().item<float>(), 1e-2) << dir;
    {
      LoraSet::Disabled off(*set);
      EXPECT_TRUE(at::equal(logits_of(m, in), base)) << dir;
    }
    EXPECT_TRUE(at::equal(logits_of(m, in), adapted)) << dir;
    merge_and_unload(*m, *set);
    for (const auto& p : m->named_parameters()) EXPECT_FALSE(is_lora_param(p.key())) << p.key();
    EXPECT_LT((logits_of(m, in) - adapted).abs().max().item<float>(), 1e-4) << dir;
  }
}

TEST(Lora, OnlyTheAdaptersGetGradients) {
  auto m = load_qwen2_vl(kTiny, at::kFloat);
  auto set = inject_lora(*m, small_lora({"v_proj", "down_proj"}), 1);
  randomize(*set, 2);
  for (auto& p : m->named_parameters()) p.value().set_requires_grad(is_lora_param(p.key()));
  m->train();
  const Qwen2VLInputs in = image_prompt(m->config());
  m->forward(in).logits.pow(2).mean().backward();
  int with_grad = 0;
  for (const auto& p : m->named_parameters()) {
    if (is_lora_param(p.key())) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_GT(p.value().grad().abs().sum().item<float>(), 0.0f) << p.key();
      ++with_grad;
    } else {
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
    }
  }
  EXPECT_EQ(with_grad, 2 * 2 * 2);  // 2 layers x 2 projections x (A, B)
}

TEST(Lora, PeftFilesRoundTrip) {
  const fs::path d = temp_dir("roundtrip");
  auto m = load_qwen2_vl(kTiny25, at::kFloat);
  const Qwen2VLInputs in = image_prompt(m->config());
  auto set = inject_lora(*m, small_lora({"q_proj", "v_proj", "gate_proj"}), 1);
  randomize(*set, 4);
  const at::Tensor adapted = logits_of(m, in);
  set->save(d.string(), kTiny25);
  const json cfg = medr1::io::read_json_file((d / "adapter_config.json").string());
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["lora_alpha"], 8.0);
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["target_modules"], "model\\.layers\\.\\d+\\.(self_attn\\.(q_proj|v_proj)|mlp\\.(gate_proj))");
  const auto file = medr1::io::load_safetensors((d / "adapter_model.safetensors").string());
  EXPECT_EQ(file.size(), 2u * 3u * 2u);
  ASSERT_TRUE(file.count("base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight"));
  EXPECT_EQ(file.at("base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight").sizes(),
            (std::vector<int64_t>{64, 4}));
  // A fresh base + the folder = the adapted model; and load_qwen2_vl on the folder = the merged model.
  auto m2 = load_qwen2_vl(kTiny25, at::kFloat);
  auto set2 = load_lora_adapter(*m2, d.string());
  EXPECT_EQ(set2->targets, (std::vector<std::string>{"q_proj", "v_proj", "gate_proj"}));
  EXPECT_TRUE(at::equal(logits_of(m2, in), adapted));
  auto merged = load_qwen2_vl(d.string(), at::kFloat);
  EXPECT_LT((logits_of(merged, in) - adapted).abs().max().item<float>(), 1e-4);
  fs::remove_all(d);
}

TEST(Lora, TargetsAndAdapterConfigErrorsNameTheField) {
  EXPECT_NE(what_of([] { resolve_lora_targets(small_lora({"qkv"})); }).find("lora_target_modules: 'qkv'"),
            std::string::npos);
  LoraConfig bad = small_lora();
  bad.r = 0;
  EXPECT_NE(what_of([&] { resolve_lora_targets(bad); }).find("lora_r"), std::string::npos);
  EXPECT_EQ(resolve_lora_targets(small_lora({"all-linear"})).size(), 7u);
  EXPECT_EQ(resolve_lora_targets(small_lora({"down_proj", "q_proj"})),
            (std::vector<std::string>{"q_proj", "down_proj"}));

  const fs::path d = temp_dir("errors");
  auto m = load_qwen2_vl(kTiny, at::kFloat);
  auto set = inject_lora(*m, small_lora({"q_proj"}), 1);
  set->save(d.string(), kTiny);
  auto edit = [&](const std::function<void(json&)>& f) {
    json j = medr1::io::read_json_file((d / "adapter_config.json").string());
    f(j);
    std::ofstream((d / "adapter_config.json").string()) << j.dump();
  };
  auto load_err = [&] {
    return what_of([&] {
      auto fresh = load_qwen2_vl(kTiny, at::kFloat);
      load_lora_adapter(*fresh, d.string());
    });
  };
  // A list of names (how most PEFT users write it) is read as PEFT matches it.
  edit([](json& j) { j["target_modules"] = json::array({"q_proj"}); });
  EXPECT_EQ(load_err(), "");
  edit([](json& j) { j["use_dora"] = true; });
  EXPECT_NE(load_err().find("use_dora"), std::string::npos);
  edit([](json& j) { j["use_dora"] = false; j["target_modules"] = json::array({"qkv"}); });
  EXPECT_NE(load_err().find("target_modules: 'qkv'"), std::string::npos);
  edit([](json& j) { j["target_modules"] = "model\\.layers\\.0\\.self_attn\\.q_proj"; });
  EXPECT_NE(load_err().find("some decoder layers only"), std::string::npos);
  edit([](json& j) { j["target_modules"] = "visual\\..*"; });
  EXPECT_NE(load_err().find("selects none"), std::string::npos);
  edit([](json& j) { j["target_modules"] = "model\\.layers\\.\\d+\\.self_attn\\.q_proj"; j["r"] = 8; });
  EXPECT_NE(load_err().find("shape"), std::string::npos);
  edit([](json& j) { j["r"] = 4; j["target_modules"] = json::array({"q_proj", "k_proj"}); });
  EXPECT_NE(load_err().find("k_proj.lora_A.weight: missing"), std::string::npos);
  edit([](json& j) { j["peft_type"] = "IA3"; });
  EXPECT_NE(load_err().find("peft_type"), std::string::npos);
  fs::remove_all(d);
}

// --- the real PEFT on transformers' model ---------------------------------------------------------------------

std::string peer_python() {
  const fs::path p = fs::path(MEDR1_SOURCE_DIR) / ".venv-peer" / "bin" / "python";
  return fs::exists(p) ? p.string() : std::string();
}

std::string run_capture(const std::string& cmd, int* status) {
  std::string out;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  *status = ::pclose(f);
  return out;
}

void check_against_peft(const std::string& set_dir, const std::string& tag) {
  const std::string py = peer_python();
  if (py.empty()) GTEST_SKIP() << ".venv-peer (transformers + peft, made by scripts/setup.sh) is missing";
  const fs::path d = temp_dir("peft_" + tag);
  auto m = load_qwen2_vl(set_dir, at::kFloat);
  const Qwen2VLInputs in = image_prompt(m->config());
  auto set = inject_lora(*m, small_lora(), 1);
  randomize(*set, 11);
  const at::Tensor ours = logits_of(m, in);
  set->save((d / "adapter").string(), set_dir);
  merge_and_unload(*m, *set);
  save_qwen2_vl(m, (d / "merged").string());
  medr1::io::save_safetensors((d / "inputs.safetensors").string(),
                              {{"input_ids", in.input_ids},
                               {"attention_mask", in.attention_mask},
                               {"pixel_values", in.pixel_values},
                               {"image_grid_thw", in.image_grid_thw}});
  int status = -1;
  const std::string cmd = py + " " + MEDR1_SOURCE_DIR + "/tests/peft/peft_logits.py " + set_dir + " " +
                          (d / "adapter").string() + " " + (d / "merged").string() + " " +
                          (d / "inputs.safetensors").string() + " " + (d / "out.safetensors").string() + " 2>&1";
  const std::string out = run_capture(cmd, &status);
  ASSERT_EQ(status, 0) << out;
  const json info = json::parse(out.substr(out.rfind("{\"adapted_modules\"")));
  // PEFT adapted exactly the 14 decoder projections (for Qwen2.5-VL not the vision tower's gate/up/down_proj).
  ASSERT_EQ(info["adapted_modules"].size(), 14u) << info.dump();
  for (const auto& n : info["adapted_modules"])
    EXPECT_EQ(n.get<std::string>().rfind("base_model.model.model.layers.", 0), 0u) << n;
  const auto peer = medr1::io::load_safetensors((d / "out.safetensors").string());
  const double base_scale = ours.abs().max().item<double>();
  for (const char* k : {"peft", "peft_merged", "ours_merged"}) {
    const double err = (peer.at(k).to(at::kFloat) - ours).abs().max().item<double>();
    std::printf("[peft %s] %s: max |logits - medr1 adapted| = %.3g (max |logits| %.3g)\n", tag.c_str(), k, err,
                base_scale);
    EXPECT_LE(err, 1e-4) << k;
  }
  fs::remove_all(d);
}

TEST(PeftLogits, Qwen2VLAdapterLoadsInPeftWithTheSameLogits) { check_against_peft(kTiny, "qwen2vl"); }
TEST(PeftLogits, Qwen25VLAdapterLoadsInPeftWithTheSameLogits) { check_against_peft(kTiny25, "qwen2_5vl"); }

}  // namespace
