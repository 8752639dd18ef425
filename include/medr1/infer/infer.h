// medr1-infer's job (the infer part, above generate/ and data/): batched generation over a Med-R1 prompt file
// (JSON array or JSONL of {"image", "problem", "solution"?}), the way Med-R1's src/eval_vqa/test_qwen2*_vqa*.py
// run it: one user turn [image, question formatted with the eval template], no system message (the chat template's
// default applies), generate(do_sample=False, max_new_tokens=256) on top of the checkpoint's generation_config.json
// (so greedy keeps its repetition_penalty), answers extracted with <answer>\s*(\w+)\s*</answer>. Output: resumable
// JSONL.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace medr1::infer {

struct InferOptions {
  std::string input;                 // prompt file (JSON array or JSONL)
  std::string output;                // JSONL, resumed when it exists
  std::string dataset_root;          // image paths are relative to it ("" = as written)
  std::string model_dir;             // HF folder (config.json, weights, generation_config.json)
  std::string tokenizer_dir;         // "" = model_dir, else the tests/data layout next to it (see resolve)
  std::string template_name = "think";  // think | nothink | zeroshot | custom
  std::string custom_template;       // with template "custom": must hold {Question}
  int64_t batch_size = 8;
  std::optional<int64_t> max_new_tokens;  // default 256 (Med-R1)
  int64_t max_pixels = 401408;       // Med-R1
  int64_t min_pixels = 3136;
  std::string dtype = "fp32";        // fp32 | bf16
  std::string device = "cpu";        // cpu | cuda[:N] (only with MEDR1_CUDA)
  std::string attn_implementation = "auto";  // auto | eager | sdpa | flash_attention_2 (model/attention.h)
  int threads = 0;                   // 0 = hardware cores
  // Sampling: a flag left unset keeps generation_config.json's value (as transformers merges kwargs).
  bool do_sample = false;
  std::optional<double> temperature, top_p, repetition_penalty;
  std::optional<int64_t> top_k;
  uint64_t seed = 0;
  bool progress = true;
};

struct InferSummary {
  int64_t total = 0;      // records in the input
  int64_t skipped = 0;    // already in the output (resume)
  int64_t written = 0;    // lines written by this run (including error lines)
  int64_t errors = 0;     // of which error lines
  int64_t new_tokens = 0;
  double seconds = 0;
};

// The tokenizer folder to use: opts.tokenizer_dir if set; else model_dir when it holds tokenizer.json; else
// <model_dir>/../tokenizer/<qwen2vl|qwen2_5vl> (the tests/data layout of the bundled tiny checkpoints).
std::string resolve_tokenizer_dir(const InferOptions& opts);

// Runs the whole file. Per-item failures (missing/corrupt image, prompt longer than max_position_embeddings)
// become lines with an "error" field; setup failures (model, tokenizer, input file, options) throw medr1::Error.
InferSummary run_inference(const InferOptions& opts);

}  // namespace medr1::infer
