// Generation engine vs the transformers v4.49.0 goldens of qwen2vl-tiny (gen_single, gen_batch,
// gen_single_rep105: greedy ids exact, penalised scores within 1e-4), batched == alone, EOS handling, and the
// sampling path (top-k 1 == greedy, seeded reproducibility, chi-square of draws vs softmax, warper semantics,
// num_return_sequences sharing one prefill).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <fstream>
#include <map>
#include <string>

#include "medr1/core/error.h"
#include "medr1/generate/generate.h"
#include "medr1/io/safetensors.h"
#include "medr1/model/weight_loader.h"
#include "medr1/tokenizer/tokenizer.h"
#include "medr1/vision/image_processor.h"

namespace {

using namespace medr1::generate;
const std::string kTiny = std::string(MEDR1_TEST_DATA) + "/qwen2vl-tiny";

struct Kit {
  medr1::model::Qwen2VLForConditionalGeneration model{nullptr};
  std::map<std::string, at::Tensor> g;
  at::Tensor g_(const std::string& k) const {
    auto it = g.find(k);
    if (it == g.end()) throw std::runtime_error("golden missing: " + k);
    return it->second;
  }
};

const Kit& kit() {
  static const Kit k = [] {
    Kit x;
    x.model = medr1::model::load_qwen2_vl(kTiny, at::kFloat);
    x.model->eval();
    x.g = medr1::io::load_safetensors(kTiny + "/goldens.safetensors");
    return x;
  }();
  return k;
}

PromptBatch single_batch() {
  const Kit& k = kit();
  PromptBatch b;
  b.input_ids = k.g_("single.input_ids");
  b.attention_mask = k.g_("single.attention_mask");
  b.pixel_values = k.g_("pre_square.pixel_values");
  b.image_grid_thw = k.g_("single.image_grid_thw");
  return b;
}

PromptBatch two_row_batch() {
  const Kit& k = kit();
  PromptBatch b;
  b.input_ids = k.g_("batch.input_ids");
  b.attention_mask = k.g_("batch.attention_mask");
  b.pixel_values = at::cat({k.g_("pre_square.pixel_values"), k.g_("pre_wide.pixel_values")}, 0);
  b.image_grid_thw = k.g_("batch.image_grid_thw");
  return b;
}

SamplingParams greedy16() {
  SamplingParams p;
  p.max_new_tokens = 16;
  p.eos_token_ids = {151645, 151643};
  p.pad_token_id = 151643;
  return p;
}

at::Tensor mask_of(std::vector<int64_t> v) {
  return at::tensor(v, at::kLong).view({1, -1}).to(at::kBool);
}

GenerationOutput run(const PromptBatch& b, const SamplingParams& p, GenerationTrace* tr = nullptr) {
  auto m = kit().model;
  return generate(m, b, p, tr);
}

TEST(Generate, GreedySingleMatchesGolden) {
  GenerationTrace tr;
  GenerationOutput o = run(single_batch(), greedy16(), &tr);
  EXPECT_TRUE(at::equal(o.new_tokens, kit().g_("gen_single.new_tokens")));
  EXPECT_TRUE(at::equal(o.sequences, kit().g_("gen_single.sequences")));
  EXPECT_EQ(o.lengths[0].item<int64_t>(), 16);
  EXPECT_EQ(o.finish_reasons, std::vector<std::string>{"length"});
  // Step logits on the golden columns within the 1e-4 pass mark; greedy log-probs = max log-softmax.
  const at::Tensor cols = kit().g_("vocab_ids");
  at::Tensor ours = at::stack(tr.step_logits, 1).index_select(2, cols);  // [1, 16, C]
  EXPECT_LE((ours - kit().g_("gen_single.step_logits_cols")).abs().max().item<double>(), 1e-4);
  at::Tensor best = at::stack(tr.step_logits, 1).log_softmax(-1).amax(-1);  // [1, 16]
  EXPECT_LE((o.logprobs - best).abs().max().item<double>(), 1e-5);
}

TEST(Generate, GreedyLeftPaddedBatchMatchesGolden) {
  GenerationOutput o = run(two_row_batch(), greedy16());
  EXPECT_TRUE(at::equal(o.new_tokens, kit().g_("gen_batch.new_tokens")));
  EXPECT_TRUE(at::equal(o.sequences, kit().g_("gen_batch.sequences")));
}

TEST(Generate, UntracedGreedyFastPathEqualsTheProcessorPath) {
  // Without a step trace, greedy generation takes ops::greedy_pick; with one, process_scores + argmax + log_softmax.
  for (const PromptBatch& b : {single_batch(), two_row_batch()}) {
    GenerationTrace tr;
    GenerationOutput traced = run(b, greedy16(), &tr);
    GenerationOutput fast = run(b, greedy16());
    EXPECT_TRUE(at::equal(fast.sequences, traced.sequences));
    EXPECT_TRUE(at::equal(fast.lengths, traced.lengths));
    EXPECT_LE((fast.logprobs - traced.logprobs).abs().max().item<double>(), 1e-5);
  }
}

TEST(Generate, EachBatchRowEqualsSamePromptAlone) {
  const PromptBatch b = two_row_batch();
  GenerationTrace trb;
  GenerationOutput ob = run(b, greedy16(), &trb);
  const int64_t p0 = kit().g_("single.image_grid_thw").prod().item<int64_t>();
  for (int64_t row = 0; row < 2; ++row) {
    at::Tensor keep = b.attention_mask[row].nonzero().squeeze(1);
    PromptBatch a;
    a.input_ids = b.input_ids[row].index_select(0, keep).unsqueeze(0);
    a.attention_mask = at::ones_like(a.input_ids);
    a.image_grid_thw = b.image_grid_thw.narrow(0, row, 1);
    a.pixel_values = row == 0 ? b.pixel_values.narrow(0, 0, p0)
                              : b.pixel_values.narrow(0, p0, b.pixel_values.size(0) - p0);
    GenerationTrace tra;
    GenerationOutput oa = run(a, greedy16(), &tra);
    EXPECT_TRUE(at::equal(oa.new_tokens[0], ob.new_tokens[row])) << "row " << row;
    for (size_t t = 0; t < tra.step_logits.size(); ++t)
      EXPECT_LE((tra.step_logits[t][0] - trb.step_logits[t][row]).abs().max().item<double>(), 1e-4);
  }
}

TEST(Generate, RepetitionPenalty105MatchesGoldenScores) {
  SamplingParams p = greedy16();
  p.repetition_penalty = 1.05;
  GenerationTrace tr;
  GenerationOutput o = run(single_batch(), p, &tr);
  EXPECT_TRUE(at::equal(o.new_tokens, kit().g_("gen_single_rep105.new_tokens")));
  at::Tensor ours = at::stack(tr.step_scores, 1).index_select(2, kit().g_("vocab_ids"));
  const at::Tensor ref = kit().g_("gen_single_rep105.step_scores_cols");
  EXPECT_LE((ours - ref).abs().max().item<double>(), 1e-4);
  // The penalty really changed these scores (prompt tokens are among the columns).
  EXPECT_GT((ref - kit().g_("gen_single_rep105.step_logits_cols")).abs().max().item<double>(), 1e-3);
}

TEST(Generate, EosStopsRowAndPadsWhileOtherRowsContinue) {
  SamplingParams p = greedy16();
  const at::Tensor ref = kit().g_("gen_batch.new_tokens");
  p.eos_token_ids = {ref[0][3].item<int64_t>()};  // row 0 stops after 4 tokens
  GenerationOutput o = run(two_row_batch(), p);
  EXPECT_TRUE(at::equal(o.new_tokens[0].narrow(0, 0, 4), ref[0].narrow(0, 0, 4)));
  EXPECT_TRUE((o.new_tokens[0].narrow(0, 4, 12) == 151643).all().item<bool>());
  EXPECT_TRUE((o.logprobs[0].narrow(0, 4, 12) == 0).all().item<bool>());
  EXPECT_TRUE(at::equal(o.new_tokens[1], ref[1]));  // unaffected by row 0 leaving the cache
  EXPECT_EQ(o.lengths[0].item<int64_t>(), 4);
  EXPECT_EQ(o.lengths[1].item<int64_t>(), 16);
  EXPECT_EQ(o.finish_reasons, (std::vector<std::string>{"eos", "length"}));
}

TEST(Generate, TopK1SamplingEqualsGreedy) {
  SamplingParams p = greedy16();
  p.max_new_tokens = 8;
  p.do_sample = true;
  p.top_k = 1;
  p.temperature = 0.7;
  p.seed = 123;
  GenerationOutput o = run(single_batch(), p);
  EXPECT_TRUE(at::equal(o.new_tokens, kit().g_("gen_single.new_tokens").narrow(1, 0, 8)));
}

TEST(Generate, SameSeedSameTokensOtherSeedDiffers) {
  SamplingParams p = greedy16();
  p.max_new_tokens = 8;
  p.do_sample = true;
  p.top_k = 0;
  p.seed = 7;
  GenerationOutput a = run(two_row_batch(), p), b = run(two_row_batch(), p);
  EXPECT_TRUE(at::equal(a.new_tokens, b.new_tokens));
  EXPECT_TRUE(at::equal(a.logprobs, b.logprobs));
  p.seed = 8;
  GenerationOutput c = run(two_row_batch(), p);
  EXPECT_FALSE(at::equal(a.new_tokens, c.new_tokens));
}

TEST(Generate, NumReturnSequencesSharesThePrefill) {
  SamplingParams p = greedy16();
  p.max_new_tokens = 4;
  p.do_sample = true;
  p.top_k = 0;
  p.num_return_sequences = 3;
  GenerationTrace tr;
  GenerationOutput o = run(two_row_batch(), p, &tr);
  ASSERT_EQ(o.new_tokens.size(0), 6);
  ASSERT_EQ(o.sequences.size(1), 170 + 4);
  // First-step logits of sample r of prompt b == a separate single-sample run's.
  SamplingParams g = greedy16();
  g.max_new_tokens = 1;
  GenerationTrace tr1;
  run(two_row_batch(), g, &tr1);
  for (int64_t row = 0; row < 6; ++row)
    EXPECT_LE((tr.step_logits[0][row] - tr1.step_logits[0][row / 3]).abs().max().item<double>(), 1e-5);
  EXPECT_TRUE(at::equal(o.sequences.narrow(1, 0, 170), kit().g_("batch.input_ids").repeat_interleave(3, 0)));
  // Greedy with R = 3: every sample is the greedy golden.
  g.max_new_tokens = 16;
  g.num_return_sequences = 3;
  GenerationOutput og = run(two_row_batch(), g);
  EXPECT_TRUE(at::equal(og.new_tokens, kit().g_("gen_batch.new_tokens").repeat_interleave(3, 0)));
}

TEST(Generate, ZeroNewTokens) {
  SamplingParams p = greedy16();
  p.max_new_tokens = 0;
  GenerationOutput o = run(single_batch(), p);
  EXPECT_EQ(o.new_tokens.size(1), 0);
  EXPECT_TRUE(at::equal(o.sequences, kit().g_("single.input_ids")));
}

TEST(ProcessScores, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  at::Tensor s = at::tensor({2.0f, -1.0f, 0.5f, 3.0f}).view({1, 4});
  SamplingParams p;
  p.repetition_penalty = 2.0;
  at::Tensor seen = at::tensor({1, 3, 3}, at::kLong).view({1, 3});  // duplicates penalised once
  at::Tensor r = process_scores(s, seen, p);
  EXPECT_TRUE(at::allclose(r, at::tensor({2.0f, -2.0f, 0.5f, 1.5f}).view({1, 4})));
}

TEST(ProcessScores, TemperatureTopKTopPAsTransformers) {
  SamplingParams p;
  p.do_sample = true;
  p.temperature = 2.0;
  p.top_k = 3;
  p.top_p = 1.0;
  at::Tensor s = at::tensor({4.0f, 2.0f, 0.0f, 2.0f, -2.0f}).view({1, 5});
  at::Tensor r = process_scores(s, at::Tensor(), p);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(at::equal(r, at::tensor({2.0f, 1.0f, -inf, 1.0f, -inf}).view({1, 5})));
  // Top-p: probabilities 0.5, 0.25, 0.125, 0.125 -> top_p 0.7 keeps {0.5, 0.25}; 0.75 keeps the same
  // (the 0.25 tail is <= 1 - 0.75 and is removed); 0.8 keeps three (a tie broken by the sort).
  at::Tensor q = at::tensor({0.5, 0.25, 0.125, 0.125}).log().to(at::kFloat).view({1, 4});
  SamplingParams pp;
  pp.do_sample = true;
  pp.top_k = 0;
  pp.top_p = 0.7;
  at::Tensor kept = at::isfinite(process_scores(q, at::Tensor(), pp));
  EXPECT_TRUE(at::equal(kept, mask_of({1, 1, 0, 0})));
  pp.top_p = 0.8;
  EXPECT_EQ(at::isfinite(process_scores(q, at::Tensor(), pp)).sum().item<int64_t>(), 3);
  pp.top_p = 0.01;  // always keeps the most likely token
  EXPECT_TRUE(at::equal(at::isfinite(process_scores(q, at::Tensor(), pp)),
                        mask_of({1, 0, 0, 0})));
  // Greedy ignores the warpers.
  SamplingParams g;
  g.temperature = 0.1;
  g.top_k = 1;
  EXPECT_TRUE(at::equal(process_scores(s, at::Tensor(), g), s));
}

TEST(SelectNextTokens, SampledFrequenciesFollowSoftmaxChiSquare) {
  at::Tensor logits = at::tensor({1.0f, 0.0f, -1.0f, 2.0f, 0.5f, -3.0f});
  const int64_t n = 20000, V = logits.size(0);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(42);
  at::Tensor draws = select_next_tokens(logits.view({1, V}).expand({n, V}).contiguous(), true, gen);
  at::Tensor counts = at::bincount(draws, {}, V).to(at::kDouble);
  at::Tensor expect = logits.to(at::kDouble).softmax(0) * static_cast<double>(n);
  const double chi2 = ((counts - expect).pow(2) / expect).sum().item<double>();
  EXPECT_LT(chi2, 20.52);  // 5 degrees of freedom, p = 0.001
  // A wrong distribution (uniform) is rejected by the same statistic.
  at::Tensor unif = at::full({V}, static_cast<double>(n) / static_cast<double>(V), at::kDouble);
  EXPECT_GT(((counts - unif).pow(2) / unif).sum().item<double>(), 100.0);
  // Greedy picks the argmax.
  EXPECT_EQ(select_next_tokens(logits.view({1, V}), false, gen).item<int64_t>(), 3);
}

TEST(SamplingParams, FromGenerationConfig) {
  medr1::model::GenerationConfig gc = medr1::model::load_generation_config(kTiny);
  SamplingParams p = sampling_from_generation_config(gc);
  EXPECT_EQ(p.eos_token_ids, (std::vector<int64_t>{151645, 151643}));
  EXPECT_EQ(p.pad_token_id, 151643);
  EXPECT_FALSE(p.do_sample);
  gc.repetition_penalty = 1.05;
  gc.max_new_tokens = 7;
  gc.pad_token_id.reset();
  p = sampling_from_generation_config(gc);
  EXPECT_DOUBLE_EQ(p.repetition_penalty, 1.05);
  EXPECT_EQ(p.max_new_tokens, 7);
  EXPECT_EQ(p.pad_token_id, 151645);
}

TEST(BuildPromptBatch, ReproducesGoldenInputIds) {
  const std::string tok_dir = std::string(MEDR1_TEST_DATA) + "/tokenizer/qwen2vl";
  if (!std::ifstream(tok_dir + "/tokenizer.json").good())
    GTEST_SKIP() << "tokenizer fixture missing (run scripts/tokenizer_fixtures.sh)";
  auto tok = medr1::tokenizer::Tokenizer::from_dir(tok_dir);
  std::ifstream f(kTiny + "/goldens.json");
  nlohmann::json gj = nlohmann::json::parse(f);
  medr1::vision::ImageProcessorConfig cfg;
  auto sq = medr1::vision::preprocess_file(kTiny + "/images/img_square.png", cfg);
  auto wd = medr1::vision::preprocess_file(kTiny + "/images/img_wide.png", cfg);
  std::vector<std::string> prompts = gj["cases"]["batch"]["prompts"].get<std::vector<std::string>>();
  PromptBatch b = build_prompt_batch(tok, prompts, {{sq}, {wd}}, 151643);
  EXPECT_TRUE(at::equal(b.input_ids, kit().g_("batch.input_ids")));
  EXPECT_TRUE(at::equal(b.attention_mask, kit().g_("batch.attention_mask")));
  EXPECT_TRUE(at::equal(b.image_grid_thw, kit().g_("batch.image_grid_thw")));
  EXPECT_EQ(b.pixel_values.size(0), 324 + 308);
  EXPECT_THROW(build_prompt_batch(tok, prompts, {{sq}, {}}, 151643), medr1::Error);
}

}  // namespace
