// Activation (gradient) checkpointing for one block, the C++ counterpart of torch.utils.checkpoint (reentrant
// variant, as HF's gradient_checkpointing_enable uses per decoder layer / vision block): the forward runs the
// block without building a graph and keeps only its input; the backward re-runs the block with grad enabled
// on the detached input and differentiates that graph w.r.t. the input and the block's parameters. Trades one
// extra block forward in backward for not holding the block's intermediate activations.
// RNG: no RNG state is saved or restored -- the Qwen2-VL blocks have no dropout (attention_dropout 0, no
// stochastic op), so the recompute is deterministic. Blocks must not mutate state (no KV cache).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <functional>

namespace medr1::model {

// The block as a function of its one differentiable input; everything else it needs (position embeddings
// cos/sin, masks, segment lengths) is captured by value and treated as constants (no gradient flows to them).
using CheckpointFn = std::function<at::Tensor(const at::Tensor&)>;

// True when `block` is training and grad mode is on: the only case where checkpointing changes anything.
bool checkpoint_applies(const torch::nn::Module& block);

// fn(x) with checkpointing: the result's grad_fn is a "CheckpointFunction" node whose backward recomputes
// fn and returns the gradients of x and of block.parameters() (those that require grad); parameter grads are
// accumulated by the ordinary AccumulateGrad nodes, so tensor hooks on parameters (DDP grad sync) see them.
// Falls back to a plain fn(x) when !checkpoint_applies(block) or nothing requires grad.
at::Tensor checkpoint(const torch::nn::Module& block, CheckpointFn fn, const at::Tensor& x);

// Name of the autograd node checkpoint() puts on its output (tests).
const char* checkpoint_node_name();

}  // namespace medr1::model
