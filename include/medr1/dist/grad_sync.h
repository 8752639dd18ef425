// Data-parallel gradient averaging in the manner of torch DistributedDataParallel's Reducer:
// parameters broadcast from rank 0 at construction, gradients packed into flat ~25 MB buckets
// (one dtype each; bf16/fp16 grads travel as fp32 on gloo) whose allreduce starts from a gradient
// hook as soon as the bucket is complete, overlapping the rest of the backward pass. finalize()
// waits and writes the averages into .grad. Parameters without a gradient on a rank count as
// zeros there; a parameter unused on every rank keeps an undefined grad (like DDP's
// find_unused_parameters), so the optimizer skips it exactly as a single process would.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "medr1/dist/process_group.h"

namespace medr1::dist {

struct GradSyncOptions {
  int64_t bucket_cap_bytes = int64_t{25} << 20;  // DDP's default bucket_cap_mb=25 (wire bytes)
  bool overlap = true;               // start bucket allreduces from grad hooks during backward
  bool broadcast_parameters = true;  // rank 0's values everywhere at construction
};

struct GradSyncStats {
  int64_t n_params = 0;   // parameters synced (requires_grad)
  int64_t numel = 0;      // their elements
  int64_t n_buckets = 0;
  int64_t wire_bytes = 0;  // bytes allreduced per sync (all buckets)
  int64_t syncs = 0;       // finalize() calls
  // Of the last sync: buckets started before finalize() (from a grad hook during backward, or
  // from prepare_for_backward) vs from finalize().
  int64_t launched_in_backward = 0;
  int64_t launched_in_finalize = 0;
};

// Usage per optimizer step with k micro-batches (all ranks make the same calls):
//   for (i < k) { auto g = (i + 1 < k) ? sync.no_sync() : GradSync::NoSyncGuard{};
//                 (loss_i / k).backward(); }
//   sync.finalize();   // .grad = mean over ranks of the accumulated grads
//   optimizer.step(); zero grads (set to undefined or zero, both work).
// One backward per synced micro-step: a second gradient for a parameter after its bucket was
// sent is an error (it would be missing from the average).
class GradSync {
 public:
  // Syncs the given parameters (those with requires_grad); broadcasts all of them from rank 0.
  GradSync(ProcessGroup& pg, std::vector<std::pair<std::string, at::Tensor>> named_params,
           GradSyncOptions opts = {});
  // Syncs module.named_parameters() with requires_grad; broadcasts every parameter and buffer.
  GradSync(ProcessGroup& pg, torch::nn::Module& module, GradSyncOptions opts = {});
  ~GradSync();
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  // While alive, backward passes only accumulate locally (DDP no_sync()).
  class NoSyncGuard {
   public:
    NoSyncGuard() = default;
    explicit NoSyncGuard(GradSync* owner);
    NoSyncGuard(NoSyncGuard&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)), prev_(o.prev_) {}
    NoSyncGuard& operator=(NoSyncGuard&&) = delete;
    ~NoSyncGuard();

   private:
    GradSync* owner_ = nullptr;
    bool prev_ = true;
  };
  NoSyncGuard no_sync() { return NoSyncGuard(this); }
  void set_sync_enabled(bool enabled);
  bool sync_enabled() const;

  // Optional, before the synced micro-step's backward (DDP find_unused_parameters): walks the
  // autograd graph of `loss` and marks parameters it cannot reach as ready now (their current
  // .grad or zeros), so a bucket holding a parameter unused this step still starts during
  // backward instead of holding back itself and every later bucket until finalize().
  void prepare_for_backward(const at::Tensor& loss);

  // Completes the sync: buckets not yet started (no overlap, params without grads) are filled
  // from .grad (zeros where undefined) and sent in bucket order, then all are awaited, divided by
  // the world size and copied into .grad. Throws medr1::Error on timeout / peer loss.
  void finalize();

  const GradSyncStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Broadcasts every parameter and buffer of `module` from `root` (same architecture everywhere).
void broadcast_module(ProcessGroup& pg, torch::nn::Module& module, int root = 0);

// Mean over ranks of scalar metrics. Every rank must pass the same keys (checked: throws
// medr1::Error listing the mismatch), values are reduced in fp64.
std::map<std::string, double> allreduce_mean(ProcessGroup& pg,
                                             const std::map<std::string, double>& metrics);

}  // namespace medr1::dist
