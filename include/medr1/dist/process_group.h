// One small class over LibTorch's own c10d: ProcessGroupGloo on CPU, ProcessGroupNCCL for CUDA
// (MEDR1_CUDA builds only), rendezvous through a c10d::TCPStore at MASTER_ADDR:MASTER_PORT (rank 0
// serves it), like torch.distributed.init_process_group(init_method="env://"). A world of 1 makes
// no store and every collective is a no-op. Failures (timeout, a peer that died) surface as
// medr1::Error naming the op and the rank; nothing blocks longer than the timeout.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "medr1/dist/launch_env.h"

namespace medr1::dist {

enum class ReduceOp { kSum, kAvg };

struct ProcessGroupOptions {
  // Every store operation and collective fails after this long (torch's default is 30 min; ours
  // is shorter so a dead rank is noticed within a training step).
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
  // How long ranks may take to all reach the rendezvous (they may start seconds or minutes apart);
  // 0 = same as `timeout`. Collectives still fail after `timeout`.
  std::chrono::milliseconds rendezvous_timeout{0};
  // "cpu" -> gloo; "cuda" -> NCCL (only in MEDR1_CUDA builds).
  std::string device = "cpu";
  // Address gloo binds its transport to. Empty: $GLOO_SOCKET_IFNAME (an interface) if set, else
  // 127.0.0.1 when MASTER_ADDR is a loopback address, else the host's resolved name.
  std::string gloo_hostname;
};

namespace detail {
struct WorkState;
struct GroupState;
}  // namespace detail

// An in-flight asynchronous collective. wait() blocks (at most the group's timeout) and throws
// medr1::Error on failure. Default-constructed / world-1 handles are already complete.
class Work {
 public:
  Work() = default;
  explicit Work(std::shared_ptr<detail::WorkState> state) : state_(std::move(state)) {}
  void wait();
  bool pending() const { return state_ != nullptr; }

 private:
  std::shared_ptr<detail::WorkState> state_;
};

class ProcessGroup {
 public:
  // World of 1: rank 0, no store, collectives do nothing (avg/sum of one rank is the identity).
  ProcessGroup();
  // Rendezvous at env.master_addr:env.master_port; blocks until all env.world_size ranks joined
  // (or throws after opts.timeout). env.world_size == 1 gives the same as ProcessGroup().
  explicit ProcessGroup(const LaunchEnv& env, ProcessGroupOptions opts = {});
  ~ProcessGroup();
  ProcessGroup(ProcessGroup&&) noexcept;
  ProcessGroup& operator=(ProcessGroup&&) noexcept;
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  bool is_distributed() const { return world_size_ > 1; }
  // "none" (world 1), "gloo" or "nccl".
  const std::string& backend_name() const { return backend_name_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // Where collectives run: CPU for gloo, cuda:LOCAL_RANK for NCCL. Tensors elsewhere (e.g. CPU
  // metric tensors under NCCL) are copied there and back by allreduce/broadcast/allgather.
  at::Device wire_device() const { return wire_device_; }

  // In place over every tensor of the list (any shapes/dtypes; flattened per dtype into one
  // buffer per dtype so it costs one collective per dtype). On gloo, bf16/fp16 are reduced in fp32
  // (gloo has no bf16 sum): convert, reduce, copy back. kAvg divides by world_size after the sum.
  void allreduce(std::vector<at::Tensor>& tensors, ReduceOp op = ReduceOp::kSum);
  void allreduce(at::Tensor& tensor, ReduceOp op = ReduceOp::kSum);
  // Asynchronous sum of one contiguous tensor whose dtype the backend can reduce (use fp32 for
  // bf16 on gloo); the tensor must stay alive and untouched until wait().
  Work allreduce_async(const at::Tensor& tensor);

  // In place: every rank ends with root's values (same shapes required on all ranks).
  void broadcast(at::Tensor& tensor, int root = 0);
  void broadcast(std::vector<at::Tensor>& tensors, int root = 0);

  // Every rank's `tensor` (same shape and dtype on all ranks), indexed by rank.
  std::vector<at::Tensor> allgather(const at::Tensor& tensor);

  void barrier();

 private:
  int rank_ = 0;
  int world_size_ = 1;
  std::string backend_name_ = "none";
  std::chrono::milliseconds timeout_{std::chrono::seconds(300)};
  at::Device wire_device_{at::kCPU};
  std::shared_ptr<detail::GroupState> state_;
};

}  // namespace medr1::dist
