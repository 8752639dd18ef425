// Qwen2-VL / Qwen2.5-VL vision tower vs the transformers v4.49.0 goldens in tests/data/qwen2vl-tiny
// and tests/data/qwen2_5vl-tiny (vendored from the parity kit): rotary table, patch embedding,
// block outputs, window index, image embeddings; batches of images (one call == per-image calls,
// and == the image rows of the golden inputs_embeds); bf16; gradients w.r.t. pixel_values.
// "rel" below = max |ours - golden| / max |golden| over the tensor.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "medr1/core/error.h"
#include "medr1/io/json_util.h"
#include "medr1/io/safetensors.h"
#include "medr1/model/qwen2_vision.h"
#include "medr1/ops/cpu_features.h"
#include "medr1/ops/gemm.h"

namespace {

using medr1::model::Qwen2VisionConfig;
using medr1::model::Qwen2VisionDebug;
using medr1::model::Qwen2VisionTransformer;

constexpr int64_t kImagePadId = 151655;

struct Kit {
  std::string dir;
  bool is_qwen2_5;
  std::vector<std::string> single_pre;  // pre_* cases whose pixel_values make the single case
  std::vector<std::string> batch_pre;   // ... and the batch case (row 0 images, then row 1)
};

const Kit& qwen2vl_kit() {
  static const Kit k{std::string(MEDR1_TEST_DATA) + "/qwen2vl-tiny", false, {"pre_square"},
                     {"pre_square", "pre_wide"}};
  return k;
}
const Kit& qwen2_5vl_kit() {
  static const Kit k{std::string(MEDR1_TEST_DATA) + "/qwen2_5vl-tiny", true, {"pre_r"},
                     {"pre_r", "pre_s", "pre_t_upscaled"}};
  return k;
}

// Loaded once per kit: the checkpoint's tensors, the goldens, the parsed vision config.
struct Loaded {
  std::map<std::string, at::Tensor> weights;
  std::map<std::string, at::Tensor> goldens;
  Qwen2VisionConfig cfg;
};

const Loaded& load(const Kit& kit) {
  static std::map<std::string, Loaded> cache;
  auto it = cache.find(kit.dir);
  if (it != cache.end()) return it->second;
  Loaded l;
  l.weights = medr1::io::load_safetensors(kit.dir + "/model.safetensors");
  l.goldens = medr1::io::load_safetensors(kit.dir + "/goldens.safetensors");
  const std::string cfg_path = kit.dir + "/config.json";
  nlohmann::json j = medr1::io::read_json_file(cfg_path);
  l.cfg = medr1::model::parse_vision_config(j.at("vision_config"), kit.is_qwen2_5, cfg_path);
  return cache.emplace(kit.dir, std::move(l)).first->second;
}

const at::Tensor& golden(const Loaded& l, const std::string& name) {
  auto it = l.goldens.find(name);
  if (it == l.goldens.end()) throw std::runtime_error("golden missing: " + name);
  return it->second;
}

// A vision tower with the checkpoint's `visual.*` weights, in `dtype`.
Qwen2VisionTransformer make_tower(const Kit& kit, at::ScalarType dtype = at::kFloat) {
  const Loaded& l = load(kit);
  Qwen2VisionTransformer tower(l.cfg);
  at::NoGradGuard ng;
  for (auto& p : tower->named_parameters()) {
    const std::string key = "visual." + p.key();
    auto it = l.weights.find(key);
    if (it == l.weights.end()) throw std::runtime_error("checkpoint lacks " + key);
    p.value().copy_(it->second);
  }
  tower->to(dtype);
  tower->eval();
  return tower;
}

at::Tensor cat_pixels(const Loaded& l, const std::vector<std::string>& pre) {
  std::vector<at::Tensor> pv;
  for (const auto& p : pre) pv.push_back(golden(l, p + ".pixel_values"));
  return at::cat(pv, 0);
}

at::Tensor cat_grids(const Loaded& l, const std::vector<std::string>& pre) {
  std::vector<at::Tensor> g;
  for (const auto& p : pre) g.push_back(golden(l, p + ".image_grid_thw"));
  return at::cat(g, 0);
}

struct Err {
  double abs = 0, rel = 0;
};

Err compare(const std::string& what, const at::Tensor& ours, const at::Tensor& ref) {
  EXPECT_EQ(ours.sizes(), ref.sizes()) << what;
  if (ours.sizes() != ref.sizes()) return {1e30, 1e30};
  at::Tensor a = ours.detach().to(at::kDouble), b = ref.to(at::kDouble);
  Err e;
  e.abs = (a - b).abs().max().item<double>();
  e.rel = e.abs / std::max(b.abs().max().item<double>(), 1e-30);
  std::printf("  %-36s max_abs %.3e  rel %.3e\n", what.c_str(), e.abs, e.rel);
  return e;
}

// ------------------------------------------------------------------------------------------------
TEST(Qwen2Vision, ParsesBothRealConfigs) {
  const Qwen2VisionConfig& a = load(qwen2vl_kit()).cfg;
  EXPECT_FALSE(a.is_qwen2_5);
  EXPECT_EQ(a.depth, 2);
  EXPECT_EQ(a.embed_dim, 32);
  EXPECT_EQ(a.hidden_size, 64);
  EXPECT_EQ(a.num_heads, 2);
  EXPECT_EQ(a.mlp_hidden, 128);  // embed_dim * mlp_ratio 4
  EXPECT_EQ(a.hidden_act, "quick_gelu");
  EXPECT_EQ(a.patch_size, 14);
  EXPECT_EQ(a.temporal_patch_size, 2);
  EXPECT_EQ(a.spatial_merge_size, 2);

  const Qwen2VisionConfig& b = load(qwen2_5vl_kit()).cfg;
  EXPECT_TRUE(b.is_qwen2_5);
  EXPECT_EQ(b.depth, 2);
  EXPECT_EQ(b.embed_dim, 32);    // vision_config.hidden_size
  EXPECT_EQ(b.hidden_size, 32);  // vision_config.out_hidden_size
  EXPECT_EQ(b.mlp_hidden, 48);   // vision_config.intermediate_size
  EXPECT_EQ(b.hidden_act, "silu");
  EXPECT_EQ(b.window_size, 112);
  EXPECT_EQ(b.fullatt_block_indexes, std::vector<int64_t>({1}));
}

TEST(Qwen2Vision, ConfigDefaultsAndErrorsNameFileAndField) {
  // HF defaults when keys are absent.
  auto d2 = medr1::model::parse_vision_config(nlohmann::json::object(), false, "c.json");
  EXPECT_EQ(d2.depth, 32);
  EXPECT_EQ(d2.embed_dim, 1280);
  EXPECT_EQ(d2.hidden_size, 3584);
  EXPECT_EQ(d2.mlp_hidden, 5120);
  auto d25 = medr1::model::parse_vision_config(nlohmann::json::object(), true, "c.json");
  EXPECT_EQ(d25.embed_dim, 3584);
  EXPECT_EQ(d25.mlp_hidden, 3420);
  EXPECT_EQ(d25.fullatt_block_indexes, std::vector<int64_t>({7, 15, 23, 31}));

  auto expect_error = [](const nlohmann::json& vc, bool q25, const std::string& needle) {
    try {
      medr1::model::parse_vision_config(vc, q25, "/ckpt/config.json");
      ADD_FAILURE() << "no error for " << vc.dump();
    } catch (const medr1::Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("/ckpt/config.json"), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  expect_error({{"depth", "two"}}, false, "vision_config.depth");
  expect_error({{"embed_dim", 30}, {"num_heads", 4}}, false, "vision_config.embed_dim");
  expect_error({{"hidden_act", "relu6"}}, true, "vision_config.hidden_act");
  expect_error({{"depth", 4}, {"fullatt_block_indexes", {1, 4}}}, true,
               "vision_config.fullatt_block_indexes[1]");
  expect_error({{"window_size", 100}}, true, "vision_config.window_size");
}

TEST(Qwen2Vision, ParameterNamesAndShapesEqualCheckpoint) {
  for (const Kit* kit : {&qwen2vl_kit(), &qwen2_5vl_kit()}) {
    const Loaded& l = load(*kit);
    Qwen2VisionTransformer tower(l.cfg);
    std::set<std::string> ours, theirs;
    for (auto& p : tower->named_parameters()) {
      ours.insert("visual." + p.key());
      auto it = l.weights.find("visual." + p.key());
      ASSERT_NE(it, l.weights.end()) << kit->dir << ": " << p.key();
      EXPECT_EQ(p.value().sizes(), it->second.sizes()) << p.key();
    }
    for (auto& [k, v] : l.weights)
      if (k.rfind("visual.", 0) == 0) theirs.insert(k);
    EXPECT_EQ(ours, theirs) << kit->dir;
  }
}

// Single image: every intermediate the goldens hold.
void check_single(const Kit& kit) {
  const Loaded& l = load(kit);
  auto tower = make_tower(kit);
  at::NoGradGuard ng;
  Qwen2VisionDebug dbg;
  at::Tensor grid = golden(l, "single.image_grid_thw");
  ASSERT_TRUE(grid.equal(cat_grids(l, kit.single_pre)));
  at::Tensor out = tower->forward(cat_pixels(l, kit.single_pre), grid, &dbg);
  std::printf("%s single (fp32):\n", kit.dir.c_str());
  EXPECT_LE(compare("rot_pos_emb", dbg.rot_pos_emb, golden(l, "single.vision.rot_pos_emb")).abs, 1e-6);
  EXPECT_LE(compare("patch_embed", dbg.patch_embed, golden(l, "single.vision.patch_embed")).rel, 1e-5);
  ASSERT_EQ(dbg.block_outputs.size(), 2u);
  EXPECT_LE(compare("block0", dbg.block_outputs[0], golden(l, "single.vision.block0")).rel, 1e-5);
  EXPECT_LE(compare("block1", dbg.block_outputs[1], golden(l, "single.vision.block1")).rel, 1e-5);
  if (kit.is_qwen2_5) {
    EXPECT_TRUE(dbg.window_index.equal(golden(l, "single.vision.window_index")));
    EXPECT_TRUE(dbg.cu_window_seqlens.equal(golden(l, "single.vision.cu_window_seqlens")))
        << dbg.cu_window_seqlens;
    EXPECT_LE(compare("merger_out_window_order", dbg.merger_out_window_order,
                      golden(l, "single.vision.merger_out_window_order"))
                  .rel,
              1e-5);
  }
  EXPECT_LE(compare("image_embeds", out, golden(l, "single.vision.image_embeds")).rel, 1e-5);
}

TEST(Qwen2Vision, Qwen2VLSingleImageMatchesGoldens) { check_single(qwen2vl_kit()); }
TEST(Qwen2Vision, Qwen2_5VLSingleImageMatchesGoldens) { check_single(qwen2_5vl_kit()); }

// Several images in one call (incl. a row with two images for 2.5): equal to per-image calls, and
// equal to the golden inputs_embeds at the <|image_pad|> positions (row 0 first, then row 1).
void check_batch(const Kit& kit) {
  const Loaded& l = load(kit);
  auto tower = make_tower(kit);
  at::NoGradGuard ng;
  at::Tensor grid = golden(l, "batch.image_grid_thw");
  ASSERT_TRUE(grid.equal(cat_grids(l, kit.batch_pre)));
  at::Tensor out = tower->forward(cat_pixels(l, kit.batch_pre), grid);
  std::vector<at::Tensor> each;
  for (const auto& p : kit.batch_pre) each.push_back(tower->forward(cat_pixels(l, {p}), cat_grids(l, {p})));
  std::printf("%s batch of %zu images (fp32):\n", kit.dir.c_str(), kit.batch_pre.size());
  const double rel = compare("batch vs per-image calls", out, at::cat(each, 0)).rel;
  EXPECT_LE(rel, 1e-5);
  if (rel > 1e-5) {
    // What the next reader needs to find the cause on a host where this fails (it passed on every
    // host we could run, incl. emulated AVX2-only CPUs): the CPU, ATen's kernel level, the threads,
    // which image's rows differ, and whether one thread gives the per-image result.
    std::printf("  host: %s; ATen CPU capability %s; %d threads\n", medr1::ops::cpu_description().c_str(),
                at::get_cpu_capability().c_str(), at::get_num_threads());
    int64_t row = 0;
    for (size_t i = 0; i < each.size(); ++i) {
      const int64_t n = each[i].size(0);
      std::printf("  image %zu (%s): rows %lld..%lld max_abs %.3e\n", i, kit.batch_pre[i].c_str(),
                  static_cast<long long>(row), static_cast<long long>(row + n),
                  (out.narrow(0, row, n) - each[i]).abs().max().item<double>());
      row += n;
    }
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    at::Tensor one = tower->forward(cat_pixels(l, kit.batch_pre), grid);
    at::set_num_threads(threads);
    compare("batch on 1 thread vs per-image calls", one, at::cat(each, 0));
  }

  at::Tensor ids = golden(l, "batch.input_ids");           // [B, S]
  at::Tensor embeds = golden(l, "batch.hidden_states.0");  // [B, S, H]
  at::Tensor rows = embeds.index({ids == kImagePadId});    // [M, H] in row-major token order
  EXPECT_LE(compare("batch vs golden inputs_embeds", out, rows).rel, 1e-5);
}

TEST(Qwen2Vision, Qwen2VLBatchOfImages) { check_batch(qwen2vl_kit()); }
TEST(Qwen2Vision, Qwen2_5VLBatchOfImagesWithTwoImageRow) { check_batch(qwen2_5vl_kit()); }

// bf16 weights and activations (rotary and softmax stay float32): close to the fp32 goldens.
void check_bf16(const Kit& kit) {
  const Loaded& l = load(kit);
  auto tower = make_tower(kit, at::kBFloat16);
  at::NoGradGuard ng;
  Qwen2VisionDebug dbg;
  at::Tensor out = tower->forward(cat_pixels(l, kit.single_pre), golden(l, "single.image_grid_thw"), &dbg);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  std::printf("%s single (bf16 vs fp32 goldens):\n", kit.dir.c_str());
  compare("patch_embed", dbg.patch_embed, golden(l, "single.vision.patch_embed"));
  compare("block0", dbg.block_outputs[0], golden(l, "single.vision.block0"));
  compare("block1", dbg.block_outputs[1], golden(l, "single.vision.block1"));
  // bf16 has 8 mantissa bits (2^-8 = 3.9e-3 relative per rounding); a few percent of the scale. Measured with
  // LibTorch 2.12 on both ATen bf16 GEMM paths: oneDNN (AVX512 EPYC) 0.0192 / 0.0193 (Qwen2-VL / 2.5-VL), ATen's
  // fallback (AVX2-only CPU, qemu -cpu max) 0.0204 / 0.0187. (LibTorch 1.13's fallback gave 0.0561 on an AVX2 EPYC.)
  EXPECT_LE(compare("image_embeds", out, golden(l, "single.vision.image_embeds")).rel, 5e-2);
}

TEST(Qwen2Vision, Qwen2VLBf16CloseToFp32Goldens) { check_bf16(qwen2vl_kit()); }
TEST(Qwen2Vision, Qwen2_5VLBf16CloseToFp32Goldens) { check_bf16(qwen2_5vl_kit()); }

// The same with bf16 GEMMs widened to fp32 (ops/gemm.h: the route of CPUs without bf16 dot-product instructions).
struct Fp32GemmRoute {
  Fp32GemmRoute() { medr1::ops::set_bf16_gemm_route(medr1::ops::Bf16GemmRoute::Fp32); }
  ~Fp32GemmRoute() { medr1::ops::set_bf16_gemm_route(std::nullopt); }
};
TEST(Qwen2Vision, Qwen2VLBf16ThroughFp32GemmsCloseToFp32Goldens) {
  Fp32GemmRoute route;
  check_bf16(qwen2vl_kit());
}
TEST(Qwen2Vision, Qwen2_5VLBf16ThroughFp32GemmsCloseToFp32Goldens) {
  Fp32GemmRoute route;
  check_bf16(qwen2_5vl_kit());
}

// Gradients reach pixel_values (attacks) and match a central finite difference in float64.
void check_grad(const Kit& kit, const std::vector<std::string>& pre) {
  const Loaded& l = load(kit);
  auto tower = make_tower(kit, at::kDouble);
  at::Tensor pv = cat_pixels(l, pre).to(at::kDouble).requires_grad_(true);
  at::Tensor grid = cat_grids(l, pre);
  at::Tensor w = at::randn({pv.size(0) / 4, tower->config().hidden_size},
                           at::TensorOptions().dtype(at::kDouble));  // fixed random projection
  at::Tensor loss = (tower->forward(pv, grid) * w).sum();
  loss.backward();
  at::Tensor g = pv.grad();
  ASSERT_TRUE(g.defined());
  EXPECT_TRUE(g.isfinite().all().item<bool>());
  EXPECT_GT(g.abs().max().item<double>(), 0.0);
  at::NoGradGuard ng;
  at::Tensor dir = at::randn_like(pv);
  const double eps = 1e-5;
  const double fp = (tower->forward(pv + eps * dir, grid) * w).sum().item<double>();
  const double fm = (tower->forward(pv - eps * dir, grid) * w).sum().item<double>();
  const double fd = (fp - fm) / (2 * eps), an = (g * dir).sum().item<double>();
  std::printf("%s d(loss)/d(pixels) along a random direction: autograd %.9f, finite diff %.9f\n",
              kit.dir.c_str(), an, fd);
  EXPECT_NEAR(an, fd, 1e-6 * std::max(1.0, std::abs(fd))) << kit.dir;
}

TEST(Qwen2Vision, Qwen2VLGradientWrtPixelsMatchesFiniteDifference) {
  at::manual_seed(0);
  check_grad(qwen2vl_kit(), {"pre_small", "pre_half_rounding"});
}
TEST(Qwen2Vision, Qwen2_5VLGradientWrtPixelsMatchesFiniteDifference) {
  at::manual_seed(0);
  check_grad(qwen2_5vl_kit(), {"pre_s", "pre_t_upscaled"});
}

TEST(Qwen2Vision, RejectsPixelRowsThatDisagreeWithGrid) {
  const Loaded& l = load(qwen2vl_kit());
  auto tower = make_tower(qwen2vl_kit());
  at::NoGradGuard ng;
  at::Tensor pv = golden(l, "pre_small.pixel_values");  // 24 rows
  EXPECT_THROW(tower->forward(pv, golden(l, "pre_square.image_grid_thw")), medr1::Error);
  EXPECT_THROW(tower->forward(pv.narrow(1, 0, 100), golden(l, "pre_small.image_grid_thw")),
               medr1::Error);
  EXPECT_THROW(tower->forward(pv, at::tensor({1, 3, 8}, at::kLong).view({1, 3})), medr1::Error);
}

TEST(Qwen2Vision, NoImagesGivesEmptyEmbeddings) {
  for (const Kit* kit : {&qwen2vl_kit(), &qwen2_5vl_kit()}) {
    auto tower = make_tower(*kit);
    at::NoGradGuard ng;
    at::Tensor out = tower->forward(at::zeros({0, 1176}), at::zeros({0, 3}, at::kLong));
    EXPECT_EQ(out.sizes(), at::IntArrayRef({0, tower->config().hidden_size})) << kit->dir;
  }
}

}  // namespace

