// Parity harness: runs every case of a parity set (folder with goldens.json + goldens.safetensors, and for model
// cases config.json + model.safetensors) against the goldens made by transformers v4.49.0, and reports per tensor
// the max error vs its pass mark (README of the parity kit: ids/grids/positions exact, pixel_values 1e-6 abs,
// vision activations and hidden states 1e-5 relative (L2), logits 1e-4 abs). Everything
// is derived from the set's files; case kinds: preprocess, preprocess_file, forward, forward_batch, generate.
// The model part cannot run generation (the generate part depends on it), so generate cases go through a hook
// that the generate part installs (medr1::generate::register_parity_generate()); without it they are skipped.
// Used by medr1-parity and by the parity tests.
#pragma once

#include <ATen/core/ScalarType.h>
#include <c10/core/Device.h>

#include "medr1/model/attention.h"

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "medr1/model/qwen2_vl.h"

namespace medr1::model {

struct ParityOptions {
  std::string set_dir;
  at::ScalarType dtype = at::kFloat;  // bf16: errors are reported, float pass marks are not applied
  std::vector<std::string> only_cases;  // empty = all
  // Where the model runs (cuda: MEDR1_CUDA builds). Preprocessing, image_grid_thw and every comparison stay on
  // the CPU; the same goldens and pass marks apply, so a cuda run that passes agrees with the CPU one.
  at::Device device = at::kCPU;
  // Attention math for the run: transformers' eager (what the goldens were made with) unless asked otherwise; the
  // process-wide setting (model/attention.h) is restored afterwards.
  AttnImplementation attn = AttnImplementation::Eager;
};

struct TensorCheck {
  std::string name;      // e.g. "logits_cols"
  double error = 0;      // max abs error (or relative, see `relative`), or count of mismatches for exact checks
  double pass_mark = 0;  // error must be <= pass_mark
  bool relative = false; // error = ||ours - ref||_2 / ||ref||_2 (note holds max|ours - ref| / max|ref|)
  bool exact = false;    // integer / id quantities
  bool applies = true;   // false: reported only (bf16 float checks)
  bool pass = true;
  std::string note;
};

enum class CaseStatus { Passed, Failed, Skipped };

struct CaseResult {
  std::string name, kind;
  CaseStatus status = CaseStatus::Passed;
  std::string message;  // error text or skip reason
  std::vector<TensorCheck> checks;
};

struct ParityReport {
  std::string set_dir;
  std::vector<CaseResult> cases;
  int count(CaseStatus s) const;
  bool ok() const { return count(CaseStatus::Failed) == 0; }
};

// One greedy generation asked of the hook: the prompt of the case named by the generate case's "inputs"
// (left-padded, images preprocessed as the forward cases get them) and the decoding settings.
struct ParityGenerateRequest {
  at::Tensor input_ids;       // [B, S] int64
  at::Tensor attention_mask;  // [B, S] int64
  at::Tensor pixel_values;    // [sumP, 1176] or undefined
  at::Tensor image_grid_thw;  // [N, 3] int64 or undefined
  int64_t max_new_tokens = 16;
  double repetition_penalty = 1.0;
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = 151643;
};

struct ParityGenerateResult {
  at::Tensor new_tokens;   // [B, T] int64
  at::Tensor sequences;    // [B, S+T] int64
  at::Tensor step_logits;  // [B, T, V] float32 raw logits of each step
  at::Tensor step_scores;  // [B, T, V] float32 processed (penalised) scores of each step
};

using ParityGenerateFn =
    std::function<ParityGenerateResult(Qwen2VLForConditionalGeneration& model, const ParityGenerateRequest& req)>;

// Installs (or, with an empty function, removes) the generation hook used for `generate` cases.
void set_parity_generate_hook(ParityGenerateFn fn);
bool has_parity_generate_hook();

// Runs the set; never throws for a failing case (the failure is recorded in the case), throws medr1::Error when the
// set itself cannot be read (missing goldens.json, ...).
ParityReport run_parity_set(const ParityOptions& opt);

// Human-readable lines for one case / the whole report.
std::string format_case(const CaseResult& c);
std::string format_report(const ParityReport& r);

}  // namespace medr1::model
