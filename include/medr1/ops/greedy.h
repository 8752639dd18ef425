// The greedy step of generation as one kernel: what generate/ runs when no logits processor is in play (no
// sampling, repetition_penalty 1, no trace of the steps). Backends: src/ops/greedy.cpp (portable) and
// greedy_avx2.cpp (the sum of exponentials), chosen by ops/cpu_features.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <utility>

namespace medr1::ops {

// Per row of raw logits [N, V] (float32 or bfloat16, any device) the first index of the largest value (NaN
// counting as largest, as argmax) and its log-softmax, in one pass over the row in its own dtype.
// -> {next [N] int64, logprob [N] float32}, on the CPU. Other shapes or dtypes throw medr1::Error.
std::pair<at::Tensor, at::Tensor> greedy_pick(const at::Tensor& raw_logits);

}  // namespace medr1::ops
