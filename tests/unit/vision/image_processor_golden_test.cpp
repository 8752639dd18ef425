// Golden tests of the full Qwen2-VL image processor: decode (Pillow convert("RGB")), smart_resize, Pillow
// BICUBIC resize, rescale/normalise/patchify, against transformers v4.49.0 + Pillow 9.4.0 reference outputs:
// tests/data/images-real (real files, every decode path) and the pre_* cases of qwen2vl-tiny / qwen2_5vl-tiny.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "medr1/core/error.h"
#include "medr1/io/safetensors.h"
#include "medr1/vision/image_processor.h"
#include "vision_test_util.h"

namespace medr1::vision {
namespace {

using test::data_dir;
using test::first_mismatches;
using test::max_abs_diff;

struct GoldenSet {
  std::string dir;
  nlohmann::json cases;
  std::map<std::string, at::Tensor> tensors;
};

const GoldenSet& golden_set(const std::string& name) {
  static std::map<std::string, GoldenSet> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  GoldenSet g;
  g.dir = data_dir() + "/" + name;
  g.cases = test::read_json(g.dir + "/goldens.json")["cases"];
  g.tensors = io::load_safetensors(g.dir + "/goldens.safetensors");
  return cache.emplace(name, std::move(g)).first->second;
}

at::Tensor as_tensor(const RgbImage& img) {  // [H, W, 3] uint8 copy
  return at::from_blob(const_cast<uint8_t*>(img.data.data()), {img.height, img.width, 3}, at::kByte).clone();
}

// Checks one preprocess / preprocess_file case; returns the max abs pixel_values error seen.
void check_case(const std::string& set, const std::string& case_name) {
  const GoldenSet& g = golden_set(set);
  ASSERT_TRUE(g.cases.contains(case_name)) << case_name;
  const auto& c = g.cases[case_name];
  const std::string path = g.dir + "/" + c["image"].get<std::string>();
  const auto& T = g.tensors;
  auto has = [&](const std::string& k) { return T.count(case_name + "." + k) != 0; };
  auto get = [&](const std::string& k) { return T.at(case_name + "." + k); };
  SCOPED_TRACE(set + "/" + case_name + " (" + path + ")");

  ImageProcessorConfig cfg;
  cfg.min_pixels = c["min_pixels"].get<int64_t>();
  cfg.max_pixels = c["max_pixels"].get<int64_t>();

  RgbImage img = load_image_rgb(path);
  EXPECT_EQ(img.width, c["orig_wh"][0].get<int64_t>());
  EXPECT_EQ(img.height, c["orig_wh"][1].get<int64_t>());
  if (c.contains("pil_mode")) {
    EXPECT_EQ(img.source_mode, c["pil_mode"].get<std::string>());
  }

  if (c.contains("error")) {
    // The reference refuses the file: so must we, naming the file.
    try {
      preprocess(img, cfg, path);
      ADD_FAILURE() << "expected an error like " << c["error"];
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      std::string ref = c["error"].get<std::string>();
      ref = ref.substr(ref.find(": ") + 2);  // drop "ValueError: "
      EXPECT_NE(msg.find(ref), std::string::npos) << msg << " vs " << ref;
    }
    return;
  }

  // Decoded RGB (what convert("RGB") gives), exact.
  at::Tensor dec = as_tensor(img);
  if (has("decoded_rgb")) {
    EXPECT_TRUE(at::equal(dec, get("decoded_rgb"))) << first_mismatches(dec, get("decoded_rgb"), 0);
  }
  if (has("decoded_rgb_head")) {
    at::Tensor head = get("decoded_rgb_head");
    at::Tensor ours = dec.narrow(0, 0, head.size(0));
    EXPECT_TRUE(at::equal(ours, head)) << first_mismatches(ours, head, 0);
  }
  if (has("decoded_rgb_rowsum")) {
    at::Tensor rs = dec.to(at::kLong).sum(1);  // [H, 3]
    EXPECT_TRUE(at::equal(rs, get("decoded_rgb_rowsum"))) << first_mismatches(rs, get("decoded_rgb_rowsum"), 0);
  }

  ProcessedImage p = preprocess(img, cfg, path);
  EXPECT_EQ(p.resized.height, c["resized_hw"][0].get<int64_t>());
  EXPECT_EQ(p.resized.width, c["resized_hw"][1].get<int64_t>());
  at::Tensor grid = at::tensor(std::vector<int64_t>{p.grid_thw[0], p.grid_thw[1], p.grid_thw[2]}).view({1, 3});
  EXPECT_TRUE(at::equal(grid, get("image_grid_thw"))) << grid << get("image_grid_thw");
  if (c.contains("image_grid_thw")) {
    EXPECT_EQ(p.grid_thw[1], c["image_grid_thw"][1].get<int64_t>());
    EXPECT_EQ(p.grid_thw[2], c["image_grid_thw"][2].get<int64_t>());
  }
  if (c.contains("num_patches")) {
    EXPECT_EQ(p.pixel_values.size(0), c["num_patches"].get<int64_t>());
  }
  if (c.contains("num_llm_tokens")) {
    EXPECT_EQ(p.num_merged_tokens(), c["num_llm_tokens"].get<int64_t>());
  }
  EXPECT_EQ(p.pixel_values.size(1), 1176);

  // Pillow BICUBIC output, exact.
  if (has("resized_uint8")) {
    at::Tensor rz = as_tensor(p.resized);
    const double err = max_abs_diff(rz, get("resized_uint8"));
    EXPECT_EQ(err, 0.0) << first_mismatches(rz, get("resized_uint8"), 0);
  }

  // pixel_values: <= 1e-6 abs (full or head/tail), row sums (float64) to 1e-4.
  const at::Tensor& pv = p.pixel_values;
  double pv_err = 0.0;
  if (has("pixel_values")) {
    ASSERT_EQ(pv.sizes(), get("pixel_values").sizes());
    pv_err = std::max(pv_err, max_abs_diff(pv, get("pixel_values")));
  }
  if (has("pixel_values_head")) {
    at::Tensor h = get("pixel_values_head");
    pv_err = std::max(pv_err, max_abs_diff(pv.narrow(0, 0, h.size(0)), h));
  }
  if (has("pixel_values_tail")) {
    at::Tensor t = get("pixel_values_tail");
    pv_err = std::max(pv_err, max_abs_diff(pv.narrow(0, pv.size(0) - t.size(0), t.size(0)), t));
  }
  EXPECT_LE(pv_err, 1e-6);
  if (has("pixel_values_rowsum")) {
    at::Tensor rs = pv.to(at::kDouble).sum(1);
    EXPECT_LE(max_abs_diff(rs, get("pixel_values_rowsum")), 1e-4);
  }
  std::printf("[ case ] %s/%s: pixel_values max abs err %.3g\n", set.c_str(), case_name.c_str(), pv_err);
}

TEST(ImagesRealGolden, EveryCase) {
  const GoldenSet& g = golden_set("images-real");
  int n = 0;
  for (const auto& [name, c] : g.cases.items()) {
    if (c["kind"] != "preprocess_file") continue;
    check_case("images-real", name);
    ++n;
  }
  EXPECT_EQ(n, 16);
}

TEST(Qwen2VLTinyGolden, PreprocessCases) {
  for (const char* name : {"pre_square", "pre_wide", "pre_small", "pre_tiny_upscaled", "pre_half_rounding",
                           "pre_big_maxpix_401408"})
    check_case("qwen2vl-tiny", name);
}

TEST(Qwen25VLTinyGolden, PreprocessCases) {
  for (const char* name : {"pre_r", "pre_s", "pre_t_upscaled"}) check_case("qwen2_5vl-tiny", name);
}

// The differentiable path equals the uint8 path (same float32 ops) and passes gradients to the image.
TEST(NormalizeAndPatchify, MatchesPreprocessAndIsDifferentiable) {
  const GoldenSet& g = golden_set("qwen2vl-tiny");
  ImageProcessorConfig cfg;
  ProcessedImage p = preprocess_file(g.dir + "/images/img_wide.png", cfg);
  at::Tensor x = rgb_to_chw01(p.resized).requires_grad_(true);  // [3, H, W]
  at::Tensor pv = normalize_and_patchify(x, cfg);                 // [P, 1176]
  EXPECT_LE(max_abs_diff(pv.detach(), p.pixel_values), 1e-6);
  EXPECT_LE(max_abs_diff(pv.detach(), g.tensors.at("pre_wide.pixel_values")), 1e-6);
  pv.sum().backward();
  // Each pixel appears once per temporal copy (2), divided by its channel's std.
  at::Tensor grad = x.grad();
  ASSERT_TRUE(grad.defined());
  const float expect0 = 2.0f / static_cast<float>(cfg.image_std[0]);
  EXPECT_NEAR(grad[0][5][7].item<float>(), expect0, 1e-5);
  EXPECT_NEAR(grad[2][0][0].item<float>(), 2.0f / static_cast<float>(cfg.image_std[2]), 1e-5);
}

// The differentiable resize follows Pillow's resize to within about one grey level (no uint8 rounding).
TEST(ResizeBicubicDifferentiable, CloseToPillowAndDifferentiable) {
  const GoldenSet& g = golden_set("qwen2vl-tiny");
  RgbImage img = load_image_rgb(g.dir + "/images/img_wide.png");  // 300 x 200 -> 308 x 196 (up in x, down in y)
  at::Tensor x = rgb_to_chw01(img).requires_grad_(true);
  at::Tensor y = resize_bicubic_differentiable(x, 196, 308);  // [3, 196, 308]
  at::Tensor ref = g.tensors.at("pre_wide.resized_uint8").permute({2, 0, 1}).to(at::kFloat) / 255.0;
  const double err = max_abs_diff(y.detach(), ref) * 255.0;
  std::printf("[ diff ] differentiable resize vs Pillow: max %.3f grey levels\n", err);
  EXPECT_LE(err, 1.5);
  y.sum().backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_GT(x.grad().abs().sum().item<double>(), 0.0);
  // Rows of the resampling matrix sum to 1 (normalised coefficients, to fixed-point precision).
  at::Tensor m = bicubic_resample_matrix(1411, 616);
  EXPECT_LE((m.sum(1) - 1).abs().max().item<float>(), 1e-5);
  EXPECT_TRUE(at::equal(bicubic_resample_matrix(7, 7), at::eye(7)));
}

TEST(CatProcessed, StacksPixelValuesAndGrids) {
  const GoldenSet& g = golden_set("qwen2vl-tiny");
  ImageProcessorConfig cfg;
  std::vector<ProcessedImage> v = {preprocess_file(g.dir + "/images/img_small.png", cfg),
                                   preprocess_file(g.dir + "/images/img_half.png", cfg)};
  ImageBatch b = cat_processed(v);
  EXPECT_EQ(b.pixel_values.size(0), 24 + 32);
  EXPECT_EQ(b.image_grid_thw.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(b.image_grid_thw, at::tensor(std::vector<int64_t>{1, 6, 4, 1, 8, 4}).view({2, 3})));
  EXPECT_LE(max_abs_diff(b.pixel_values.narrow(0, 24, 32), g.tensors.at("pre_half_rounding.pixel_values")), 1e-6);
}

}  // namespace
}  // namespace medr1::vision
