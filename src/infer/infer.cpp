// medr1-infer: Med-R1 prompt file -> batched generation -> resumable JSONL (see infer.h). Mirrors Med-R1's
// src/eval_vqa/test_qwen2*_vqa*.py: chat turn [image, template.format(Question=problem)], processor with
// min_pixels 3136 / max_pixels 401408, model.generate(do_sample=False, max_new_tokens=256) over the checkpoint's
// generation_config, batch_decode(skip_special_tokens=True) of the new tokens, extract_option_answer.
#include "medr1/infer/infer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "medr1/core/device.h"
#include "medr1/core/error.h"
#include "medr1/data/answer.h"
#include "medr1/data/dataset.h"
#include "medr1/data/jsonl_writer.h"
#include "medr1/data/progress.h"
#include "medr1/data/prompts.h"
#include "medr1/generate/generate.h"
#include "medr1/io/output_lock.h"
#include "medr1/model/attention.h"
#include "medr1/model/qwen2_vl_config.h"
#include "medr1/model/weight_loader.h"
#include "medr1/tokenizer/chat_template.h"
#include "medr1/tokenizer/tokenizer.h"
#include "medr1/vision/image_processor.h"

namespace medr1::infer {
namespace fs = std::filesystem;

std::string resolve_tokenizer_dir(const InferOptions& opts) {
  if (!opts.tokenizer_dir.empty()) return opts.tokenizer_dir;
  if (fs::exists(fs::path(opts.model_dir) / "tokenizer.json")) return opts.model_dir;
  const model::Qwen2VLConfig cfg = model::load_qwen2_vl_config(opts.model_dir);
  const char* sub = cfg.version == model::QwenVLVersion::Qwen2_5VL ? "qwen2_5vl" : "qwen2vl";
  fs::path alt = fs::path(opts.model_dir).parent_path() / "tokenizer" / sub;
  if (opts.model_dir.empty() || fs::path(opts.model_dir).filename().empty())
    alt = fs::path(opts.model_dir).parent_path().parent_path() / "tokenizer" / sub;
  MEDR1_CHECK(fs::exists(alt / "tokenizer.json"), "no tokenizer.json in --model ", opts.model_dir, " nor in ",
              alt.string(), " (pass --tokenizer DIR; for the bundled tiny checkpoints run scripts/tokenizer_fixtures.sh)");
  return alt.string();
}

namespace {

at::ScalarType parse_dtype(const std::string& s) {
  if (s == "fp32" || s == "float32") return at::kFloat;
  if (s == "bf16" || s == "bfloat16") return at::kBFloat16;
  fail("--dtype: expected fp32 or bf16, got '", s, "'");
}

at::Device parse_device(const std::string& s) { return resolve_device(s); }

std::string resolve_prompt_template(const InferOptions& o) {
  if (o.template_name == "custom") {
    MEDR1_CHECK(o.custom_template.find(data::kQuestionPlaceholder) != std::string::npos,
                "--custom-template must contain {Question}, got '", o.custom_template, "'");
    return o.custom_template;
  }
  MEDR1_CHECK(o.template_name == "think" || o.template_name == "nothink" || o.template_name == "zeroshot",
              "--template: expected think, nothink, zeroshot or custom, got '", o.template_name, "'");
  return data::resolve_template(o.template_name);
}

struct Item {
  const data::Record* rec;
  std::string prompt;
  vision::ProcessedImage image;
};

nlohmann::json base_line(const data::Record& r) {
  nlohmann::json j;
  j["index"] = r.index;
  j["image"] = r.image;
  j["problem"] = r.problem;
  if (r.solution) j["solution"] = *r.solution;
  return j;
}

}  // namespace

InferSummary run_inference(const InferOptions& o) {
  const auto t_start = std::chrono::steady_clock::now();
  MEDR1_CHECK(o.batch_size >= 1, "--batch-size must be >= 1, got ", o.batch_size);
  MEDR1_CHECK(!o.input.empty() && !o.output.empty(), "--input and --output are required");
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  const at::ScalarType dtype = parse_dtype(o.dtype);
  const at::Device device = parse_device(o.device);
  model::use_attn_implementation(o.attn_implementation, device);
  const std::string tmpl = resolve_prompt_template(o);
  // One writer per output: a second run on the same --output is refused here, naming this one
  // (after the options are checked, so a refused command line leaves no lock file behind).
  const io::OutputLock output_lock = io::lock_output_file(o.output);

  data::LoadOptions lo;
  lo.image_root = o.dataset_root;
  lo.hf_split = "test";  // a `datasets` DatasetDict folder: its test split (else its only one)
  const std::vector<data::Record> records = data::load_records_file(o.input, lo);
  data::JsonlWriter writer(o.output);

  InferSummary sum;
  sum.total = static_cast<int64_t>(records.size());
  std::vector<const data::Record*> pending;
  for (const auto& r : records) {
    if (writer.contains(r.index)) {
      ++sum.skipped;
    } else {
      pending.push_back(&r);
    }
  }

  const model::Qwen2VLConfig cfg = model::load_qwen2_vl_config(o.model_dir);
  auto tok = tokenizer::Tokenizer::from_dir(resolve_tokenizer_dir(o));
  model::GenerationConfig gc;
  if (fs::exists(fs::path(o.model_dir) / "generation_config.json")) gc = model::load_generation_config(o.model_dir);
  generate::SamplingParams params = generate::sampling_from_generation_config(gc);
  if (params.eos_token_ids.empty()) params.eos_token_ids = cfg.eos_token_id;
  if (params.eos_token_ids.empty() && tok.eos_token_id() >= 0) params.eos_token_ids = {tok.eos_token_id()};
  if (!gc.pad_token_id && !gc.eos_token_id.empty()) params.pad_token_id = gc.eos_token_id.front();
  params.max_new_tokens = o.max_new_tokens.value_or(256);
  MEDR1_CHECK(params.max_new_tokens >= 1, "--max-new-tokens must be >= 1, got ", params.max_new_tokens);
  params.do_sample = o.do_sample;
  if (o.temperature) params.temperature = *o.temperature;
  if (o.top_k) params.top_k = *o.top_k;
  if (o.top_p) params.top_p = *o.top_p;
  if (o.repetition_penalty) params.repetition_penalty = *o.repetition_penalty;

  vision::ImageProcessorConfig icfg;
  if (fs::exists(fs::path(o.model_dir) / "preprocessor_config.json"))
    icfg = vision::load_image_processor_config((fs::path(o.model_dir) / "preprocessor_config.json").string());
  icfg.min_pixels = o.min_pixels;
  icfg.max_pixels = o.max_pixels;

  auto model = model::load_qwen2_vl(o.model_dir, dtype);
  model->to(device);
  model->eval();

  data::ProgressOptions po;
  po.initial = sum.skipped;
  if (!o.progress) po.log_interval_s = 1e30;
  data::ProgressBar bar("infer", sum.total, po);
  const int64_t max_pos = cfg.max_position_embeddings;

  auto write_error = [&](const data::Record& r, const std::string& msg) {
    nlohmann::json j = base_line(r);
    j["error"] = msg;
    if (writer.write(j)) {
      ++sum.written;
      ++sum.errors;
    }
    bar.advance();
  };

  for (size_t start = 0; start < pending.size(); start += static_cast<size_t>(o.batch_size)) {
    const size_t end = std::min(pending.size(), start + static_cast<size_t>(o.batch_size));
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<Item> items;
    for (size_t i = start; i < end; ++i) {
      const data::Record& r = *pending[i];
      try {
        // A `datasets` folder embeds the encoded image (Record::image_bytes); JSON records name a file.
        Item it{&r, {},
                r.image_bytes ? vision::preprocess(vision::decode_image_rgb(r.image_bytes->data(), r.image_bytes->size(),
                                                                            r.image),
                                                   icfg, r.image)
                              : vision::preprocess_file(r.image_path, icfg)};
        std::vector<tokenizer::Message> msgs{
            {"user",
             {tokenizer::ContentPart::make_image(),
              tokenizer::ContentPart::make_text(data::format_question(tmpl, r.problem))},
             false}};
        it.prompt = tokenizer::apply_chat_template(msgs, /*add_generation_prompt=*/true);
        const int64_t len = static_cast<int64_t>(tok.encode(it.prompt).size()) - 1 + it.image.num_merged_tokens();
        MEDR1_CHECK(len < max_pos, "prompt of ", len, " tokens does not fit the context (max_position_embeddings ",
                    max_pos, ")");
        items.push_back(std::move(it));
      } catch (const std::exception& e) {
        write_error(r, e.what());
      }
    }
    if (items.empty()) continue;
    std::vector<std::string> texts;
    std::vector<std::vector<vision::ProcessedImage>> images;
    for (const auto& it : items) {
      texts.push_back(it.prompt);
      images.push_back({it.image});
    }
    generate::PromptBatch pb = generate::build_prompt_batch(tok, texts, images, params.pad_token_id);
    generate::SamplingParams p = params;
    p.max_new_tokens = std::min<int64_t>(p.max_new_tokens, max_pos - pb.input_ids.size(1));
    p.seed = params.seed + static_cast<uint64_t>(items.front().rec->index);  // same draws when resumed
    generate::GenerationOutput out = generate::generate(model, pb, p);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (size_t b = 0; b < items.size(); ++b) {
      const data::Record& r = *items[b].rec;
      const int64_t n = out.lengths[static_cast<int64_t>(b)].item<int64_t>();
      at::Tensor row = out.new_tokens[static_cast<int64_t>(b)].narrow(0, 0, n).contiguous();
      std::vector<int32_t> ids(static_cast<size_t>(n));
      for (int64_t k = 0; k < n; ++k) ids[static_cast<size_t>(k)] = static_cast<int32_t>(row[k].item<int64_t>());
      const std::string text = tok.decode(ids, /*skip_special_tokens=*/true);
      nlohmann::json j = base_line(r);
      j["output"] = text;
      const auto ans = data::extract_option_answer(text);
      j["extracted_answer"] = ans ? nlohmann::json(*ans) : nlohmann::json(nullptr);
      j["tokens"] = n;
      j["finish_reason"] = out.finish_reasons[b];
      j["time"] = secs;
      if (writer.write(j)) {
        ++sum.written;
        sum.new_tokens += n;
      }
      bar.advance();
    }
  }
  bar.finish();
  writer.close();
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return sum;
}

}  // namespace medr1::infer
