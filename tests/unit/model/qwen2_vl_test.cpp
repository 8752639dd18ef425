// Config parsing, the name-walk loader (sharded save/load, missing / mis-shaped / non-float tensors), the KV cache
// (prefill + decode == one full forward) and differentiability of the Qwen2-VL wrapper.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "test_util.h"
#include "medr1/core/error.h"
#include "medr1/io/json_util.h"
#include "medr1/io/safetensors.h"
#include "medr1/model/qwen2_vl.h"
#include "medr1/model/weight_loader.h"

namespace {

using namespace medr1::model;
namespace fs = std::filesystem;
using nlohmann::json;

const std::string kTiny = std::string(MEDR1_TEST_DATA) + "/qwen2vl-tiny";
const std::string kTiny25 = std::string(MEDR1_TEST_DATA) + "/qwen2_5vl-tiny";

fs::path temp_dir(const std::string& name) { return medr1::test::make_temp_dir("model_test_" + name); }

json small_config_json() {
  return json::parse(R"({
    "architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
    "vocab_size": 300, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "tie_word_embeddings": false, "torch_dtype": "float32",
    "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
    "image_token_id": 290, "video_token_id": 291, "vision_start_token_id": 292, "vision_end_token_id": 293,
    "vision_config": {"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
                      "in_chans": 3, "spatial_merge_size": 2, "patch_size": 14, "temporal_patch_size": 2}
  })");
}

using medr1::test::what_of;

TEST(Qwen2VLConfig, ParsesBothTinyConfigsByModelType) {
  Qwen2VLConfig a = load_qwen2_vl_config(kTiny);
  EXPECT_EQ(a.version, QwenVLVersion::Qwen2VL);
  EXPECT_EQ(a.hidden_size, 64);
  EXPECT_EQ(a.num_key_value_heads, 2);
  EXPECT_EQ(a.mrope_section, (std::vector<int64_t>{2, 3, 3}));
  EXPECT_EQ(a.rope_type, "mrope");
  EXPECT_TRUE(a.tie_word_embeddings);
  EXPECT_EQ(a.eos_token_id, (std::vector<int64_t>{151645}));
  EXPECT_FALSE(a.pad_token_id.has_value());
  Qwen2VLConfig b = load_qwen2_vl_config(kTiny25 + "/config.json");
  EXPECT_EQ(b.version, QwenVLVersion::Qwen2_5VL);
  EXPECT_EQ(b.num_key_value_heads, 1);
  // architectures alone decide when model_type is absent.
  json j = small_config_json();
  j.erase("model_type");
  j["architectures"] = {"Qwen2_5_VLForConditionalGeneration"};
  j["vision_config"] = b.vision_config;
  EXPECT_EQ(parse_qwen2_vl_config(j, "x.json").version, QwenVLVersion::Qwen2_5VL);
}

TEST(Qwen2VLConfig, ErrorsNameFileAndDottedPath) {
  json j = small_config_json();
  j["rope_scaling"].erase("mrope_section");
  EXPECT_NE(what_of([&] { parse_qwen2_vl_config(j, "cfg.json"); }).find("cfg.json: rope_scaling.mrope_section"),
            std::string::npos);
  j = small_config_json();
  j["hidden_size"] = "big";
  EXPECT_NE(what_of([&] { parse_qwen2_vl_config(j, "cfg.json"); }).find("cfg.json: hidden_size"), std::string::npos);
  j = small_config_json();
  j["vision_config"]["depth"] = "x";
  EXPECT_NE(what_of([&] { parse_qwen2_vl_config(j, "cfg.json"); }).find("vision_config.depth"), std::string::npos);
  j = small_config_json();
  j["model_type"] = "llama";
  j.erase("architectures");
  EXPECT_THROW(parse_qwen2_vl_config(j, "cfg.json"), medr1::Error);
  // rope_type is accepted as well as type; HF defaults fill absent fields.
  j = small_config_json();
  j["rope_scaling"] = {{"rope_type", "default"}, {"mrope_section", {1, 1, 2}}};
  j.erase("num_key_value_heads");
  j.erase("rms_norm_eps");
  Qwen2VLConfig c = parse_qwen2_vl_config(j, "cfg.json");
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
}

TEST(Qwen2VLConfig, ToJsonRoundTripsAndGenerationConfig) {
  Qwen2VLConfig a = load_qwen2_vl_config(kTiny);
  Qwen2VLConfig b = parse_qwen2_vl_config(to_json(a), "round.json");
  EXPECT_EQ(b.hidden_size, a.hidden_size);
  EXPECT_EQ(b.mrope_section, a.mrope_section);
  EXPECT_EQ(to_json(a)["rope_scaling"]["type"], "mrope");
  EXPECT_EQ(to_json(a)["sliding_window"], 32768);  // unknown keys are kept
  GenerationConfig g = load_generation_config(kTiny);
  EXPECT_EQ(g.eos_token_id, (std::vector<int64_t>{151645, 151643}));
  EXPECT_EQ(g.pad_token_id, 151643);
  EXPECT_FALSE(g.do_sample);
  EXPECT_DOUBLE_EQ(g.repetition_penalty, 1.0);  // absent -> transformers default
  EXPECT_EQ(g.top_k, 50);
  GenerationConfig h = parse_generation_config(json::parse(R"({"eos_token_id": 7, "top_p": 0.001})"), "g.json");
  EXPECT_EQ(h.eos_token_id, (std::vector<int64_t>{7}));
  EXPECT_NE(what_of([] { parse_generation_config(json::parse(R"({"top_k": "a"})"), "g.json"); }).find("g.json: top_k"),
            std::string::npos);
}

TEST(Qwen2VLModel, ParameterNamesEqualCheckpoint) {
  auto model = load_qwen2_vl(kTiny);
  auto st = medr1::io::load_safetensors(kTiny + "/model.safetensors");
  auto named = model->named_parameters(true);
  EXPECT_EQ(named.size(), st.size());  // tied: no lm_head.weight on either side
  for (const auto& p : named) {
    ASSERT_TRUE(st.count(p.key())) << p.key();
    EXPECT_EQ(p.value().sizes(), st.at(p.key()).sizes()) << p.key();
  }
  EXPECT_TRUE(named.contains("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_TRUE(named.contains("visual.merger.mlp.2.weight"));
}

at::Tensor text_logits(Qwen2VLForConditionalGeneration& m, const at::Tensor& ids) {
  Qwen2VLInputs in;
  in.input_ids = ids;
  return m->forward(in).logits;
}

TEST(WeightLoader, ShardedSaveLoadsToIdenticalLogits) {
  Qwen2VLConfig cfg = parse_qwen2_vl_config(small_config_json(), "small.json");
  at::manual_seed(0);
  Qwen2VLForConditionalGeneration m(cfg);
  m->eval();
  fs::path d = temp_dir("sharded");
  save_qwen2_vl(m, d.string(), /*max_shard_bytes=*/40000);
  ASSERT_TRUE(fs::exists(d / "model.safetensors.index.json"));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(d)) shards += e.path().filename().string().rfind("model-0", 0) == 0;
  EXPECT_GE(shards, 2);
  auto m2 = load_qwen2_vl(d.string());
  at::Tensor ids = at::randint(0, 280, {2, 7}, at::kLong);
  at::NoGradGuard ng;
  EXPECT_TRUE(at::equal(text_logits(m, ids), text_logits(m2, ids)));
  EXPECT_TRUE(m2->lm_head);  // untied: lm_head.weight was required and loaded
  fs::remove_all(d);
}

TEST(WeightLoader, MissingWrongShapeAndWrongDtypeNameTheTensor) {
  Qwen2VLConfig cfg = parse_qwen2_vl_config(small_config_json(), "small.json");
  Qwen2VLForConditionalGeneration m(cfg);
  auto base = named_weights(*m);
  auto write = [&](const std::string& tag, const std::function<void(std::vector<std::pair<std::string, at::Tensor>>&)>&
                                               edit) {
    fs::path d = temp_dir(tag);
    auto w = base;
    edit(w);
    medr1::io::save_safetensors((d / "model.safetensors").string(), w);
    std::ofstream(d / "config.json") << small_config_json().dump();
    return d;
  };
  const std::string up = "model.layers.1.mlp.up_proj.weight";
  fs::path d1 = write("missing", [&](auto& w) { std::erase_if(w, [&](auto& p) { return p.first == up; }); });
  std::string e1 = what_of([&] { load_qwen2_vl(d1.string()); });
  EXPECT_NE(e1.find("missing"), std::string::npos) << e1;
  EXPECT_NE(e1.find(up), std::string::npos) << e1;
  fs::path d2 = write("shape", [&](auto& w) {
    for (auto& p : w)
      if (p.first == "model.layers.0.self_attn.q_proj.weight") p.second = at::zeros({8, 32});
  });
  std::string e2 = what_of([&] { load_qwen2_vl(d2.string()); });
  EXPECT_NE(e2.find("model.layers.0.self_attn.q_proj.weight (checkpoint [8, 32], model [32, 32])"), std::string::npos)
      << e2;
  fs::path d3 = write("dtype", [&](auto& w) {
    for (auto& p : w)
      if (p.first == "model.norm.weight") p.second = at::ones({32}, at::kLong);
  });
  std::string e3 = what_of([&] { load_qwen2_vl(d3.string()); });
  EXPECT_NE(e3.find("wrong dtype"), std::string::npos) << e3;
  EXPECT_NE(e3.find("model.norm.weight"), std::string::npos) << e3;
  fs::path d4 = write("unexpected", [&](auto& w) { w.emplace_back("model.extra.weight", at::ones({2})); });
  EXPECT_NE(what_of([&] { load_qwen2_vl(d4.string()); }).find("unexpected tensors (1): model.extra.weight"),
            std::string::npos);
  // bf16 checkpoint tensors load into a float32 model (torch_dtype conversion on load).
  fs::path d5 = write("bf16", [&](auto& w) {
    for (auto& p : w) p.second = p.second.to(at::kBFloat16);
  });
  auto m5 = load_qwen2_vl(d5.string(), at::kFloat);
  EXPECT_EQ(m5->dtype(), at::kFloat);
  for (const auto& d : {d1, d2, d3, d4, d5}) fs::remove_all(d);
}

// Prefill of all but the last 3 tokens, then 3 one-token decode steps with the cache, on the left-padded
// two-image batch of the goldens: logits equal one full forward.
TEST(KVCache, PrefillThenDecodeEqualsFullForward) {
  auto model = load_qwen2_vl(kTiny);
  auto gold = medr1::io::SafetensorsFile::open(kTiny + "/goldens.safetensors");
  at::Tensor ids = gold->tensor("batch.input_ids").clone();
  at::Tensor mask = gold->tensor("batch.attention_mask").clone();
  at::Tensor pv = at::cat({gold->tensor("pre_square.pixel_values"), gold->tensor("pre_wide.pixel_values")}, 0);
  at::Tensor grid = gold->tensor("batch.image_grid_thw").clone();
  const int64_t B = ids.size(0), S = ids.size(1), tail = 3;
  at::NoGradGuard ng;
  Qwen2VLInputs full;
  full.input_ids = ids;
  full.attention_mask = mask;
  full.pixel_values = pv;
  full.image_grid_thw = grid;
  full.logits_from = S - tail;
  Qwen2VLOutput ref = model->forward(full);
  ASSERT_EQ(ref.logits.sizes(), (std::vector<int64_t>{B, tail, 151936}));

  KVCache cache = KVCache::for_config(model->config(), B, S + 4, at::kFloat);
  Qwen2VLInputs pre = full;
  pre.input_ids = ids.narrow(1, 0, S - tail);
  pre.attention_mask = mask.narrow(1, 0, S - tail);
  pre.cache = &cache;
  pre.logits_from = -1;
  Qwen2VLOutput p = model->forward(pre);
  // The last tokens are text, so the prefill's delta (max + 1 - prefill length) equals the full one.
  EXPECT_TRUE(at::equal(p.rope_deltas, ref.rope_deltas));
  EXPECT_EQ(cache.length(), S - tail);
  double max_err = 0;
  for (int64_t k = 0; k < tail; ++k) {
    Qwen2VLInputs step;
    step.input_ids = ids.narrow(1, S - tail + k, 1);
    step.attention_mask = mask.narrow(1, 0, S - tail + k + 1);
    step.cache = &cache;
    Qwen2VLOutput o = model->forward(step);
    EXPECT_TRUE(at::equal(o.position_ids.select(2, 0), ref.position_ids.select(2, S - tail + k)));
    max_err = std::max(max_err, (o.logits.select(1, 0) - ref.logits.select(1, k)).abs().max().item<double>());
  }
  EXPECT_LT(max_err, 1e-5);
}

TEST(Qwen2VLModel, DifferentiableThroughPixelValues) {
  Qwen2VLConfig cfg = parse_qwen2_vl_config(small_config_json(), "small.json");
  at::manual_seed(1);
  Qwen2VLForConditionalGeneration m(cfg);
  // One 28x28 image: grid (1, 2, 2) -> 4 patches -> 1 merged token.
  at::Tensor pv = at::randn({4, 1176}).requires_grad_(true);
  Qwen2VLInputs in;
  in.input_ids = at::tensor(std::vector<int64_t>{5, 292, 290, 293, 6, 7}, at::kLong).view({1, 6});
  in.pixel_values = pv;
  in.image_grid_thw = at::tensor(std::vector<int64_t>{1, 2, 2}, at::kLong).view({1, 3});
  in.logits_from = 3;
  Qwen2VLOutput o = m->forward(in);
  ASSERT_EQ(o.logits.sizes(), (std::vector<int64_t>{1, 3, 300}));
  o.logits.log_softmax(-1).select(-1, 11).sum().backward();
  ASSERT_TRUE(pv.grad().defined());
  EXPECT_TRUE(at::isfinite(pv.grad()).all().item<bool>());
  EXPECT_GT(pv.grad().abs().sum().item<double>(), 0.0);
}

}  // namespace
