// FGSM / PGD on the tiny Qwen2-VL checkpoint: the ε-ball holds for every pixel (float and uint8), the loss
// ordering clean <= FGSM <= PGD, gradients through normalize_and_patchify and the model vs finite differences,
// the token layout of the attack example and the PNG writer.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <filesystem>

#include "medr1/core/error.h"
#include "medr1/data/prompts.h"
#include "medr1/eval/attacks.h"
#include "medr1/model/weight_loader.h"
#include "medr1/tokenizer/chat_template.h"
#include "medr1/vision/image_io.h"

using namespace medr1;
using namespace medr1::eval;

namespace {

const std::string kTiny = std::string(MEDR1_TEST_DATA) + "/qwen2vl-tiny";
const std::string kTokDir = std::string(MEDR1_TEST_DATA) + "/tokenizer/qwen2vl";

// A 70x61 test picture with smooth gradients and saturated (0 and 255) areas, so clamping to [0, 1] matters.
vision::RgbImage test_picture() {
  vision::RgbImage img;
  img.width = 61;
  img.height = 70;
  img.data.resize(static_cast<size_t>(img.width * img.height * 3));
  for (int64_t y = 0; y < img.height; ++y)
    for (int64_t x = 0; x < img.width; ++x) {
      const size_t o = static_cast<size_t>((y * img.width + x) * 3);
      img.data[o] = static_cast<uint8_t>(x < 10 ? 0 : (x * 4) % 256);
      img.data[o + 1] = static_cast<uint8_t>(y > 60 ? 255 : (y * 3 + x) % 256);
      img.data[o + 2] = static_cast<uint8_t>((x * y) % 256);
    }
  return img;
}

vision::ImageProcessorConfig small_cfg() {
  vision::ImageProcessorConfig cfg;
  cfg.min_pixels = 3136;
  cfg.max_pixels = 56 * 84;  // 56x56 after smart_resize: a 4x4 patch grid, 4 image tokens
  return cfg;
}

struct Fixture {
  model::Qwen2VLForConditionalGeneration model{nullptr};
  std::optional<tokenizer::Tokenizer> tok;
  vision::ImageProcessorConfig cfg = small_cfg();
  vision::ProcessedImage image;
  at::Tensor clean01;
  AttackExample answer_ex;
  AttackExample first_ex;
};

Fixture& fixture() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    fx->model = model::load_qwen2_vl(kTiny, at::kFloat);
    fx->model->eval();
    for (auto& p : fx->model->parameters()) p.set_requires_grad(false);
    fx->tok = tokenizer::Tokenizer::from_dir(kTokDir);
    fx->image = vision::preprocess(test_picture(), fx->cfg);
    fx->clean01 = vision::rgb_to_chw01(fx->image.resized);
    tokenizer::Message user;
    user.role = "user";
    user.content.push_back(tokenizer::ContentPart::make_image());
    user.content.push_back(tokenizer::ContentPart::make_text(
        data::format_question(data::kEvalNoThinkTemplate, "Which modality? A)CT, B)MRI, C)X-Ray, D)Ultrasound")));
    const std::string prompt = tokenizer::apply_chat_template({user}, true);
    fx->answer_ex = make_attack_example(*fx->tok, prompt, fx->image, "<answer> B </answer>");
    fx->first_ex = make_attack_example(*fx->tok, prompt, fx->image, "");
    return fx;
  }();
  return *f;
}

bool have_data() { return std::filesystem::exists(kTokDir + "/tokenizer.json"); }

}  // namespace

TEST(Attacks, ParseNames) {
  EXPECT_EQ(parse_attack_type("PGD"), AttackType::pgd);
  EXPECT_EQ(parse_attack_type("clean"), AttackType::clean);
  EXPECT_THROW(parse_attack_type("cw"), Error);
  EXPECT_EQ(parse_attack_loss("first-token"), AttackLoss::first_token);
  EXPECT_EQ(parse_attack_loss("answer"), AttackLoss::answer);
  EXPECT_THROW(parse_attack_loss("margin"), Error);
  EXPECT_STREQ(to_string(AttackLoss::first_token), "first-token");
}

TEST(Attacks, ExampleLayout) {
  if (!have_data()) GTEST_SKIP() << "tokenizer.json not fetched (scripts/tokenizer_fixtures.sh)";
  Fixture& f = fixture();
  ASSERT_EQ(f.image.grid_thw[1], 4);
  ASSERT_EQ(f.image.grid_thw[2], 4);
  const at::Tensor ids = f.answer_ex.input_ids;
  ASSERT_EQ(ids.dim(), 2);
  EXPECT_EQ(f.first_ex.prompt_len, f.answer_ex.prompt_len);
  EXPECT_EQ(f.first_ex.input_ids.size(1), f.first_ex.prompt_len);
  EXPECT_EQ(ids.narrow(1, 0, f.answer_ex.prompt_len).eq(151655).sum().item<int64_t>(), 4);  // 4 merged tokens
  // The appended tokens decode back to the solution text.
  std::vector<int32_t> tail;
  for (int64_t i = f.answer_ex.prompt_len; i < ids.size(1); ++i) tail.push_back(static_cast<int32_t>(ids[0][i].item<int64_t>()));
  EXPECT_EQ(f.tok->decode(tail), "<answer> B </answer>");
  // The prompt ends with the generation prompt "<|im_start|>assistant\n".
  EXPECT_EQ(ids[0][f.answer_ex.prompt_len - 3].item<int64_t>(), 151644);
}

TEST(Attacks, ProcessorGradientMatchesFiniteDifferences) {
  // f(x) = sum(w * normalize_and_patchify(x)) is linear in x, so central differences are exact up to rounding.
  vision::ImageProcessorConfig cfg = small_cfg();
  at::manual_seed(3);
  const at::Tensor x0 = at::rand({3, 56, 56});
  const at::Tensor w = at::randn({16, 1176});
  at::Tensor x = x0.clone().set_requires_grad(true);
  (vision::normalize_and_patchify(x, cfg) * w).sum().backward();
  const at::Tensor g = x.grad();
  auto f = [&](const at::Tensor& xx) { return (vision::normalize_and_patchify(xx, cfg) * w).sum().item<double>(); };
  const float h = 0.05f;
  for (int k = 0; k < 25; ++k) {
    const int64_t c = k % 3, yy = (k * 7) % 56, xx = (k * 13 + 5) % 56;
    at::Tensor xp = x0.clone(), xm = x0.clone();
    xp[c][yy][xx] += h;
    xm[c][yy][xx] -= h;
    const double fd = (f(xp) - f(xm)) / (2.0 * h);
    const double an = g[c][yy][xx].item<double>();
    EXPECT_NEAR(fd, an, 2e-3 * std::max(1.0, std::abs(an))) << "pixel " << c << "," << yy << "," << xx;
    // Analytically: 2 temporal copies of the pixel, each scaled by 1/std_c.
    double expect = 0.0;
    const auto pv_grad = [&] {
      at::Tensor e = at::zeros({3, 56, 56});
      e[c][yy][xx] = 1.0;
      return (vision::normalize_and_patchify(e, cfg) - vision::normalize_and_patchify(at::zeros({3, 56, 56}), cfg));
    }();
    expect = (pv_grad * w).sum().item<double>();
    EXPECT_NEAR(an, expect, 1e-3 * std::max(1.0, std::abs(expect)));
  }
}

TEST(Attacks, ModelGradientMatchesFiniteDifferences) {
  if (!have_data()) GTEST_SKIP() << "tokenizer.json not fetched (scripts/tokenizer_fixtures.sh)";
  Fixture& f = fixture();
  for (AttackLoss loss : {AttackLoss::answer, AttackLoss::first_token}) {
    const AttackExample& ex = loss == AttackLoss::answer ? f.answer_ex : f.first_ex;
    const LossAndGrad lg = attack_loss_and_grad(f.model, f.clean01, f.cfg, ex, loss);
    ASSERT_TRUE(std::isfinite(lg.loss));
    ASSERT_EQ(lg.grad.sizes(), f.clean01.sizes());
    ASSERT_GT(lg.grad.abs().max().item<double>(), 0.0);
    auto L = [&](const at::Tensor& x) {
      c10::NoGradGuard ng;
      return attack_loss(f.model, x, f.cfg, ex, loss).item<double>();
    };
    // Directional derivatives along the gradient's direction and two random directions.
    at::manual_seed(11);
    std::vector<at::Tensor> dirs = {lg.grad / lg.grad.norm(), at::randn_like(f.clean01), at::randn_like(f.clean01)};
    for (size_t i = 1; i < dirs.size(); ++i) dirs[i] = dirs[i] / dirs[i].norm();
    for (size_t i = 0; i < dirs.size(); ++i) {
      const double h = 2e-2;
      const double fd = (L(f.clean01 + h * dirs[i]) - L(f.clean01 - h * dirs[i])) / (2.0 * h);
      const double an = (lg.grad * dirs[i]).sum().item<double>();
      EXPECT_NEAR(fd, an, 0.03 * std::abs(an) + 2e-4) << to_string(loss) << " direction " << i;
    }
  }
}

TEST(Attacks, EpsilonBallHoldsForEveryPixel) {
  if (!have_data()) GTEST_SKIP() << "tokenizer.json not fetched (scripts/tokenizer_fixtures.sh)";
  Fixture& f = fixture();
  for (AttackType t : {AttackType::fgsm, AttackType::pgd}) {
    for (double eps : {8.0 / 255.0, 0.03}) {
      AttackOptions o;
      o.type = t;
      o.epsilon = eps;
      o.iters = 3;
      o.random_start = t == AttackType::pgd;
      o.seed = 5;
      const AttackResult r = run_attack(f.model, f.clean01, f.cfg, f.answer_ex, o);
      const at::Tensor d = (r.adversarial - f.clean01).abs();
      EXPECT_LE(d.max().item<double>(), eps + 1e-6) << to_string(t);
      EXPECT_GE(r.adversarial.min().item<double>(), 0.0);
      EXPECT_LE(r.adversarial.max().item<double>(), 1.0);
      EXPECT_GT(r.linf, eps * 0.5) << "the attack should move pixels";
      // Quantised to uint8: within floor(eps*255) grey levels of the clean pixels, for every channel value.
      const vision::RgbImage q = quantize_adversarial(r.adversarial, f.image.resized, eps);
      const int64_t budget = static_cast<int64_t>(std::floor(eps * 255.0 + 1e-6));
      EXPECT_LE(max_abs_diff_u8(q, f.image.resized), budget);
      EXPECT_GE(max_abs_diff_u8(q, f.image.resized), 1);
    }
  }
}

TEST(Attacks, LossOrderingCleanFgsmPgd) {
  if (!have_data()) GTEST_SKIP() << "tokenizer.json not fetched (scripts/tokenizer_fixtures.sh)";
  Fixture& f = fixture();
  for (AttackLoss loss : {AttackLoss::answer, AttackLoss::first_token}) {
    const AttackExample& ex = loss == AttackLoss::answer ? f.answer_ex : f.first_ex;
    AttackOptions o;
    o.loss = loss;
    o.type = AttackType::clean;
    const AttackResult clean = run_attack(f.model, f.clean01, f.cfg, ex, o);
    o.type = AttackType::fgsm;
    const AttackResult fgsm = run_attack(f.model, f.clean01, f.cfg, ex, o);
    o.type = AttackType::pgd;
    o.iters = 5;
    const AttackResult pgd = run_attack(f.model, f.clean01, f.cfg, ex, o);
    EXPECT_NEAR(fgsm.clean_loss, clean.clean_loss, 1e-5);
    EXPECT_NEAR(pgd.clean_loss, clean.clean_loss, 1e-5);
    EXPECT_GE(pgd.adversarial_loss, pgd.clean_loss) << to_string(loss);  // PGD keeps its best iterate
    if (loss == AttackLoss::answer) {
      EXPECT_GT(fgsm.adversarial_loss, clean.adversarial_loss);
      EXPECT_GE(pgd.adversarial_loss, fgsm.adversarial_loss);
      EXPECT_GT(pgd.adversarial_loss, clean.adversarial_loss + 0.01);
    }
    // The first-token loss CE(logits, argmax logits) is non-smooth where the argmax flips, so one ε-sized
    // FGSM step is not guaranteed to raise it (on this model and input it lowers it by ~1e-3).
    EXPECT_TRUE(std::isfinite(fgsm.adversarial_loss));
    EXPECT_EQ(pgd.losses.size(), 6u);
    EXPECT_EQ(pgd.forwards, 6);
    EXPECT_EQ(pgd.backwards, 5);
    EXPECT_EQ(fgsm.forwards, 2);
    EXPECT_EQ(fgsm.backwards, 1);
  }
}

TEST(Attacks, ProcessedFromResizedMatchesPreprocess) {
  const vision::ImageProcessorConfig cfg = small_cfg();
  const vision::ProcessedImage p = vision::preprocess(test_picture(), cfg);
  const vision::ProcessedImage q = processed_from_resized(p.resized, cfg);
  EXPECT_TRUE(at::equal(p.pixel_values, q.pixel_values));
  EXPECT_EQ(p.grid_thw, q.grid_thw);
  // chw01 -> rgb round trip is exact on the uint8 grid.
  const vision::RgbImage back = chw01_to_rgb(vision::rgb_to_chw01(p.resized));
  EXPECT_EQ(back.data, p.resized.data);
}

TEST(Attacks, PngRoundTrip) {
  const vision::RgbImage img = test_picture();
  const std::string path = (std::filesystem::temp_directory_path() / "medr1_attacks_png_test.png").string();
  write_png(path, img);
  const vision::RgbImage back = vision::load_image_rgb(path);
  EXPECT_EQ(back.width, img.width);
  EXPECT_EQ(back.height, img.height);
  EXPECT_EQ(back.data, img.data);
  std::filesystem::remove(path);
  EXPECT_THROW(write_png("/nonexistent-dir/x.png", img), Error);
}
