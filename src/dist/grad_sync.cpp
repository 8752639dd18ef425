// Bucketed, hook-overlapped gradient averaging (see include/medr1/dist/grad_sync.h).
// Mirrors the ordering rules of torch.nn.parallel.DistributedDataParallel's Reducer: buckets are
// built in reverse parameter order (backward produces the last layers' grads first) and are
// always launched in bucket order, so every rank issues the same collectives in the same order
// even when gradients become ready in a different order or not at all.
#include "medr1/dist/grad_sync.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include <mutex>
#include <unordered_set>

#include "medr1/core/error.h"

namespace medr1::dist {

namespace {
// gloo cannot sum bf16 and sums fp16 in fp16: those grads travel as fp32 there.
at::ScalarType wire_dtype(const ProcessGroup& pg, at::ScalarType t) {
  if (pg.backend_name() != "nccl" && (t == at::kBFloat16 || t == at::kHalf)) return at::kFloat;
  return t;
}
}  // namespace

struct GradSync::Impl {
  struct Slot {
    std::string name;
    at::Tensor param;
    size_t bucket = 0;
    int64_t offset = 0;
    bool ready = false;
    unsigned hook = 0;
  };
  struct Bucket {
    std::vector<size_t> slots;
    at::Tensor buffer;  // [numel] in the wire dtype
    size_t pending = 0;
    bool launched = false;
    Work work;
  };

  ProcessGroup* pg = nullptr;
  GradSyncOptions opts;
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  size_t next_launch = 0;
  bool sync = true;
  GradSyncStats stats;
  std::mutex mu;  // hooks may run on an autograd device thread

  void build(std::vector<std::pair<std::string, at::Tensor>> named) {
    for (auto& [name, p] : named) {
      if (!p.defined() || !p.requires_grad()) continue;
      MEDR1_CHECK(p.is_leaf(), "GradSync: parameter ", name, " is not a leaf tensor");
      MEDR1_CHECK(p.layout() == at::kStrided, "GradSync: parameter ", name,
                  " is not dense (sparse grads are not supported)");
      slots.push_back(Slot{name, p});
    }
    // Reverse order: the first bucket holds the parameters whose grads come first in backward.
    // One open bucket per (wire dtype, device); a full one is closed and a new one opened.
    struct Open {
      at::ScalarType dtype;
      at::Device device;
      size_t bucket;
      int64_t bytes;
    };
    std::vector<Open> open;
    std::vector<int64_t> numel;  // per bucket
    std::vector<at::TensorOptions> options;
    for (size_t i = slots.size(); i-- > 0;) {
      auto& s = slots[i];
      const auto wdt = wire_dtype(*pg, s.param.scalar_type());
      const int64_t bytes = s.param.numel() * static_cast<int64_t>(at::elementSize(wdt));
      Open* cur = nullptr;
      for (auto& o : open) {
        if (o.dtype == wdt && o.device == s.param.device()) cur = &o;
      }
      if (cur == nullptr || cur->bytes + bytes > opts.bucket_cap_bytes) {
        if (cur == nullptr || cur->bytes > 0) {
          buckets.emplace_back();
          numel.push_back(0);
          options.push_back(s.param.options().dtype(wdt).requires_grad(false));
          if (cur == nullptr) {
            open.push_back(Open{wdt, s.param.device(), buckets.size() - 1, 0});
            cur = &open.back();
          } else {
            cur->bucket = buckets.size() - 1;
            cur->bytes = 0;
          }
        }
      }
      s.bucket = cur->bucket;
      s.offset = numel[cur->bucket];
      numel[cur->bucket] += s.param.numel();
      buckets[cur->bucket].slots.push_back(i);
      cur->bytes += bytes;
    }
    for (size_t b = 0; b < buckets.size(); ++b) buckets[b].buffer = at::zeros({numel[b]}, options[b]);
    for (auto& b : buckets) {
      b.pending = b.slots.size();
      stats.wire_bytes += b.buffer.numel() * static_cast<int64_t>(b.buffer.element_size());
    }
    stats.n_params = static_cast<int64_t>(slots.size());
    for (auto& s : slots) stats.numel += s.param.numel();
    stats.n_buckets = static_cast<int64_t>(buckets.size());
  }

  at::Tensor view_of(const Slot& s) {
    return buckets[s.bucket].buffer.narrow(0, s.offset, s.param.numel());
  }

  // Starts every complete bucket that has all its predecessors started (bucket order).
  void launch_ready(bool from_hook) {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
      auto& b = buckets[next_launch++];
      b.work = pg->allreduce_async(b.buffer);
      b.launched = true;
      ++(from_hook ? stats.launched_in_backward : stats.launched_in_finalize);
    }
  }

  // Pre-accumulation hook of a leaf: `grad` is about to be added to param.grad.
  void on_grad(size_t i, const at::Tensor& grad) {
    std::lock_guard<std::mutex> lock(mu);
    if (!sync || !opts.overlap) return;
    auto& s = slots[i];
    MEDR1_CHECK(!s.ready, "GradSync: parameter ", s.name,
                " got a second gradient in one synced step (its bucket may already be sent); run "
                "one backward per synced micro-step, earlier ones under no_sync(), then finalize()");
    at::NoGradGuard no_grad;
    const at::Tensor& old = s.param.grad();
    // The value .grad will hold once AccumulateGrad has run (computed in the param dtype, as
    // AccumulateGrad does), converted to the wire dtype.
    view_of(s).copy_(old.defined() ? (old + grad).reshape({-1}) : grad.reshape({-1}));
    s.ready = true;
    if (--buckets[s.bucket].pending == 0) launch_ready(/*from_hook=*/true);
  }

  // Marks slot i ready with what .grad holds now (zeros when undefined).
  void fill_from_grad(Slot& s) {
    const at::Tensor& g = s.param.grad();
    if (g.defined()) {
      view_of(s).copy_(g.reshape({-1}));
    } else {
      view_of(s).zero_();
    }
    s.ready = true;
    --buckets[s.bucket].pending;
  }

  void prepare_for_backward(const at::Tensor& loss) {
    std::lock_guard<std::mutex> lock(mu);
    if (!sync || !opts.overlap) return;
    // Every autograd node reachable from the loss.
    std::unordered_set<const torch::autograd::Node*> seen;
    std::vector<torch::autograd::Node*> stack;
    if (auto root = loss.grad_fn()) stack.push_back(root.get());
    while (!stack.empty()) {
      auto* n = stack.back();
      stack.pop_back();
      if (!seen.insert(n).second) continue;
      for (const auto& e : n->next_edges()) {
        if (e.function && !seen.count(e.function.get())) stack.push_back(e.function.get());
      }
    }
    at::NoGradGuard no_grad;
    for (auto& s : slots) {
      if (s.ready) continue;
      const auto acc = torch::autograd::impl::try_get_grad_accumulator(s.param);
      if (acc && seen.count(acc.get())) continue;  // its hook will fire during backward
      fill_from_grad(s);
    }
    launch_ready(/*from_hook=*/true);
  }

  void finalize() {
    std::lock_guard<std::mutex> lock(mu);
    at::NoGradGuard no_grad;
    stats.launched_in_backward = 0;
    for (auto& b : buckets) {
      if (b.launched) ++stats.launched_in_backward;
    }
    stats.launched_in_finalize = 0;
    // Used mask, taken before anything below defines a grad: 1 where this rank has a gradient.
    auto used = at::zeros({static_cast<int64_t>(slots.size())}, at::kInt);
    auto* used_p = used.data_ptr<int32_t>();
    for (size_t i = 0; i < slots.size(); ++i) {
      auto& s = slots[i];
      used_p[i] = s.param.grad().defined() ? 1 : 0;
      // No hook fired (no_sync / no overlap / unused this step): send what .grad holds, or zeros.
      if (!s.ready) fill_from_grad(s);
    }
    launch_ready(/*from_hook=*/false);
    // Always issued after the last bucket, on every rank: same collective order everywhere.
    pg->allreduce(used, ReduceOp::kSum);
    for (auto& b : buckets) {
      b.work.wait();
      if (pg->world_size() > 1) b.buffer.div_(pg->world_size());
    }
    for (size_t i = 0; i < slots.size(); ++i) {
      auto& s = slots[i];
      if (used_p[i] == 0) continue;  // no rank has a grad: keep it undefined, like one process
      auto avg = view_of(s).view(s.param.sizes());
      at::Tensor& g = s.param.mutable_grad();
      if (g.defined()) {
        g.copy_(avg);
      } else {
        g = avg.to(s.param.options().requires_grad(false), /*non_blocking=*/false, /*copy=*/true);
      }
    }
    for (auto& b : buckets) {
      b.pending = b.slots.size();
      b.launched = false;
    }
    for (auto& s : slots) s.ready = false;
    next_launch = 0;
    ++stats.syncs;
  }
};

GradSync::GradSync(ProcessGroup& pg, std::vector<std::pair<std::string, at::Tensor>> named_params,
                   GradSyncOptions opts)
    : impl_(std::make_unique<Impl>()) {
  MEDR1_CHECK(opts.bucket_cap_bytes > 0, "GradSync: bucket_cap_bytes must be > 0, got ",
              opts.bucket_cap_bytes);
  impl_->pg = &pg;
  impl_->opts = opts;
  if (opts.broadcast_parameters && pg.is_distributed()) {
    std::vector<at::Tensor> all;
    for (auto& np : named_params) all.push_back(np.second);
    at::NoGradGuard no_grad;
    pg.broadcast(all, 0);
  }
  impl_->build(std::move(named_params));
  for (size_t i = 0; i < impl_->slots.size(); ++i) {
    Impl* impl = impl_.get();
    impl_->slots[i].hook =
        impl_->slots[i].param.register_hook([impl, i](const at::Tensor& g) { impl->on_grad(i, g); });
  }
}

namespace {
std::vector<std::pair<std::string, at::Tensor>> named_params_of(torch::nn::Module& module) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    out.emplace_back(item.key(), item.value());
  }
  return out;
}
GradSyncOptions without_broadcast(GradSyncOptions o) {
  o.broadcast_parameters = false;
  return o;
}
}  // namespace

GradSync::GradSync(ProcessGroup& pg, torch::nn::Module& module, GradSyncOptions opts)
    : GradSync(pg, named_params_of(module), without_broadcast(opts)) {
  // Buffers too (unlike the list constructor): rank 0's model everywhere. Hooks never fire during
  // a broadcast (no autograd), so broadcasting after the hooks exist is fine.
  if (opts.broadcast_parameters) broadcast_module(pg, module, 0);
}

GradSync::~GradSync() {
  if (!impl_) return;
  for (auto& s : impl_->slots) s.param.remove_hook(s.hook);
}

GradSync::NoSyncGuard::NoSyncGuard(GradSync* owner) : owner_(owner) {
  prev_ = owner_->sync_enabled();
  owner_->set_sync_enabled(false);
}

GradSync::NoSyncGuard::~NoSyncGuard() {
  if (owner_ != nullptr) owner_->set_sync_enabled(prev_);
}

void GradSync::set_sync_enabled(bool enabled) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->sync = enabled;
}

bool GradSync::sync_enabled() const { return impl_->sync; }

void GradSync::finalize() { impl_->finalize(); }

void GradSync::prepare_for_backward(const at::Tensor& loss) { impl_->prepare_for_backward(loss); }

const GradSyncStats& GradSync::stats() const { return impl_->stats; }

void broadcast_module(ProcessGroup& pg, torch::nn::Module& module, int root) {
  if (!pg.is_distributed()) return;
  std::vector<at::Tensor> all;
  for (const auto& p : module.parameters(/*recurse=*/true)) all.push_back(p);
  for (const auto& b : module.buffers(/*recurse=*/true)) all.push_back(b);
  at::NoGradGuard no_grad;
  pg.broadcast(all, root);
}

std::map<std::string, double> allreduce_mean(ProcessGroup& pg,
                                             const std::map<std::string, double>& metrics) {
  if (!pg.is_distributed()) return metrics;
  // Key check: every rank's (count, FNV-1a of the sorted keys) must agree.
  uint64_t h = 1469598103934665603ULL;
  for (const auto& [k, v] : metrics) {
    for (unsigned char c : k + '\0') h = (h ^ c) * 1099511628211ULL;
  }
  auto sig = at::empty({2}, at::kLong);
  sig[0] = static_cast<int64_t>(metrics.size());
  sig[1] = static_cast<int64_t>(h);
  const auto sigs = pg.allgather(sig);
  for (size_t r = 0; r < sigs.size(); ++r) {
    MEDR1_CHECK(at::equal(sigs[r], sig), "allreduce_mean: rank ", pg.rank(), " has ",
                metrics.size(), " metric keys but rank ", r, " has ", sigs[r][0].item<int64_t>(),
                " or different names; all ranks must log the same keys");
  }
  auto vals = at::empty({static_cast<int64_t>(metrics.size())}, at::kDouble);
  auto* p = vals.data_ptr<double>();
  size_t i = 0;
  for (const auto& kv : metrics) p[i++] = kv.second;
  pg.allreduce(vals, ReduceOp::kAvg);
  std::map<std::string, double> out;
  i = 0;
  for (const auto& kv : metrics) out[kv.first] = p[i++];
  return out;
}

}  // namespace medr1::dist
