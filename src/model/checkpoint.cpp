// Activation checkpointing (checkpoint.h): a custom autograd Function whose forward runs the block under no
// grad saving only its input, and whose backward recomputes the block with grad on and calls
// torch::autograd::grad -- torch.utils.checkpoint(use_reentrant=True) semantics, parameters as explicit inputs.
#include "medr1/model/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <utility>
#include <vector>

#include "medr1/core/error.h"

namespace medr1::model {

namespace {

// The block function and its parameters live in the autograd context until backward (an IValue capsule owns
// them).
struct FnHolder : torch::CustomClassHolder {
  FnHolder(CheckpointFn f, std::vector<at::Tensor> p) : fn(std::move(f)), params(std::move(p)) {}
  CheckpointFn fn;
  std::vector<at::Tensor> params;  // the block's parameters that require grad, in `params` input order
};

struct CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
  // x: the block input; params: the block's parameters that require grad (inputs only so that their
  // gradients have edges); holder: the block function.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, at::TensorList params,
                            c10::intrusive_ptr<FnHolder> holder) {
    ctx->saved_data["n_params"] = static_cast<int64_t>(params.size());
    ctx->saved_data["fn"] = at::IValue::make_capsule(holder);
    ctx->save_for_backward({x});
    // Function::apply runs forward with grad mode off already: no graph, no saved activations.
    at::Tensor out = holder->fn(x);
    MEDR1_CHECK(out.defined(), "checkpoint: the block returned an undefined tensor");
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const int64_t n_params = ctx->saved_data["n_params"].toInt();
    auto holder = c10::static_intrusive_pointer_cast<FnHolder>(ctx->saved_data["fn"].toCapsule());
    at::Tensor x = ctx->get_saved_variables()[0];
    // Output slots: x, each parameter, the holder (not a variable: must stay undefined).
    torch::autograd::variable_list result(static_cast<size_t>(n_params) + 2);
    std::vector<size_t> slots;
    std::vector<at::Tensor> wrt;
    at::Tensor xd = x.detach();
    if (ctx->needs_input_grad(0)) {
      xd.set_requires_grad(true);
      slots.push_back(0);
      wrt.push_back(xd);
    }
    const std::vector<at::Tensor>& params = holder->params;
    for (int64_t i = 0; i < n_params; ++i) {
      if (!ctx->needs_input_grad(static_cast<size_t>(i) + 1)) continue;
      slots.push_back(static_cast<size_t>(i) + 1);
      wrt.push_back(params[static_cast<size_t>(i)]);
    }
    if (wrt.empty()) return result;
    at::Tensor out;
    {
      at::AutoGradMode enable(true);
      out = holder->fn(xd);
    }
    MEDR1_CHECK(out.sizes() == grad_out[0].sizes(), "checkpoint: the recomputed block output has shape ",
                out.sizes(), ", the forward's had ", grad_out[0].sizes(), " (non-deterministic block?)");
    if (!out.requires_grad()) return result;  // nothing in the block depends on x or the parameters
    torch::autograd::variable_list grads =
        torch::autograd::grad({out}, wrt, {grad_out[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                              /*allow_unused=*/true);
    for (size_t k = 0; k < slots.size(); ++k) result[slots[k]] = grads[k];
    return result;
  }
};

}  // namespace

bool checkpoint_applies(const torch::nn::Module& block) {
  return block.is_training() && at::GradMode::is_enabled();
}

const char* checkpoint_node_name() { return "CheckpointFunction"; }

at::Tensor checkpoint(const torch::nn::Module& block, CheckpointFn fn, const at::Tensor& x) {
  if (!checkpoint_applies(block)) return fn(x);
  std::vector<at::Tensor> params;
  for (const at::Tensor& p : block.parameters(/*recurse=*/true))
    if (p.requires_grad()) params.push_back(p);
  if (params.empty() && !x.requires_grad()) return fn(x);
  auto holder = c10::make_intrusive<FnHolder>(std::move(fn), params);
  return CheckpointFunction::apply(x, at::TensorList(params), holder);
}

}  // namespace medr1::model
