// Parity harness: runs every case of a parity set (folder with goldens.json + goldens.safetensors, and for model
// cases config.json + model.safetensors) against the goldens made by transformers v4.49.0, and reports per tensor
// the max error vs its pass mark (README of the parity kit: ids/grids/positions exact, pixel_values 1e-6 abs,
// vision activations and hidden states 1e-5 relative (L2), logits 1e-4 abs). Everything
// is derived from the set's files; case kinds: preprocess, preprocess_file, forward, forward_batch; generate cases
// are skipped ("not yet supported"). Used by medr1-parity and by the parity tests.
#pragma once

#include <ATen/core/ScalarType.h>

#include <string>
#include <vector>

namespace medr1::model {

struct ParityOptions {
  std::string set_dir;
  at::ScalarType dtype = at::kFloat;  // bf16: errors are reported, float pass marks are not applied
  std::vector<std::string> only_cases;  // empty = all
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

// Runs the set; never throws for a failing case (the failure is recorded in the case), throws medr1::Error when the
// set itself cannot be read (missing goldens.json, ...).
ParityReport run_parity_set(const ParityOptions& opt);

// Human-readable lines for one case / the whole report.
std::string format_case(const CaseResult& c);
std::string format_report(const ParityReport& r);

}  // namespace medr1::model
