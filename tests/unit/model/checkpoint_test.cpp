// Activation checkpointing (checkpoint.h) on the tiny Qwen2-VL checkpoint: with it on, the loss and every
// parameter gradient equal the plain run's; the layer / block outputs hang off the checkpoint node; the
// forward keeps fewer autograd nodes and fewer live bytes until backward; eval mode, no-grad mode and KV-cache
// forwards bypass it. Plus the bare function: input and parameter grads of a block with constant extras.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>
#include <torch/nn/modules/linear.h>

#include <cstdio>
#include <memory>
#include <string>
#include <unordered_set>

#include "medr1/io/safetensors.h"
#include "medr1/model/checkpoint.h"
#include "medr1/model/qwen2_vl.h"
#include "medr1/model/weight_loader.h"

namespace {

using namespace medr1::model;

const std::string kTiny = std::string(MEDR1_TEST_DATA) + "/qwen2vl-tiny";

// The goldens' left-padded two-image batch (two prompts of different lengths): 2 x S rows > the streaming
// linear's 16-row limit, so the no-grad forward of a checkpointed block runs the same GEMMs as the recompute.
Qwen2VLInputs golden_batch() {
  auto gold = medr1::io::SafetensorsFile::open(kTiny + "/goldens.safetensors");
  Qwen2VLInputs in;
  in.input_ids = gold->tensor("batch.input_ids").clone();
  in.attention_mask = gold->tensor("batch.attention_mask").clone();
  in.pixel_values =
      at::cat({gold->tensor("pre_square.pixel_values"), gold->tensor("pre_wide.pixel_values")}, 0).clone();
  in.image_grid_thw = gold->tensor("batch.image_grid_thw").clone();
  return in;
}

// Next-token cross-entropy over the real (unpadded) positions: touches every parameter (tied lm_head).
at::Tensor lm_loss(Qwen2VLForConditionalGeneration& m, const Qwen2VLInputs& in) {
  Qwen2VLOutput o = m->forward(in);
  const int64_t S = in.input_ids.size(1);
  at::Tensor logp = o.logits.narrow(1, 0, S - 1).log_softmax(-1);                   // [B, S-1, V]
  at::Tensor tgt = in.input_ids.narrow(1, 1, S - 1);                                // [B, S-1]
  at::Tensor nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1);                 // [B, S-1]
  at::Tensor w = in.attention_mask.narrow(1, 1, S - 1).to(at::kFloat);
  return (nll * w).sum() / w.sum();
}

size_t count_graph_nodes(const at::Tensor& t) {
  std::unordered_set<torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> stack;
  if (t.grad_fn()) stack.push_back(t.grad_fn().get());
  while (!stack.empty()) {
    torch::autograd::Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    for (const auto& e : n->next_edges())
      if (e.function) stack.push_back(e.function.get());
  }
  return seen.size();
}

// Live CPU bytes through c10's memory-profiling hook (the default CPU allocator reports every allocation and
// free while a reporter with memoryProfilingEnabled() is installed on this thread). The totals' parameter type
// differs between LibTorch versions, so it is taken from the base class's own signature.
template <class>
struct ReportSig;
template <class C, class R, class A0, class A1, class A2, class A3, class A4>
struct ReportSig<R (C::*)(A0, A1, A2, A3, A4)> {
  using Total = A2;
};
using ReportTotal = ReportSig<decltype(&c10::MemoryReportingInfoBase::reportMemoryUsage)>::Total;

struct LiveBytes : c10::MemoryReportingInfoBase {
  int64_t live = 0, peak = 0;
  void reportMemoryUsage(void*, int64_t alloc_size, ReportTotal, ReportTotal, c10::Device) override {
    live += alloc_size;
    peak = std::max(peak, live);
  }
  bool memoryProfilingEnabled() const override { return true; }
};

TEST(GradientCheckpointing, LossAndEveryGradientEqualThePlainRun) {
  auto model = load_qwen2_vl(kTiny);
  model->train();
  const Qwen2VLInputs in = golden_batch();
  ASSERT_GT(in.input_ids.numel(), 16);

  at::Tensor loss_plain = lm_loss(model, in);
  loss_plain.backward();
  std::vector<std::pair<std::string, at::Tensor>> plain;
  for (auto& kv : model->named_parameters()) {
    ASSERT_TRUE(kv.value().grad().defined()) << kv.key();
    plain.emplace_back(kv.key(), kv.value().grad().clone());
    kv.value().mutable_grad() = at::Tensor();
  }

  model->set_gradient_checkpointing(true);
  Qwen2VLInputs in_h = in;
  in_h.output_hidden_states = true;
  Qwen2VisionDebug dbg;
  {  // the layer / block outputs are the checkpoint node's outputs
    Qwen2VLOutput o = model->forward(in_h);
    ASSERT_EQ(o.hidden_states.size(), 3u);
    for (size_t l = 1; l < o.hidden_states.size() - 1; ++l) {
      ASSERT_TRUE(o.hidden_states[l].grad_fn());
      EXPECT_NE(o.hidden_states[l].grad_fn()->name().find(checkpoint_node_name()), std::string::npos)
          << "layer " << l - 1 << ": " << o.hidden_states[l].grad_fn()->name();
    }
    model->get_image_features(in.pixel_values, in.image_grid_thw, &dbg);
    ASSERT_EQ(dbg.block_outputs.size(), 2u);
    for (const auto& b : dbg.block_outputs)
      EXPECT_NE(b.grad_fn()->name().find(checkpoint_node_name()), std::string::npos) << b.grad_fn()->name();
  }
  at::Tensor loss_ckpt = lm_loss(model, in);
  loss_ckpt.backward();
  const double dl = std::abs(loss_ckpt.item<double>() - loss_plain.item<double>());
  EXPECT_LE(dl, 1e-6 * std::abs(loss_plain.item<double>()));
  double worst = 0;
  std::string worst_name;
  for (auto& [name, g] : plain) {
    at::Tensor gc = model->named_parameters()[name].grad();
    ASSERT_TRUE(gc.defined()) << name;
    const double rel = (gc - g).abs().max().item<double>() / std::max(g.abs().max().item<double>(), 1e-30);
    if (rel > worst) worst = rel, worst_name = name;
    EXPECT_LE(rel, 1e-6) << name;
  }
  std::printf("gradient checkpointing: |dloss| = %.3g (loss %.6f), worst relative grad diff %.3g (%s) over %zu "
              "tensors\n",
              dl, loss_plain.item<double>(), worst, worst_name.c_str(), plain.size());
}

TEST(GradientCheckpointing, ForwardKeepsFewerNodesAndBytesUntilBackward) {
  auto model = load_qwen2_vl(kTiny);
  model->train();
  Qwen2VLInputs in = golden_batch();
  in.compute_logits = false;  // the vocab-wide logits are outside the blocks; measure the blocks' activations
  auto measure = [&](bool on, size_t& nodes, int64_t& kept, int64_t& peak) {
    model->set_gradient_checkpointing(on);
    model->zero_grad();
    auto rep = std::make_shared<LiveBytes>();
    {
      c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, rep);
      at::Tensor loss = model->forward(in).last_hidden_state.pow(2).mean();
      nodes = count_graph_nodes(loss);
      kept = rep->live;  // what the graph holds between forward and backward
      loss.backward();
      peak = rep->peak;
    }
  };
  size_t n_plain = 0, n_ckpt = 0;
  int64_t kept_plain = 0, kept_ckpt = 0, peak_plain = 0, peak_ckpt = 0;
  measure(false, n_plain, kept_plain, peak_plain);
  measure(true, n_ckpt, kept_ckpt, peak_ckpt);
  std::printf("gradient checkpointing: graph nodes %zu -> %zu, bytes kept after forward %lld -> %lld (%.2fx), "
              "peak %lld -> %lld\n",
              n_plain, n_ckpt, static_cast<long long>(kept_plain), static_cast<long long>(kept_ckpt),
              static_cast<double>(kept_plain) / static_cast<double>(std::max<int64_t>(kept_ckpt, 1)),
              static_cast<long long>(peak_plain), static_cast<long long>(peak_ckpt));
  EXPECT_LT(n_ckpt * 3, n_plain);
  EXPECT_GT(kept_plain, 0);
  EXPECT_LT(kept_ckpt * 2, kept_plain);
}

TEST(GradientCheckpointing, BypassedInEvalNoGradAndWithCache) {
  auto model = load_qwen2_vl(kTiny);
  model->set_gradient_checkpointing(true);
  Qwen2VLInputs in = golden_batch();
  in.output_hidden_states = true;
  in.compute_logits = false;
  auto is_ckpt = [](const at::Tensor& t) {
    return t.grad_fn() && t.grad_fn()->name().find(checkpoint_node_name()) != std::string::npos;
  };
  model->eval();
  EXPECT_FALSE(is_ckpt(model->forward(in).hidden_states[1]));  // eval: plain graph
  model->train();
  EXPECT_TRUE(is_ckpt(model->forward(in).hidden_states[1]));
  {
    at::NoGradGuard ng;
    EXPECT_FALSE(model->forward(in).hidden_states[1].grad_fn());  // no grad: no graph at all
  }
  KVCache cache = KVCache::for_config(model->config(), in.input_ids.size(0), in.input_ids.size(1) + 1, at::kFloat);
  in.cache = &cache;
  EXPECT_FALSE(is_ckpt(model->forward(in).hidden_states[1]));  // the cache update must not run twice
  EXPECT_EQ(cache.length(), in.input_ids.size(1));
}

// The bare function: y = W2 silu(W1 x + c) with a constant c; x and the parameters get the plain grads.
TEST(GradientCheckpointing, FunctionGivesInputAndParameterGrads) {
  at::manual_seed(3);
  auto block = std::make_shared<torch::nn::Module>("Block");
  auto l1 = block->register_module("l1", torch::nn::Linear(8, 16));
  auto l2 = block->register_module("l2", torch::nn::Linear(16, 8));
  const at::Tensor c = at::randn({16});
  auto fn = [l1, l2, c](const at::Tensor& x) mutable { return l2->forward(at::silu(l1->forward(x) + c)); };
  const at::Tensor x0 = at::randn({20, 8});
  auto run = [&](bool ckpt) {
    block->zero_grad();
    at::Tensor x = x0.clone().requires_grad_(true);
    at::Tensor y = ckpt ? checkpoint(*block, fn, x) : fn(x);
    if (ckpt) {
      EXPECT_NE(y.grad_fn()->name().find(checkpoint_node_name()), std::string::npos);
    }
    (y * y).sum().backward();
    std::vector<at::Tensor> g{x.grad().clone()};
    for (auto& p : block->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  auto a = run(false), b = run(true);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::allclose(a[i], b[i], 1e-6, 1e-7)) << i;
  // Nothing requires grad (frozen block, constant input): no node, same values.
  for (auto& p : block->parameters()) p.set_requires_grad(false);
  at::Tensor y = checkpoint(*block, fn, x0);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(at::equal(y, fn(x0)));
}

}  // namespace
