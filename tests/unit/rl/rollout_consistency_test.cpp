// The loss forward must see what generation saw: for a micro-batch of prompts with different images (and
// different image-token counts), the log-probability generation assigned to each sampled token equals the
// log-softmax of completion_logits() at that token. A mismatch here (images swapped between rows, wrong
// M-RoPE positions after left padding, a shifted logits window) would let GRPO learn the format but never
// the image -> answer mapping, because the reward of a sample would be credited to another image.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "medr1/data/dataset.h"
#include "medr1/generate/generate.h"
#include "medr1/model/weight_loader.h"
#include "medr1/rl/rollout.h"
#include "medr1/tokenizer/tokenizer.h"
#include "medr1/vision/image_processor.h"

namespace {

namespace fs = std::filesystem;
using namespace medr1;

TEST(RolloutConsistency, GenerationLogprobsEqualLossForwardLogprobs) {
  const fs::path tok_json = fs::path(MEDR1_TEST_DATA) / "tokenizer" / "qwen2vl" / "tokenizer.json";
  if (!fs::exists(tok_json)) GTEST_SKIP() << "tokenizer fixture missing (run scripts/tokenizer_fixtures.sh)";
  auto model = model::load_qwen2_vl(std::string(MEDR1_TEST_DATA) + "/qwen2vl-tiny", at::kFloat);
  const auto tok = tokenizer::Tokenizer::from_file(tok_json.string());

  // A square CT, a non-square chest X-ray and a fundus image: three different image-token counts, so the
  // prompts are left-padded by different amounts in the loss batch.
  const fs::path root = fs::path(MEDR1_SOURCE_DIR) / "data" / "demo";
  const std::vector<std::string> images = {"Images/Synthetic CT Phantom/ct_001.png",
                                           "Images/Synthetic Chest X-Ray/xray_003.png",
                                           "Images/Synthetic Fundus/fundus_002.png"};
  vision::ImageProcessorConfig ipc;
  ipc.min_pixels = 3136;
  ipc.max_pixels = 12544;
  std::vector<rl::PromptExample> examples;
  std::vector<int64_t> image_tokens;
  for (size_t i = 0; i < images.size(); ++i) {
    data::Record r;
    r.index = static_cast<int64_t>(i);
    r.image = images[i];
    r.image_path = (root / images[i]).string();
    r.problem = "Which imaging modality is shown in this image? A)CT, B)MRI, C)X-Ray";
    r.solution = "<answer> A </answer>";
    r.source_file = "test";
    examples.push_back(rl::make_prompt_example(r, rl::PromptMode::nothink, ipc));
    image_tokens.push_back(examples.back().images[0].num_merged_tokens());
  }
  ASSERT_NE(image_tokens[0], image_tokens[1]);
  ASSERT_NE(image_tokens[1], image_tokens[2]);  // really different prompt lengths

  // Capture what generation computed for each prompt's G samples.
  std::vector<at::Tensor> gen_logprobs;
  const rl::GenerateFn capture = [&](model::Qwen2VLForConditionalGeneration& m, const generate::PromptBatch& b,
                                     const generate::SamplingParams& p) {
    generate::GenerationOutput out = generate::generate(m, b, p);
    gen_logprobs.push_back(out.logprobs);
    return out;
  };
  rl::RolloutOptions opt;
  opt.num_generations = 3;
  opt.sampling.do_sample = true;
  opt.sampling.temperature = 1.0;
  opt.sampling.top_k = 50;
  opt.sampling.max_new_tokens = 6;
  opt.sampling.eos_token_ids = {151645};
  opt.mask_eos_ids = {151645};
  opt.seed = 7;
  const int64_t pad = 151643;
  rl::Rollout r = rl::make_rollout(model, tok, examples, opt, pad, capture);
  ASSERT_EQ(gen_logprobs.size(), examples.size());

  at::NoGradGuard no_grad;
  model->eval();
  at::Tensor logits = rl::completion_logits(model, r);  // [N, T, V]
  at::Tensor lp = logits.log_softmax(-1).gather(2, r.completion_ids.unsqueeze(-1)).squeeze(-1);  // [N, T]
  at::Tensor mask = r.completion_mask.to(at::kBool);
  const int64_t G = opt.num_generations;
  int64_t compared = 0;
  for (size_t b = 0; b < examples.size(); ++b) {
    const at::Tensor g = gen_logprobs[b];  // [G, T_b]
    for (int64_t j = 0; j < G; ++j) {
      const int64_t row = static_cast<int64_t>(b) * G + j;
      for (int64_t t = 0; t < g.size(1); ++t) {
        if (!mask[row][t].item<bool>()) continue;
        EXPECT_NEAR(lp[row][t].item<double>(), g[j][t].item<double>(), 2e-4)
            << "prompt " << b << " sample " << j << " token " << t;
        ++compared;
      }
    }
  }
  EXPECT_GE(compared, static_cast<int64_t>(examples.size()) * G);
}

}  // namespace
