// Generation hook of the parity harness: greedy decoding as transformers' generate(do_sample=False) runs it for the
// goldens (repetition penalty applied when asked, EOS/pad from the set), with the per-step raw logits and
// penalised scores kept for the comparison.
#include "medr1/generate/parity_generate.h"

#include <ATen/ATen.h>

#include "medr1/generate/generate.h"
#include "medr1/model/parity.h"

namespace medr1::generate {

void register_parity_generate() {
  model::set_parity_generate_hook([](model::Qwen2VLForConditionalGeneration& m,
                                     const model::ParityGenerateRequest& req) {
    PromptBatch b;
    b.input_ids = req.input_ids;
    b.attention_mask = req.attention_mask;
    b.pixel_values = req.pixel_values;
    b.image_grid_thw = req.image_grid_thw;
    SamplingParams p;
    p.do_sample = false;
    p.max_new_tokens = req.max_new_tokens;
    p.repetition_penalty = req.repetition_penalty;
    p.eos_token_ids = req.eos_token_ids;
    p.pad_token_id = req.pad_token_id;
    GenerationTrace tr;
    GenerationOutput o = generate(m, b, p, &tr);
    model::ParityGenerateResult r;
    r.new_tokens = o.new_tokens;
    r.sequences = o.sequences;
    if (!tr.step_logits.empty()) {
      r.step_logits = at::stack(tr.step_logits, 1);  // [B, T, V]
      r.step_scores = at::stack(tr.step_scores, 1);  // [B, T, V]
    }
    return r;
  });
}

}  // namespace medr1::generate
