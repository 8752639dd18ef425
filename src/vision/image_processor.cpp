// Qwen2VLImageProcessor (transformers v4.49.0, slow path) in C++: smart_resize, Pillow 9.4's BICUBIC resampler
// (libImaging/Resample.c semantics re-derived: a = -0.5 kernel, support widened by the down-scale factor,
// double coefficients normalised per output pixel then rounded to 22-bit fixed point, horizontal pass first,
// uint8 clip between passes, a pass skipped when its dimension is unchanged), rescale, normalise, patchify.
// Shapes: C = 3 channels, T = temporal_patch_size, P = patches = t*gh*gw, D = C*T*patch*patch (1176).
#include "medr1/vision/image_processor.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <fstream>
#include <nlohmann/json.hpp>

#include "medr1/core/error.h"

namespace medr1::vision {

std::pair<int64_t, int64_t> smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                                         int64_t max_pixels, const std::string& name_for_errors) {
  const std::string where = name_for_errors.empty() ? "" : " (" + name_for_errors + ")";
  MEDR1_CHECK(factor > 0, "smart_resize: factor must be positive, got ", factor, where);
  MEDR1_CHECK(height >= factor && width >= factor, "height:", height, " or width:", width,
              " must be larger than factor:", factor, where);
  const double hd = static_cast<double>(height), wd = static_cast<double>(width), fd = static_cast<double>(factor);
  const double ratio = std::max(hd, wd) / std::min(hd, wd);
  MEDR1_CHECK(!(ratio > 200.0), "absolute aspect ratio must be smaller than 200, got ", ratio, where);
  // Python round() on a float rounds half to even: nearbyint in the default FE_TONEAREST mode does the same.
  int64_t h_bar = static_cast<int64_t>(std::nearbyint(hd / fd)) * factor;
  int64_t w_bar = static_cast<int64_t>(std::nearbyint(wd / fd)) * factor;
  if (h_bar * w_bar > max_pixels) {
    const double beta = std::sqrt((hd * wd) / static_cast<double>(max_pixels));
    h_bar = static_cast<int64_t>(std::floor(hd / beta / fd)) * factor;
    w_bar = static_cast<int64_t>(std::floor(wd / beta / fd)) * factor;
  } else if (h_bar * w_bar < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / (hd * wd));
    h_bar = static_cast<int64_t>(std::ceil(hd * beta / fd)) * factor;
    w_bar = static_cast<int64_t>(std::ceil(wd * beta / fd)) * factor;
  }
  return {h_bar, w_bar};
}

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS: 8 bits result + 2 bits headroom

double bicubic_kernel(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Per output index: the first input index, the tap count and ksize fixed-point weights.
struct Taps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // [out_size, ksize]
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for box [0, in_size] (Image.resize's default box;
// the box edges are C floats there, exact for any realistic size).
Taps precompute_taps(int in_size, int out_size) {
  const double scale = static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 2.0 * filterscale;  // bicubic support 2, widened when shrinking (antialias)
  Taps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.weights.assign(static_cast<size_t>(out_size) * t.ksize, 0);
  std::vector<double> k(t.ksize);
  const double inv_filterscale = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    // (int) truncation toward zero as in C, then the clamps.
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = bicubic_kernel((x + xmin - center + 0.5) * inv_filterscale);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x)
      if (ww != 0.0) k[x] /= ww;
    for (int x = 0; x < xmax; ++x) {
      const double v = k[x] * (1 << kPrecisionBits);
      t.weights[static_cast<size_t>(xx) * t.ksize + x] = static_cast<int32_t>(k[x] < 0 ? -0.5 + v : 0.5 + v);
    }
    t.first[xx] = xmin;
    t.count[xx] = xmax;
  }
  return t;
}

// Pillow's clip8: arithmetic shift of the rounded accumulator, then clamp to [0, 255].
inline uint8_t clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One pass along x (horizontal) on an RGB image [h, in_w, 3] -> [h, out_w, 3].
std::vector<uint8_t> resample_horizontal(const std::vector<uint8_t>& in, int64_t h, int64_t in_w, int64_t out_w,
                                         const Taps& t) {
  std::vector<uint8_t> out(static_cast<size_t>(h * out_w * 3));
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* row = in.data() + y * in_w * 3;
    uint8_t* orow = out.data() + y * out_w * 3;
    for (int64_t xx = 0; xx < out_w; ++xx) {
      const int32_t* k = t.weights.data() + xx * t.ksize;
      const uint8_t* src = row + static_cast<int64_t>(t.first[xx]) * 3;
      int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int x = 0; x < t.count[xx]; ++x) {
        s0 += src[3 * x] * k[x];
        s1 += src[3 * x + 1] * k[x];
        s2 += src[3 * x + 2] * k[x];
      }
      orow[3 * xx] = clip8(s0);
      orow[3 * xx + 1] = clip8(s1);
      orow[3 * xx + 2] = clip8(s2);
    }
  }
  return out;
}

// One pass along y (vertical) on an RGB image [in_h, w, 3] -> [out_h, w, 3].
std::vector<uint8_t> resample_vertical(const std::vector<uint8_t>& in, int64_t w, int64_t out_h, const Taps& t) {
  std::vector<uint8_t> out(static_cast<size_t>(out_h * w * 3));
  const int64_t stride = w * 3;
  for (int64_t yy = 0; yy < out_h; ++yy) {
    const int32_t* k = t.weights.data() + yy * t.ksize;
    const uint8_t* src = in.data() + static_cast<int64_t>(t.first[yy]) * stride;
    uint8_t* orow = out.data() + yy * stride;
    for (int64_t i = 0; i < stride; ++i) {
      int32_t s = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < t.count[yy]; ++y) s += src[y * stride + i] * k[y];
      orow[i] = clip8(s);
    }
  }
  return out;
}

}  // namespace

RgbImage resize_bicubic(const RgbImage& img, int64_t out_w, int64_t out_h) {
  MEDR1_CHECK(img.width > 0 && img.height > 0, "resize_bicubic: empty input image");
  MEDR1_CHECK(img.data.size() == static_cast<size_t>(img.width * img.height * 3), "resize_bicubic: data holds ",
              img.data.size(), " bytes, expected ", img.width * img.height * 3);
  MEDR1_CHECK(out_w > 0 && out_h > 0 && out_w < (1 << 30) && out_h < (1 << 30), "resize_bicubic: bad output size ",
              out_w, "x", out_h);
  RgbImage out;
  out.width = out_w;
  out.height = out_h;
  out.source_mode = "RGB";
  // A pass runs only when its dimension changes (ImagingResampleInner); with neither, Pillow copies.
  std::vector<uint8_t> cur = img.data;
  if (out_w != img.width) {
    cur = resample_horizontal(cur, img.height, img.width, out_w,
                              precompute_taps(static_cast<int>(img.width), static_cast<int>(out_w)));
  }
  if (out_h != img.height) {
    cur = resample_vertical(cur, out_w, out_h, precompute_taps(static_cast<int>(img.height), static_cast<int>(out_h)));
  }
  out.data = std::move(cur);
  return out;
}

at::Tensor bicubic_resample_matrix(int64_t in_size, int64_t out_size) {
  MEDR1_CHECK(in_size > 0 && out_size > 0 && in_size < (1 << 30) && out_size < (1 << 30),
              "bicubic_resample_matrix: bad sizes ", in_size, " -> ", out_size);
  if (in_size == out_size) return at::eye(in_size, at::kFloat);
  const Taps t = precompute_taps(static_cast<int>(in_size), static_cast<int>(out_size));
  at::Tensor m = at::zeros({out_size, in_size}, at::kFloat);  // [out, in]
  auto a = m.accessor<float, 2>();
  for (int64_t i = 0; i < out_size; ++i)
    for (int k = 0; k < t.count[i]; ++k)
      a[i][t.first[i] + k] = static_cast<float>(t.weights[static_cast<size_t>(i) * t.ksize + k] /
                                                static_cast<double>(1 << kPrecisionBits));
  return m;
}

at::Tensor resize_bicubic_differentiable(const at::Tensor& chw, int64_t out_h, int64_t out_w) {
  TORCH_CHECK(chw.dim() == 3 && chw.size(0) == 3, "resize_bicubic_differentiable: expected [3, H, W], got ",
              chw.sizes());
  const int64_t H = chw.size(1), W = chw.size(2);
  at::Tensor x = chw;
  if (out_w != W) {
    at::Tensor wx = bicubic_resample_matrix(W, out_w).to(chw.options());  // [W', W]
    x = at::matmul(x, wx.t()).clamp(0.0, 1.0);                            // [3, H, W']
  }
  if (out_h != H) {
    at::Tensor wy = bicubic_resample_matrix(H, out_h).to(chw.options());  // [H', H]
    x = at::matmul(wy, x).clamp(0.0, 1.0);                                // [3, H', W']
  }
  return x;
}

// ------------------------------------------------------------------------------------------------ config

namespace {

int64_t json_int(const nlohmann::json& j, const std::string& key, const std::string& file, const std::string& field) {
  MEDR1_CHECK(j.is_number_integer() || (j.is_number_float() && std::floor(j.get<double>()) == j.get<double>()), file,
              ": ", field, ": expected an integer, got ", j.dump());
  (void)key;
  // Out of int64's range (1e30, 2^64 - 1) is refused: converting it would be undefined (found by
  // tests/fuzz/fuzz_preprocessor_config: "max_pixels": 1.28e129).
  MEDR1_CHECK(!j.is_number_unsigned() || j.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), file, ": ", field,
              ": integer out of range, got ", j.dump());
  MEDR1_CHECK(
      !j.is_number_float() || (j.get<double>() >= -9.223372036854775808e18 && j.get<double>() < 9.223372036854775808e18),
      file, ": ", field, ": integer out of range, got ", j.dump());
  return j.is_number_integer() ? j.get<int64_t>() : static_cast<int64_t>(j.get<double>());
}

std::array<double, 3> json_triple(const nlohmann::json& j, const std::string& file, const std::string& field) {
  if (j.is_number()) return {j.get<double>(), j.get<double>(), j.get<double>()};
  MEDR1_CHECK(j.is_array() && j.size() == 3, file, ": ", field, ": expected 3 numbers, got ", j.dump());
  std::array<double, 3> out{};
  for (size_t i = 0; i < 3; ++i) {
    MEDR1_CHECK(j[i].is_number(), file, ": ", field, "[", i, "]: expected a number, got ", j[i].dump());
    out[i] = j[i].get<double>();
  }
  return out;
}

}  // namespace

ImageProcessorConfig load_image_processor_config(const std::string& path) {
  std::ifstream f(path);
  MEDR1_CHECK(f.good(), path, ": cannot open preprocessor config");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": invalid JSON: ", e.what());
  }
  MEDR1_CHECK(j.is_object(), path, ": expected a JSON object");
  ImageProcessorConfig c;
  auto get_bool = [&](const char* key, bool& dst) {
    if (!j.contains(key) || j[key].is_null()) return;
    MEDR1_CHECK(j[key].is_boolean(), path, ": ", key, ": expected true/false, got ", j[key].dump());
    dst = j[key].get<bool>();
  };
  auto get_int = [&](const char* key, int64_t& dst) {
    if (!j.contains(key) || j[key].is_null()) return;
    dst = json_int(j[key], key, path, key);
  };
  get_bool("do_resize", c.do_resize);
  get_bool("do_rescale", c.do_rescale);
  get_bool("do_normalize", c.do_normalize);
  get_bool("do_convert_rgb", c.do_convert_rgb);
  get_int("resample", c.resample);
  MEDR1_CHECK(c.resample == 3, path, ": resample: only 3 (PIL BICUBIC) is supported, got ", c.resample);
  if (j.contains("rescale_factor") && !j["rescale_factor"].is_null()) {
    MEDR1_CHECK(j["rescale_factor"].is_number(), path, ": rescale_factor: expected a number, got ",
                j["rescale_factor"].dump());
    c.rescale_factor = j["rescale_factor"].get<double>();
  }
  if (j.contains("image_mean") && !j["image_mean"].is_null()) c.image_mean = json_triple(j["image_mean"], path, "image_mean");
  if (j.contains("image_std") && !j["image_std"].is_null()) c.image_std = json_triple(j["image_std"], path, "image_std");
  for (int i = 0; i < 3; ++i)
    MEDR1_CHECK(c.image_std[i] != 0.0, path, ": image_std[", i, "]: must not be 0");
  // `size` first ({"shortest_edge","longest_edge"} in newer files, {"min_pixels","max_pixels"} in some), then
  // the top-level min_pixels / max_pixels, which transformers lets override it.
  if (j.contains("size") && !j["size"].is_null()) {
    const auto& s = j["size"];
    MEDR1_CHECK(s.is_object(), path, ": size: expected an object, got ", s.dump());
    if (s.contains("shortest_edge")) c.min_pixels = json_int(s["shortest_edge"], "", path, "size.shortest_edge");
    if (s.contains("longest_edge")) c.max_pixels = json_int(s["longest_edge"], "", path, "size.longest_edge");
    if (s.contains("min_pixels")) c.min_pixels = json_int(s["min_pixels"], "", path, "size.min_pixels");
    if (s.contains("max_pixels")) c.max_pixels = json_int(s["max_pixels"], "", path, "size.max_pixels");
  }
  get_int("min_pixels", c.min_pixels);
  get_int("max_pixels", c.max_pixels);
  get_int("patch_size", c.patch_size);
  get_int("temporal_patch_size", c.temporal_patch_size);
  get_int("merge_size", c.merge_size);
  // Up to 1024 each (Qwen: 14, 2, 2), so factor() and patch_dim() cannot overflow.
  MEDR1_CHECK(c.patch_size > 0 && c.patch_size <= 1024, path, ": patch_size: must be in 1..1024, got ", c.patch_size);
  MEDR1_CHECK(c.temporal_patch_size > 0 && c.temporal_patch_size <= 1024, path,
              ": temporal_patch_size: must be in 1..1024, got ", c.temporal_patch_size);
  MEDR1_CHECK(c.merge_size > 0 && c.merge_size <= 1024, path, ": merge_size: must be in 1..1024, got ", c.merge_size);
  MEDR1_CHECK(c.min_pixels > 0 && c.max_pixels >= c.min_pixels, path, ": min_pixels/max_pixels: need 0 < ",
              c.min_pixels, " <= ", c.max_pixels);
  return c;
}

// ------------------------------------------------------------------------------------------- processor

at::Tensor rgb_to_chw01(const RgbImage& img, double rescale_factor) {
  MEDR1_CHECK(img.data.size() == static_cast<size_t>(img.width * img.height * 3), "rgb_to_chw01: data holds ",
              img.data.size(), " bytes, expected ", img.width * img.height * 3);
  const int64_t hw = img.width * img.height;
  at::Tensor out = at::empty({3, img.height, img.width}, at::kFloat);  // [C, H, W]
  float* o = out.data_ptr<float>();
  // HF rescale: image.astype(float64) * scale, then astype(float32).
  for (int64_t i = 0; i < hw; ++i)
    for (int c = 0; c < 3; ++c)
      o[c * hw + i] = static_cast<float>(static_cast<double>(img.data[static_cast<size_t>(i * 3 + c)]) * rescale_factor);
  return out;
}

at::Tensor normalize_and_patchify(const at::Tensor& rgb01, const ImageProcessorConfig& cfg) {
  TORCH_CHECK(rgb01.dim() == 3 && rgb01.size(0) == 3, "normalize_and_patchify: expected [3, H, W], got ",
              rgb01.sizes());
  TORCH_CHECK(rgb01.scalar_type() == at::kFloat, "normalize_and_patchify: expected float32, got ",
              rgb01.scalar_type());
  const int64_t H = rgb01.size(1), W = rgb01.size(2);
  const int64_t p = cfg.patch_size, m = cfg.merge_size, tps = cfg.temporal_patch_size;
  MEDR1_CHECK(H % (p * m) == 0 && W % (p * m) == 0, "normalize_and_patchify: image ", H, "x", W,
              " is not a multiple of patch_size*merge_size = ", p * m);
  at::Tensor x = rgb01;
  if (cfg.do_normalize) {
    // numpy: mean/std cast to the image dtype (float32); (x - mean) / std in float32.
    const auto opts = at::TensorOptions().dtype(at::kFloat).device(rgb01.device());
    at::Tensor mean = at::tensor({static_cast<float>(cfg.image_mean[0]), static_cast<float>(cfg.image_mean[1]),
                                  static_cast<float>(cfg.image_mean[2])}, opts).view({3, 1, 1});
    at::Tensor stdv = at::tensor({static_cast<float>(cfg.image_std[0]), static_cast<float>(cfg.image_std[1]),
                                  static_cast<float>(cfg.image_std[2])}, opts).view({3, 1, 1});
    x = (x - mean) / stdv;  // [C, H, W]
  }
  // A still image is repeated to fill one temporal patch: [C, H, W] -> [T, C, H, W].
  const int64_t gt = 1, gh = H / p, gw = W / p;
  x = x.unsqueeze(0).expand({tps, 3, H, W});
  // [gt, T, C, gh/m, m, p, gw/m, m, p] -> (0,3,6,4,7,2,1,5,8) -> [gt*gh*gw, C*T*p*p]
  x = x.reshape({gt, tps, 3, gh / m, m, p, gw / m, m, p});
  x = x.permute({0, 3, 6, 4, 7, 2, 1, 5, 8});
  return x.reshape({gt * gh * gw, 3 * tps * p * p});  // [P, D]
}

ProcessedImage preprocess(const RgbImage& img, const ImageProcessorConfig& cfg, const std::string& name_for_errors) {
  ProcessedImage out;
  out.merge_size = cfg.merge_size;
  if (cfg.do_resize) {
    const auto [h, w] = smart_resize(img.height, img.width, cfg.factor(), cfg.min_pixels, cfg.max_pixels,
                                     name_for_errors);
    out.resized = resize_bicubic(img, w, h);  // HF always resizes, even to the same size (an exact copy)
  } else {
    out.resized = img;
  }
  at::Tensor chw;
  if (cfg.do_rescale) {
    chw = rgb_to_chw01(out.resized, cfg.rescale_factor);
  } else {
    chw = rgb_to_chw01(out.resized, 1.0);  // float32(u8): what numpy's normalize casts a uint8 image to
  }
  const std::string where = name_for_errors.empty() ? "" : name_for_errors + ": ";
  MEDR1_CHECK(out.resized.height % cfg.factor() == 0 && out.resized.width % cfg.factor() == 0, where,
              "image ", out.resized.height, "x", out.resized.width, " is not a multiple of ", cfg.factor(),
              " (do_resize is false)");
  out.pixel_values = normalize_and_patchify(chw, cfg).contiguous();  // [P, D]
  out.grid_thw = {1, out.resized.height / cfg.patch_size, out.resized.width / cfg.patch_size};
  return out;
}

ProcessedImage preprocess_file(const std::string& path, const ImageProcessorConfig& cfg) {
  return preprocess(load_image_rgb(path), cfg, path);
}

ImageBatch cat_processed(const std::vector<ProcessedImage>& images) {
  ImageBatch b;
  MEDR1_CHECK(!images.empty(), "cat_processed: no images");
  std::vector<at::Tensor> pv;
  b.image_grid_thw = at::empty({static_cast<int64_t>(images.size()), 3}, at::kLong);  // [N, 3]
  auto g = b.image_grid_thw.accessor<int64_t, 2>();
  for (size_t i = 0; i < images.size(); ++i) {
    pv.push_back(images[i].pixel_values);
    for (int k = 0; k < 3; ++k) g[static_cast<int64_t>(i)][k] = images[i].grid_thw[k];
  }
  b.pixel_values = at::cat(pv, 0);  // [sum P, D]
  return b;
}

}  // namespace medr1::vision
