// FGSM / PGD on the resized RGB image through normalize_and_patchify and the model (attacks.h). Gradients are
// taken with torch::autograd::grad w.r.t. the image only, so no parameter .grad is touched (callers may still
// switch requires_grad off on the parameters to spare the weight-gradient matmuls).
#include "medr1/eval/attacks.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>

#include "medr1/core/error.h"

namespace medr1::eval {

namespace {
std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}
}  // namespace

AttackType parse_attack_type(std::string_view s) {
  const std::string l = lower(s);
  if (l == "clean") return AttackType::clean;
  if (l == "fgsm") return AttackType::fgsm;
  if (l == "pgd") return AttackType::pgd;
  fail("attack '", s, "': expected clean, fgsm or pgd");
}

const char* to_string(AttackType t) {
  switch (t) {
    case AttackType::clean: return "clean";
    case AttackType::fgsm: return "fgsm";
    case AttackType::pgd: return "pgd";
  }
  return "?";
}

AttackLoss parse_attack_loss(std::string_view s) {
  const std::string l = lower(s);
  if (l == "answer") return AttackLoss::answer;
  if (l == "first-token" || l == "first_token") return AttackLoss::first_token;
  fail("attack loss '", s, "': expected answer or first-token");
}

const char* to_string(AttackLoss l) { return l == AttackLoss::answer ? "answer" : "first-token"; }

AttackExample make_attack_example(const tokenizer::Tokenizer& tok, const std::string& prompt_text,
                                  const vision::ProcessedImage& image, const std::string& target_text) {
  const auto image_pad = tok.token_to_id("<|image_pad|>");
  MEDR1_CHECK(image_pad.has_value(), "make_attack_example: the tokenizer has no <|image_pad|> token");
  std::vector<int64_t> ids;
  int64_t n_pads = 0;
  for (int32_t id : tok.encode(prompt_text)) {
    if (id == *image_pad) {
      ++n_pads;
      ids.insert(ids.end(), static_cast<size_t>(image.num_merged_tokens()), static_cast<int64_t>(id));
    } else {
      ids.push_back(id);
    }
  }
  MEDR1_CHECK(n_pads == 1, "make_attack_example: the prompt has ", n_pads, " <|image_pad|> tokens, expected 1");
  AttackExample ex;
  ex.prompt_len = static_cast<int64_t>(ids.size());
  if (!target_text.empty())
    for (int32_t id : tok.encode(target_text)) ids.push_back(id);
  ex.input_ids = at::tensor(ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);  // [1, S + L]
  ex.image_grid_thw = at::tensor(std::vector<int64_t>{image.grid_thw[0], image.grid_thw[1], image.grid_thw[2]},
                                 at::TensorOptions().dtype(at::kLong))
                          .view({1, 3});
  return ex;
}

at::Tensor attack_loss(model::Qwen2VLForConditionalGeneration& model, const at::Tensor& rgb01,
                       const vision::ImageProcessorConfig& cfg, const AttackExample& ex, AttackLoss loss) {
  const int64_t S = ex.prompt_len;
  const int64_t total = ex.input_ids.size(1);
  model::Qwen2VLInputs in;
  in.pixel_values = vision::normalize_and_patchify(rgb01, cfg);  // [P, 1176]
  in.image_grid_thw = ex.image_grid_thw;
  if (loss == AttackLoss::answer) {
    const int64_t L = total - S;
    MEDR1_CHECK(L >= 1, "attack_loss: the answer loss needs target tokens after the prompt (got none)");
    in.input_ids = ex.input_ids;
    in.logits_from = S - 1;  // position t predicts token t + 1: positions S-1 .. S+L-2 predict the L targets
    const at::Tensor logits = model->forward(in).logits.narrow(1, 0, L).to(at::kFloat);  // [1, L, V]
    const at::Tensor target = ex.input_ids.narrow(1, S, L);                             // [1, L]
    return at::cross_entropy_loss(logits.reshape({L, -1}), target.reshape({L}));
  }
  in.input_ids = ex.input_ids.narrow(1, 0, S);
  in.logits_from = -1;
  const at::Tensor logits = model->forward(in).logits.select(1, 0).to(at::kFloat);  // [1, V]
  const at::Tensor target = logits.detach().argmax(-1);                             // [1]
  return at::cross_entropy_loss(logits, target);
}

LossAndGrad attack_loss_and_grad(model::Qwen2VLForConditionalGeneration& model, const at::Tensor& rgb01,
                                 const vision::ImageProcessorConfig& cfg, const AttackExample& ex, AttackLoss loss) {
  c10::AutoGradMode grad_on(true);
  at::Tensor x = rgb01.detach().clone().set_requires_grad(true);
  at::Tensor l = attack_loss(model, x, cfg, ex, loss);
  LossAndGrad out;
  out.loss = l.item<double>();
  out.grad = torch::autograd::grad({l}, {x}, /*grad_outputs=*/{}, /*retain_graph=*/false)[0].detach();
  return out;
}

AttackResult run_attack(model::Qwen2VLForConditionalGeneration& model, const at::Tensor& clean01,
                        const vision::ImageProcessorConfig& cfg, const AttackExample& ex, const AttackOptions& opts) {
  MEDR1_CHECK(clean01.dim() == 3 && clean01.size(0) == 3 && clean01.scalar_type() == at::kFloat,
              "run_attack: expected a [3, H, W] float32 image, got ", clean01.sizes(), " ", clean01.scalar_type());
  MEDR1_CHECK(opts.epsilon >= 0.0, "run_attack: epsilon ", opts.epsilon, " < 0");
  const at::Tensor x0 = clean01.detach();
  const float eps = static_cast<float>(opts.epsilon);
  // ε-ball projection then [0, 1]; the ball's bounds are built once (x0 ± ε, computed in float32).
  const at::Tensor lo = (x0 - eps).clamp_min(0.0), hi = (x0 + eps).clamp_max(1.0);
  auto project = [&](const at::Tensor& x) { return at::max(at::min(x, hi), lo); };
  AttackResult r;
  auto eval_loss = [&](const at::Tensor& x) {
    c10::NoGradGuard ng;
    ++r.forwards;
    return attack_loss(model, x, cfg, ex, opts.loss).item<double>();
  };
  auto loss_grad = [&](const at::Tensor& x) {
    ++r.forwards;
    ++r.backwards;
    return attack_loss_and_grad(model, x, cfg, ex, opts.loss);
  };

  switch (opts.type) {
    case AttackType::clean: {
      r.clean_loss = r.adversarial_loss = eval_loss(x0);
      r.losses = {r.clean_loss};
      r.adversarial = x0.clone();
      break;
    }
    case AttackType::fgsm: {
      const LossAndGrad lg = loss_grad(x0);
      r.clean_loss = lg.loss;
      r.adversarial = project(x0 + eps * lg.grad.sign());
      r.adversarial_loss = eval_loss(r.adversarial);
      r.losses = {r.clean_loss, r.adversarial_loss};
      break;
    }
    case AttackType::pgd: {
      MEDR1_CHECK(opts.iters >= 1, "run_attack: pgd needs iters >= 1, got ", opts.iters);
      at::Tensor x = x0;
      if (opts.random_start) {
        at::Generator gen = at::detail::createCPUGenerator(opts.seed);
        x = project(x0 + at::empty_like(x0).uniform_(-eps, eps, gen));
        r.clean_loss = eval_loss(x0);
      }
      at::Tensor best;
      double best_loss = -std::numeric_limits<double>::infinity();
      for (int64_t k = 0; k <= opts.iters; ++k) {
        // The last iterate only needs its loss.
        double lk = 0.0;
        at::Tensor g;
        if (k < opts.iters) {
          LossAndGrad lg = loss_grad(x);
          lk = lg.loss;
          g = lg.grad;
        } else {
          lk = eval_loss(x);
        }
        if (k == 0 && !opts.random_start) r.clean_loss = lk;
        r.losses.push_back(lk);
        if (lk > best_loss || !best.defined()) {
          best_loss = lk;
          best = x;
        }
        if (k < opts.iters) x = project(x + static_cast<float>(opts.alpha) * g.sign());
      }
      r.adversarial = best.clone();
      r.adversarial_loss = best_loss;
      break;
    }
  }
  r.linf = (r.adversarial - x0).abs().max().item<double>();
  return r;
}

vision::RgbImage chw01_to_rgb(const at::Tensor& chw01) {
  MEDR1_CHECK(chw01.dim() == 3 && chw01.size(0) == 3, "chw01_to_rgb: expected [3, H, W], got ", chw01.sizes());
  const at::Tensor u8 = (chw01.detach().to(at::kDouble) * 255.0).round().clamp(0.0, 255.0).to(at::kByte)
                            .permute({1, 2, 0})
                            .contiguous();  // [H, W, 3]
  vision::RgbImage img;
  img.height = chw01.size(1);
  img.width = chw01.size(2);
  img.data.assign(u8.data_ptr<uint8_t>(), u8.data_ptr<uint8_t>() + u8.numel());
  return img;
}

vision::RgbImage quantize_adversarial(const at::Tensor& adv01, const vision::RgbImage& clean, double epsilon) {
  vision::RgbImage q = chw01_to_rgb(adv01);
  MEDR1_CHECK(q.width == clean.width && q.height == clean.height, "quantize_adversarial: adversarial image ",
              q.width, "x", q.height, " vs clean ", clean.width, "x", clean.height);
  const int budget = static_cast<int>(std::floor(epsilon * 255.0 + 1e-6));
  for (size_t i = 0; i < q.data.size(); ++i) {
    const int c = clean.data[i];
    q.data[i] = static_cast<uint8_t>(std::clamp(static_cast<int>(q.data[i]), std::max(0, c - budget),
                                                std::min(255, c + budget)));
  }
  return q;
}

int64_t max_abs_diff_u8(const vision::RgbImage& a, const vision::RgbImage& b) {
  MEDR1_CHECK(a.width == b.width && a.height == b.height && a.data.size() == b.data.size(),
              "max_abs_diff_u8: sizes differ (", a.width, "x", a.height, " vs ", b.width, "x", b.height, ")");
  int64_t m = 0;
  for (size_t i = 0; i < a.data.size(); ++i)
    m = std::max<int64_t>(m, std::abs(static_cast<int>(a.data[i]) - static_cast<int>(b.data[i])));
  return m;
}

vision::ProcessedImage processed_from_resized(const vision::RgbImage& resized,
                                              const vision::ImageProcessorConfig& cfg) {
  vision::ProcessedImage p;
  p.merge_size = cfg.merge_size;
  p.resized = resized;
  p.pixel_values = vision::normalize_and_patchify(vision::rgb_to_chw01(resized, cfg.rescale_factor), cfg).contiguous();
  p.grid_thw = {1, resized.height / cfg.patch_size, resized.width / cfg.patch_size};
  return p;
}

vision::RgbImage difference_image(const vision::RgbImage& a, const vision::RgbImage& b, int gain) {
  MEDR1_CHECK(a.data.size() == b.data.size(), "difference_image: sizes differ");
  vision::RgbImage d = a;
  for (size_t i = 0; i < a.data.size(); ++i)
    d.data[i] = static_cast<uint8_t>(
        std::min(255, std::abs(static_cast<int>(a.data[i]) - static_cast<int>(b.data[i])) * gain));
  return d;
}

}  // namespace medr1::eval
