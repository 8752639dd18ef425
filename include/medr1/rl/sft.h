// Supervised warm-up (Med-R1's SFT baseline, open_r1/sft.py): token cross-entropy on the target tokens
// (solution + EOS) given the prompt, averaged over the micro-batch's target tokens. N = rows, T = tokens.
#pragma once

#include <ATen/core/Tensor.h>

namespace medr1::rl {

// logps [N, T] (selective_log_softmax of the aligned logits), mask [N, T] 0/1 -> scalar mean NLL.
at::Tensor sft_loss(const at::Tensor& per_token_logps, const at::Tensor& mask);

}  // namespace medr1::rl
