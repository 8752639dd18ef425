// Generation loop mirroring transformers v4.49.0 GenerationMixin._sample for Qwen2-VL / Qwen2.5-VL: one prefill
// (vision tower once per prompt), then one-token decode steps on a KVCache allocated once; decode positions are
// cache_position + rope_deltas (the model does this from the cache) and the attention mask grows by a 1 per step.
// Scores are the float32 last-position logits run through RepetitionPenalty -> Temperature -> TopK -> TopP (the
// warpers only when sampling), then argmax or a multinomial draw. Finished rows are padded with pad_token_id, as
// HF does, but dropped from the cache (KVCache::select_rows) once enough of them finished to make it worthwhile.
#include "medr1/generate/generate.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <tuple>
#include <utility>

#include "medr1/core/error.h"
#include "medr1/model/kv_cache.h"
#include "medr1/ops/greedy.h"

namespace medr1::generate {

SamplingParams sampling_from_generation_config(const model::GenerationConfig& gc) {
  SamplingParams p;
  p.do_sample = gc.do_sample;
  p.temperature = gc.temperature;
  p.top_k = gc.top_k;
  p.top_p = gc.top_p;
  p.repetition_penalty = gc.repetition_penalty;
  if (gc.max_new_tokens) p.max_new_tokens = *gc.max_new_tokens;
  p.eos_token_ids = gc.eos_token_id;
  // transformers: pad_token_id falls back to the first eos id when the config has none.
  if (gc.pad_token_id) {
    p.pad_token_id = *gc.pad_token_id;
  } else if (!gc.eos_token_id.empty()) {
    p.pad_token_id = gc.eos_token_id.front();
  }
  return p;
}

PromptBatch build_prompt_batch(const tokenizer::Tokenizer& tok, const std::vector<std::string>& prompt_texts,
                               const std::vector<std::vector<vision::ProcessedImage>>& images, int64_t pad_id) {
  MEDR1_CHECK(!prompt_texts.empty(), "build_prompt_batch: no prompts");
  MEDR1_CHECK(images.empty() || images.size() == prompt_texts.size(), "build_prompt_batch: ", prompt_texts.size(),
              " prompts but image lists for ", images.size());
  const auto image_pad = tok.token_to_id("<|image_pad|>");
  MEDR1_CHECK(image_pad.has_value(), "build_prompt_batch: the tokenizer has no <|image_pad|> token");
  const int64_t B = static_cast<int64_t>(prompt_texts.size());
  std::vector<std::vector<int64_t>> rows(static_cast<size_t>(B));
  std::vector<at::Tensor> pixels;
  std::vector<int64_t> grids;
  size_t max_len = 0;
  for (size_t b = 0; b < prompt_texts.size(); ++b) {
    const std::vector<int32_t> ids = tok.encode(prompt_texts[b]);
    const size_t n_img = images.empty() ? 0 : images[b].size();
    size_t used = 0;
    auto& row = rows[b];
    row.reserve(ids.size());
    for (int32_t id : ids) {
      if (id != *image_pad) {
        row.push_back(id);
        continue;
      }
      MEDR1_CHECK(used < n_img, "build_prompt_batch: prompt ", b, " has more <|image_pad|> tokens than its ", n_img,
                  " image(s)");
      const vision::ProcessedImage& im = images[b][used++];
      row.insert(row.end(), static_cast<size_t>(im.num_merged_tokens()), static_cast<int64_t>(id));
      pixels.push_back(im.pixel_values);
      grids.insert(grids.end(), im.grid_thw.begin(), im.grid_thw.end());
    }
    MEDR1_CHECK(used == n_img, "build_prompt_batch: prompt ", b, " has ", used, " <|image_pad|> token(s) for ", n_img,
                " image(s)");
    max_len = std::max(max_len, row.size());
  }
  const int64_t S = static_cast<int64_t>(max_len);
  PromptBatch out;
  out.input_ids = at::full({B, S}, pad_id, at::TensorOptions().dtype(at::kLong));
  out.attention_mask = at::zeros({B, S}, at::TensorOptions().dtype(at::kLong));
  auto ids_a = out.input_ids.accessor<int64_t, 2>();
  auto mask_a = out.attention_mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& row = rows[static_cast<size_t>(b)];
    const int64_t off = S - static_cast<int64_t>(row.size());  // left padding
    for (size_t i = 0; i < row.size(); ++i) {
      ids_a[b][off + static_cast<int64_t>(i)] = row[i];
      mask_a[b][off + static_cast<int64_t>(i)] = 1;
    }
  }
  if (!pixels.empty()) {
    out.pixel_values = at::cat(pixels, 0);
    out.image_grid_thw = at::tensor(grids, at::TensorOptions().dtype(at::kLong)).view({-1, 3});
  }
  return out;
}

at::Tensor process_scores(const at::Tensor& scores, const at::Tensor& seen_ids, const SamplingParams& p) {
  MEDR1_CHECK(scores.dim() == 2, "process_scores: scores must be [N, V], got ", scores.sizes());
  at::Tensor s = scores.to(at::kFloat);
  if (p.repetition_penalty != 1.0 && seen_ids.defined() && seen_ids.numel() > 0) {
    MEDR1_CHECK(p.repetition_penalty > 0, "repetition_penalty must be > 0, got ", p.repetition_penalty);
    at::Tensor ids = seen_ids.to(s.device(), at::kLong);               // [N, L]
    at::Tensor g = s.gather(1, ids);                                   // [N, L]
    g = at::where(g < 0, g * p.repetition_penalty, g / p.repetition_penalty);
    s = s.scatter(1, ids, g);
  } else {
    s = s.clone();
  }
  if (!p.do_sample) return s;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  if (p.temperature != 1.0) {
    MEDR1_CHECK(p.temperature > 0, "temperature must be > 0 when sampling, got ", p.temperature);
    s = s / p.temperature;
  }
  if (p.top_k > 0) {
    // TopKLogitsWarper: remove everything below the k-th largest score (ties at the threshold stay).
    const int64_t k = std::min<int64_t>(std::max<int64_t>(p.top_k, 1), s.size(1));
    at::Tensor kth = std::get<0>(s.topk(k, 1)).narrow(1, k - 1, 1);  // [N, 1]
    s = s.masked_fill(s < kth, neg_inf);
  }
  if (p.top_p < 1.0) {
    // TopPLogitsWarper: ascending sort, drop the low tail whose cumulative probability is <= 1 - top_p,
    // always keeping the most likely token.
    auto [sorted, order] = s.sort(1, /*descending=*/false);
    at::Tensor cum = sorted.softmax(1).cumsum(1);
    at::Tensor remove_sorted = cum <= (1.0 - p.top_p);
    remove_sorted.narrow(1, s.size(1) - 1, 1).fill_(false);
    at::Tensor remove = remove_sorted.scatter(1, order, remove_sorted);
    s = s.masked_fill(remove, neg_inf);
  }
  return s;
}

at::Tensor select_next_tokens(const at::Tensor& processed_scores, bool do_sample, at::Generator& gen) {
  if (!do_sample) return processed_scores.argmax(-1);
  at::Tensor probs = processed_scores.to(at::kCPU, at::kFloat).softmax(-1);
  return at::multinomial(probs, 1, /*replacement=*/false, gen).squeeze(1).to(processed_scores.device());
}

GenerationOutput generate(model::Qwen2VLForConditionalGeneration& model, const PromptBatch& batch,
                          const SamplingParams& params) {
  return generate(model, batch, params, nullptr);
}

GenerationOutput generate(model::Qwen2VLForConditionalGeneration& model, const PromptBatch& batch,
                          const SamplingParams& params, GenerationTrace* trace) {
  MEDR1_CHECK(batch.input_ids.defined() && batch.input_ids.dim() == 2, "generate: input_ids must be [B, S]");
  MEDR1_CHECK(params.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, got ", params.max_new_tokens);
  MEDR1_CHECK(params.num_return_sequences >= 1, "generate: num_return_sequences must be >= 1, got ",
              params.num_return_sequences);
  at::NoGradGuard no_grad;
  const at::Device dev = model->model->embed_tokens->weight.device();
  const int64_t B = batch.input_ids.size(0), S = batch.input_ids.size(1);
  const int64_t R = params.num_return_sequences, N = B * R, T = params.max_new_tokens;
  const auto lopt = at::TensorOptions().dtype(at::kLong);

  at::Tensor input_ids = batch.input_ids.to(at::kLong);
  at::Tensor mask = batch.attention_mask.defined() ? batch.attention_mask.to(at::kLong) : at::ones({B, S}, lopt);
  MEDR1_CHECK(mask.sizes() == input_ids.sizes(), "generate: attention_mask ", mask.sizes(), " vs input_ids ",
              input_ids.sizes());

  GenerationOutput out;
  out.sequences = at::full({N, S + T}, params.pad_token_id, lopt);
  out.sequences.narrow(1, 0, S).copy_(R > 1 ? input_ids.repeat_interleave(R, 0) : input_ids);
  out.new_tokens = at::full({N, T}, params.pad_token_id, lopt);
  out.logprobs = at::zeros({N, T}, at::TensorOptions().dtype(at::kFloat));
  out.lengths = at::zeros({N}, lopt);
  out.finish_reasons.assign(static_cast<size_t>(N), "length");
  if (T == 0) return out;

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(params.seed);
  at::Tensor eos = at::tensor(params.eos_token_ids.empty() ? std::vector<int64_t>{} : params.eos_token_ids, lopt);

  // Mask of every row over the whole run [N, S+T]: ones past the prompt (a row's mask only matters while it runs).
  at::Tensor mask_full = at::ones({N, S + T}, lopt);
  mask_full.narrow(1, 0, S).copy_(R > 1 ? mask.repeat_interleave(R, 0) : mask);

  model::KVCache cache = model::KVCache::for_config(model->config(), B, S + T, model->dtype(), dev);
  model::Qwen2VLInputs in;
  in.input_ids = input_ids.to(dev);
  in.attention_mask = mask.to(dev);
  if (batch.pixel_values.defined()) {
    in.pixel_values = batch.pixel_values.to(dev);
    in.image_grid_thw = batch.image_grid_thw;
  }
  in.cache = &cache;
  in.logits_from = -1;
  using Clock = std::chrono::steady_clock;
  auto t_prefill = Clock::now();
  at::Tensor logits = model->forward(in).logits.select(1, 0);  // [B, V] model dtype
  auto t_decode = Clock::now();
  if (trace) trace->prefill_s = std::chrono::duration<double>(t_decode - t_prefill).count();
  if (R > 1) {
    // One prefill per prompt; its cache rows, rope_deltas and logits are shared by the R samples.
    at::Tensor rep = at::arange(B, lopt).repeat_interleave(R);
    cache.select_rows(rep.to(dev));
    logits = logits.index_select(0, rep.to(logits.device()));
  }

  at::Tensor cache_rows = at::arange(N, lopt);       // row (in N space) held by each cache row
  std::vector<char> finished(static_cast<size_t>(N), 0);
  int64_t n_finished = 0;
  auto new_acc_len = out.lengths.accessor<int64_t, 1>();

  for (int64_t t = 0;; ++t) {
    // logits: [n_c, V] float32 for the cache rows; only unfinished rows are processed.
    std::vector<int64_t> local, global;
    {
      auto cr = cache_rows.accessor<int64_t, 1>();
      for (int64_t i = 0; i < cache_rows.size(0); ++i) {
        if (!finished[static_cast<size_t>(cr[i])]) {
          local.push_back(i);
          global.push_back(cr[i]);
        }
      }
    }
    at::Tensor local_t = at::tensor(local, lopt), global_t = at::tensor(global, lopt);
    at::Tensor raw = local.size() == static_cast<size_t>(cache_rows.size(0))
                         ? logits
                         : logits.index_select(0, local_t.to(logits.device()));               // [n, V]
    at::Tensor next, lp;                                                                       // [n], [n]
    const bool keep_steps = trace && trace->keep_steps;
    if (!params.do_sample && params.repetition_penalty == 1.0 && !keep_steps &&
        (raw.scalar_type() == at::kFloat || raw.scalar_type() == at::kBFloat16) && raw.device().is_cpu()) {
      std::tie(next, lp) = ops::greedy_pick(raw);  // scores are the raw logits: one fused pass
    } else {
      raw = raw.to(at::kFloat);
      at::Tensor seen = out.sequences.index_select(0, global_t).narrow(1, 0, S + t);  // [n, S+t]
      at::Tensor scores = process_scores(raw, seen.to(raw.device()), params);
      next = select_next_tokens(scores, params.do_sample, gen).to(at::kCPU, at::kLong);
      lp = raw.log_softmax(-1).gather(1, next.to(raw.device()).view({-1, 1})).squeeze(1).to(at::kCPU);
      if (keep_steps) {
        at::Tensor full = at::zeros({N, scores.size(1)}, at::TensorOptions().dtype(at::kFloat));
        full.index_copy_(0, global_t, scores.to(at::kCPU));
        trace->step_scores.push_back(full);
        at::Tensor full_raw = at::zeros({N, raw.size(1)}, at::TensorOptions().dtype(at::kFloat));
        full_raw.index_copy_(0, global_t, raw.to(at::kCPU));
        trace->step_logits.push_back(full_raw);
      }
    }
    out.new_tokens.select(1, t).index_copy_(0, global_t, next);
    out.sequences.select(1, S + t).index_copy_(0, global_t, next);
    out.logprobs.select(1, t).index_copy_(0, global_t, lp.to(at::kFloat));
    at::Tensor hit = eos.numel() > 0 ? at::isin(next, eos) : at::zeros_like(next, at::TensorOptions().dtype(at::kBool));
    auto hit_a = hit.accessor<bool, 1>();
    for (size_t i = 0; i < global.size(); ++i) {
      const int64_t g = global[i];
      new_acc_len[g] = t + 1;
      if (hit_a[static_cast<int64_t>(i)]) {
        finished[static_cast<size_t>(g)] = 1;
        out.finish_reasons[static_cast<size_t>(g)] = "eos";
        ++n_finished;
      }
    }
    if (n_finished == N || t + 1 == T) {
      if (trace) trace->decode_s = std::chrono::duration<double>(Clock::now() - t_decode).count();
      break;
    }

    // Drop finished rows from the cache once they are a quarter of it (the copy then pays for itself).
    const int64_t n_c = cache_rows.size(0);
    int64_t done_in_cache = 0;
    {
      auto cr = cache_rows.accessor<int64_t, 1>();
      for (int64_t i = 0; i < n_c; ++i) done_in_cache += finished[static_cast<size_t>(cr[i])];
    }
    if (done_in_cache > 0 && done_in_cache * 4 >= n_c) {
      at::Tensor keep_local;
      {
        std::vector<int64_t> keep;
        auto cr = cache_rows.accessor<int64_t, 1>();
        for (int64_t i = 0; i < n_c; ++i)
          if (!finished[static_cast<size_t>(cr[i])]) keep.push_back(i);
        keep_local = at::tensor(keep, lopt);
      }
      cache.select_rows(keep_local.to(dev));
      cache_rows = cache_rows.index_select(0, keep_local);
    }
    // Next step: the token just chosen for running rows, pad for finished ones (as HF feeds them).
    at::Tensor step_ids = out.sequences.index_select(0, cache_rows).narrow(1, S + t, 1);  // [n_c, 1]
    model::Qwen2VLInputs dec;
    dec.input_ids = step_ids.to(dev);
    dec.attention_mask = mask_full.index_select(0, cache_rows).narrow(1, 0, S + t + 1).to(dev);
    dec.cache = &cache;
    dec.logits_from = -1;
    logits = model->forward(dec).logits.select(1, 0);  // [n_c, V] model dtype
  }
  return out;
}

}  // namespace medr1::generate
