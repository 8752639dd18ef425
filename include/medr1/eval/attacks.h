// L∞ adversarial attacks (FGSM, PGD) on the resized RGB image in [0, 1], differentiated through the image
// processor's tail (vision::normalize_and_patchify) and the whole model. This is the attack AdvMed-R1's
// eval_qwen2_5vl_adversarial.py intended but did not define properly (it perturbed the normalised pixel_values,
// clamped them to [0, 1] and crashed on the back-conversion; MEDR1_REFERENCE.md §1.9). Defaults: ε = 8/255,
// α = 2/255, 10 PGD steps. Loss: teacher-forced cross-entropy of the ground-truth answer tokens appended after
// the prompt (untargeted: maximised), or AdvMed-R1's first-token loss (CE of the model's own argmax next token).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "medr1/model/qwen2_vl.h"
#include "medr1/tokenizer/tokenizer.h"
#include "medr1/vision/image_processor.h"

namespace medr1::eval {

enum class AttackType { clean, fgsm, pgd };
// "clean" | "fgsm" | "pgd" (case-insensitive); error otherwise.
AttackType parse_attack_type(std::string_view s);
const char* to_string(AttackType t);

enum class AttackLoss {
  answer,       // mean CE of the answer tokens ("<answer> X </answer>") teacher-forced after the prompt
  first_token,  // AdvMed-R1: CE(logits[-1], argmax(logits[-1])) at the end of the prompt, target re-taken each step
};
// "answer" | "first-token" (also "first_token"); error otherwise.
AttackLoss parse_attack_loss(std::string_view s);
const char* to_string(AttackLoss l);

struct AttackOptions {
  AttackType type = AttackType::fgsm;
  double epsilon = 8.0 / 255.0;  // L∞ radius in [0, 1] pixel units
  double alpha = 2.0 / 255.0;    // PGD step
  int64_t iters = 10;            // PGD steps
  bool random_start = false;     // PGD: start from a uniform point of the ε-ball (seeded)
  uint64_t seed = 0;
  AttackLoss loss = AttackLoss::answer;
};

// One item's token sequence for the attack loss.
struct AttackExample {
  at::Tensor input_ids;       // [1, S + L] int64: prompt (each <|image_pad|> expanded) then the L target tokens
  int64_t prompt_len = 0;     // S
  at::Tensor image_grid_thw;  // [1, 3] int64
};

// Tokenises the chat-templated `prompt_text` (one image placeholder) with `image`'s merged-token count and
// appends tok.encode(target_text) (the solution, e.g. "<answer> C </answer>"; "" for the first-token loss).
AttackExample make_attack_example(const tokenizer::Tokenizer& tok, const std::string& prompt_text,
                                  const vision::ProcessedImage& image, const std::string& target_text);

// The attack loss (float32 scalar) of the image rgb01 [3, H, W] (float32, H and W multiples of 28), a
// differentiable function of rgb01. The answer loss needs L >= 1 target tokens.
at::Tensor attack_loss(model::Qwen2VLForConditionalGeneration& model, const at::Tensor& rgb01,
                       const vision::ImageProcessorConfig& cfg, const AttackExample& ex, AttackLoss loss);

// Loss and its gradient w.r.t. rgb01 ([3, H, W] float32); the model's parameters get no gradient.
struct LossAndGrad {
  double loss = 0.0;
  at::Tensor grad;
};
LossAndGrad attack_loss_and_grad(model::Qwen2VLForConditionalGeneration& model, const at::Tensor& rgb01,
                                 const vision::ImageProcessorConfig& cfg, const AttackExample& ex, AttackLoss loss);

struct AttackResult {
  at::Tensor adversarial;      // [3, H, W] float32 in [0, 1], |adv - clean| <= ε everywhere
  double clean_loss = 0.0;     // loss at the clean image
  double adversarial_loss = 0.0;  // loss at `adversarial` (float, before any quantisation)
  std::vector<double> losses;  // every loss evaluated, in order (PGD: iterate 0..iters)
  double linf = 0.0;           // max |adv - clean|
  int64_t forwards = 0;
  int64_t backwards = 0;
};

// FGSM: x = clip01(x0 + ε·sign(∇)). PGD: x_{k+1} = clip01(clip_{x0±ε}(x_k + α·sign(∇_k))) for `iters` steps,
// optionally from a random start; returns the iterate with the highest loss (the last one unless the loss
// went down). type == clean returns the clean image and its loss. clean01: [3, H, W] float32 in [0, 1].
AttackResult run_attack(model::Qwen2VLForConditionalGeneration& model, const at::Tensor& clean01,
                        const vision::ImageProcessorConfig& cfg, const AttackExample& ex, const AttackOptions& opts);

// [3, H, W] float in [0, 1] -> uint8 RgbImage (round half away from zero of x*255, clamped).
vision::RgbImage chw01_to_rgb(const at::Tensor& chw01);

// Rounds the adversarial image to the uint8 grid (what a saved PNG holds) and re-projects it onto the ε-ball
// of the uint8 clean image: every channel value stays within floor(ε·255 + 1e-6) grey levels of the clean one.
vision::RgbImage quantize_adversarial(const at::Tensor& adv01, const vision::RgbImage& clean, double epsilon);

// Largest |a - b| over all channel values, in grey levels (0-255). Sizes must match.
int64_t max_abs_diff_u8(const vision::RgbImage& a, const vision::RgbImage& b);

// ProcessedImage of an already-resized image (no second resize): pixel_values = normalize_and_patchify of
// rgb_to_chw01(img), bit-identical to what preprocess() gives for the same resized pixels.
vision::ProcessedImage processed_from_resized(const vision::RgbImage& resized, const vision::ImageProcessorConfig& cfg);

// |a - b| * gain (clamped) as an image, for looking at a perturbation.
vision::RgbImage difference_image(const vision::RgbImage& a, const vision::RgbImage& b, int gain);

// The PNG writer of vision/image_io.h (clean / adversarial / difference images).
using vision::write_png;

}  // namespace medr1::eval
