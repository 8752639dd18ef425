// medr1-bench-eval: medr1-eval's cost on a Qwen2-VL-2B-shaped model with random weights (--layers /
// --vision-depth cut the depth; say so when quoting): clean greedy evaluation items/s per batch size with a
// Med-R1 prompt and a Med-R1-sized image (max_pixels 401408), and the FGSM / PGD cost per item relative to clean.
// EOS is disabled so every item generates exactly --new-tokens tokens (random weights would stop at random).
#include <CLI/CLI.hpp>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>

#include "ceilings.h"
#include "medr1/core/memory.h"
#include "medr1/data/prompts.h"
#include "medr1/eval/attacks.h"
#include "medr1/eval/evaluate.h"
#include "medr1/generate/generate.h"
#include "medr1/model/qwen2_vl_config.h"
#include "medr1/tokenizer/tokenizer.h"

namespace {
using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }
}  // namespace

int main(int argc, char** argv) {
  medr1::keep_freed_memory();  // as medr1-train: large activations are not page-faulted in per call
  CLI::App app{"medr1-bench-eval: clean items/s per batch size and FGSM/PGD cost, Qwen2-VL-2B shape"};
  int64_t layers = 28, vdepth = 32, image_px = 384, new_tokens = 16, pgd_iters = 10;
  int threads = 0;
  std::vector<int64_t> batch_sizes{1, 2, 4, 8};
  std::string tok_dir = std::string(MEDR1_SOURCE_DIR) + "/tests/data/tokenizer/qwen2vl";
  app.add_option("--layers", layers, "decoder layers (2B: 28)");
  app.add_option("--vision-depth", vdepth, "vision blocks (2B: 32)");
  app.add_option("--image", image_px, "square image side before smart_resize");
  app.add_option("--new-tokens", new_tokens, "tokens generated per item");
  app.add_option("--batch-sizes", batch_sizes, "clean batch sizes to time");
  app.add_option("--pgd-iters", pgd_iters, "PGD steps");
  app.add_option("--threads", threads, "intra-op threads (0 = default)");
  app.add_option("--tokenizer", tok_dir, "folder with tokenizer.json");
  CLI11_PARSE(app, argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines show up even if the run is cut short
  if (threads > 0) at::set_num_threads(threads);

  const auto cfg = medr1::bench::qwen2_vl_2b_config(layers, vdepth);
  at::manual_seed(0);
  medr1::model::Qwen2VLForConditionalGeneration model(cfg);
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  const auto tok = medr1::tokenizer::Tokenizer::from_dir(tok_dir);

  medr1::vision::ImageProcessorConfig ipc;
  ipc.max_pixels = 401408;
  medr1::vision::RgbImage img;
  img.width = img.height = image_px;
  img.data.resize(static_cast<size_t>(image_px * image_px * 3));
  for (size_t i = 0; i < img.data.size(); ++i) img.data[i] = static_cast<uint8_t>((i * 37 + i / 1000) % 256);
  const auto processed = medr1::vision::preprocess(img, ipc);
  const std::string question =
      "What imaging modality was used for this picture? A)CT, B)MRI, C)X-Ray, D)Ultrasound";
  const std::string prompt =
      medr1::eval::build_eval_prompt(question, std::string(medr1::data::kEvalNoThinkTemplate), true);
  medr1::generate::SamplingParams sp;
  sp.max_new_tokens = new_tokens;
  sp.eos_token_ids = {};  // fixed length
  sp.repetition_penalty = 1.0;
  std::printf("Qwen2-VL-2B shape, layers %lld, vision depth %lld, threads %d; image %lldx%lld -> %lldx%lld (%lld "
              "image tokens); %lld new tokens per item\n",
              static_cast<long long>(layers), static_cast<long long>(vdepth), at::get_num_threads(),
              static_cast<long long>(image_px), static_cast<long long>(image_px),
              static_cast<long long>(processed.resized.width), static_cast<long long>(processed.resized.height),
              static_cast<long long>(processed.num_merged_tokens()), static_cast<long long>(new_tokens));

  double best_ips = 0.0;
  int64_t best_bs = 1;
  double per_item_bs1 = 0.0;
  for (int64_t bs : batch_sizes) {
    std::vector<std::string> texts(static_cast<size_t>(bs), prompt);
    std::vector<std::vector<medr1::vision::ProcessedImage>> imgs(static_cast<size_t>(bs), {processed});
    const auto pb = medr1::generate::build_prompt_batch(tok, texts, imgs, 151643);
    at::NoGradGuard ng;
    const auto t0 = Clock::now();
    const auto out = medr1::generate::generate(model, pb, sp);
    const double s = secs(t0);
    const double ips = static_cast<double>(bs) / s;
    if (bs == 1) per_item_bs1 = s;
    if (ips > best_ips) {
      best_ips = ips;
      best_bs = bs;
    }
    std::printf("clean batch %lld: %.2f s, %.4f items/s (prompt %lld tokens)\n", static_cast<long long>(bs), s, ips,
                static_cast<long long>(pb.input_ids.size(1)));
    (void)out;
  }
  std::printf("best clean: batch %lld, %.4f items/s (%.2f s/item)\n", static_cast<long long>(best_bs), best_ips,
              1.0 / best_ips);

  const auto ex = medr1::eval::make_attack_example(tok, prompt, processed, "<answer> B </answer>");
  const at::Tensor clean01 = medr1::vision::rgb_to_chw01(processed.resized);
  for (auto type : {medr1::eval::AttackType::fgsm, medr1::eval::AttackType::pgd}) {
    medr1::eval::AttackOptions ao;
    ao.type = type;
    ao.iters = pgd_iters;
    const auto t0 = Clock::now();
    const auto r = medr1::eval::run_attack(model, clean01, ipc, ex, ao);
    const double s = secs(t0);
    const double total = s + 1.0 / best_ips;  // attack, then the item's share of a best-batch generation
    std::printf("%s: attack %.2f s/item (%lld fwd, %lld bwd; loss %.4f -> %.4f); attack+generate %.2f s/item = "
                "%.2fx clean (best batch), %.2fx clean batch 1\n",
                medr1::eval::to_string(type), s, static_cast<long long>(r.forwards),
                static_cast<long long>(r.backwards), r.clean_loss, r.adversarial_loss, total, total * best_ips,
                (s + per_item_bs1) / std::max(per_item_bs1, 1e-9));
  }
  return 0;
}
