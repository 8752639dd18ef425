// Hooks the generation engine into the model part's parity harness (medr1::model::run_parity_set), which cannot
// depend on the generate part itself: after register_parity_generate() the sets' `generate` cases (gen_single,
// gen_batch, gen_single_rep105) run greedy decoding through medr1::generate::generate and are compared with the
// transformers v4.49.0 goldens instead of being skipped.
#pragma once

namespace medr1::generate {

// Installs the hook (idempotent). Call once before run_parity_set (medr1-parity, test_parity do).
void register_parity_generate();

}  // namespace medr1::generate
