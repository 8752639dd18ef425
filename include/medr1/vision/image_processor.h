// Qwen2-VL image processor, as transformers v4.49.0 Qwen2VLImageProcessor (slow/numpy path) runs it:
// smart_resize (Python round-half-to-even, float64), Pillow 9.4 BICUBIC resize reimplemented bit for bit
// (Resample.c: a=-0.5, antialiased support, 22-bit fixed point, horizontal pass then vertical, uint8 between
// passes), rescale float32(float64(u8) * rescale_factor), normalise (x - mean) / std in float32, and the HF
// patch order (temporal_patch_size 2 by duplicating the still frame). P = patches, C = 3 channels.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "medr1/vision/image_io.h"

namespace medr1::vision {

// transformers qwen2_vl image_processing smart_resize: returns (h_bar, w_bar), both multiples of `factor`,
// with min_pixels <= h_bar*w_bar <= max_pixels when possible. Throws medr1::Error when a side is below
// `factor` ("height:10 or width:10 must be larger than factor:28") or the aspect ratio exceeds 200;
// `name_for_errors` (file name) is appended to the message when not empty.
std::pair<int64_t, int64_t> smart_resize(int64_t height, int64_t width, int64_t factor = 28,
                                         int64_t min_pixels = 56 * 56, int64_t max_pixels = 12845056,
                                         const std::string& name_for_errors = "");

// Pillow `Image.resize((out_w, out_h), Image.BICUBIC)` on an RGB image, bit-exact with Pillow 9.4.
RgbImage resize_bicubic(const RgbImage& img, int64_t out_w, int64_t out_h);

// Pillow's BICUBIC resampling along one axis as a dense matrix [out_size, in_size] (float32): row i holds the
// 22-bit fixed-point coefficients of output i divided by 2^22. Identity when the sizes are equal (Pillow skips
// the pass).
at::Tensor bicubic_resample_matrix(int64_t in_size, int64_t out_size);

// Differentiable counterpart of resize_bicubic for attacks that perturb the raw image: chw [3, H, W] float in
// [0, 1] -> [3, out_h, out_w], Pillow's coefficients applied horizontally then vertically, clipped to [0, 1]
// after each pass like Pillow's clip8, without the uint8 rounding between and after the passes (so it differs
// from resize_bicubic(...) / 255 by about one grey level at most). Gradients flow to chw.
at::Tensor resize_bicubic_differentiable(const at::Tensor& chw, int64_t out_h, int64_t out_w);

// preprocessor_config.json of a Qwen2-VL / Qwen2.5-VL checkpoint; defaults = transformers' defaults.
struct ImageProcessorConfig {
  bool do_resize = true;
  bool do_rescale = true;
  bool do_normalize = true;
  bool do_convert_rgb = true;
  int64_t resample = 3;  // PIL BICUBIC; the only value supported
  double rescale_factor = 1.0 / 255.0;
  std::array<double, 3> image_mean{0.48145466, 0.4578275, 0.40821073};  // OPENAI_CLIP_MEAN (cast to float32 in use)
  std::array<double, 3> image_std{0.26862954, 0.26130258, 0.27577711};   // OPENAI_CLIP_STD
  int64_t min_pixels = 56 * 56;  // 3136; Med-R1 keeps 3136
  // 12845056 (= 3584^2) is what Qwen2-VL / Qwen2.5-VL checkpoints ship in preprocessor_config.json; Med-R1 runs
  // with 401408 (callers override the field). NB: transformers v4.49's class default is 28*28*1280 = 1003520,
  // reached only by a config file with no max_pixels at all (none of the Qwen checkpoints).
  int64_t max_pixels = 12845056;
  int64_t patch_size = 14;
  int64_t temporal_patch_size = 2;
  int64_t merge_size = 2;

  int64_t factor() const { return patch_size * merge_size; }  // 28
  int64_t patch_dim() const { return 3 * temporal_patch_size * patch_size * patch_size; }  // 1176
};

// Parses a preprocessor_config.json. Top-level min_pixels/max_pixels win over `size`, which may be
// {"shortest_edge", "longest_edge"} (newer transformers honour it; v4.49 only reads the top-level keys, which
// every Qwen checkpoint has) or {"min_pixels", "max_pixels"}. Unknown keys are ignored. Errors name the file
// and the field.
ImageProcessorConfig load_image_processor_config(const std::string& preprocessor_config_json_path);

struct ProcessedImage {
  RgbImage resized;                    // what the resize produced (the input when do_resize is false)
  at::Tensor pixel_values;             // [P, 1176] float32, P = t*gh*gw, HF patch order
  std::array<int64_t, 3> grid_thw{};   // (t, H'/patch, W'/patch)
  int64_t merge_size = 2;
  // Number of LLM tokens (<|image_pad|> copies) for this image: t*gh*gw / merge^2.
  int64_t num_merged_tokens() const { return grid_thw[0] * grid_thw[1] * grid_thw[2] / (merge_size * merge_size); }
};

// The whole processor on one decoded image. `name_for_errors` names the file in smart_resize errors.
ProcessedImage preprocess(const RgbImage& img, const ImageProcessorConfig& cfg,
                          const std::string& name_for_errors = "");

// load_image_rgb + preprocess.
ProcessedImage preprocess_file(const std::string& path, const ImageProcessorConfig& cfg);

// Differentiable tail of the processor for attacks: rgb01 [3, H, W] float32 in [0, 1] (already resized;
// H, W multiples of patch*merge) -> normalise (float32 (x - mean) / std, skipped when !do_normalize) ->
// patchify -> [P, 1176]. Gradients flow to rgb01. Given rgb01 = float32(u8 * rescale_factor) it equals
// preprocess()'s pixel_values (same float32 operations).
at::Tensor normalize_and_patchify(const at::Tensor& rgb01, const ImageProcessorConfig& cfg);

// uint8 RgbImage -> [3, H, W] float32 = float32(float64(u8) * rescale_factor) (the input the attack path takes).
at::Tensor rgb_to_chw01(const RgbImage& img, double rescale_factor = 1.0 / 255.0);

// Several images of one batch, as the HF processor returns them.
struct ImageBatch {
  at::Tensor pixel_values;    // [sum P, 1176] float32
  at::Tensor image_grid_thw;  // [N, 3] int64
};
ImageBatch cat_processed(const std::vector<ProcessedImage>& images);

}  // namespace medr1::vision
