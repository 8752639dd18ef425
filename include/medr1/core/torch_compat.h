// The ONLY place where LibTorch versions differ for medr1, and where the c10d headers are pulled in.
// medr1 builds against LibTorch >= 2.1 (the pinned PyTorch wheel of scripts/requirements.txt; cmake/medr1_torch.cmake
// refuses older ones). Debian's libtorch-dev 1.13 is no longer supported: what existed only for it (the c10d
// ProcessGroup-vs-Backend alias, string optimizer-state keys, the no-SDPA fallback) is gone.
#pragma once

#include <torch/version.h>

// ---- optimizer state keys ------------------------------------------------------------------------
// torch::optim::Optimizer::state() is keyed by the parameter's TensorImpl address (void*).
#include <ATen/core/Tensor.h>

namespace medr1::compat {
template <class StateMap>
typename StateMap::key_type optimizer_state_key(const StateMap&, const at::Tensor& p) {
  return static_cast<typename StateMap::key_type>(p.unsafeGetTensorImpl());
}
}  // namespace medr1::compat

// ---- fused AdamW -------------------------------------------------------------------------------
// at::_fused_adamw_ (torch.optim.AdamW(fused=True)) has a CPU kernel from PyTorch 2.4 on; on 2.1 to 2.3 it is
// CUDA-only, and medr1's "adamw_torch_fused" refuses to run on CPU there (rl/optim.cpp).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define MEDR1_FUSED_ADAMW_CPU 1
#else
#define MEDR1_FUSED_ADAMW_CPU 0
#endif

// ---- c10d (distributed) -------------------------------------------------------------------------
// The concrete gloo/NCCL classes derive from c10d::Backend; collectives return intrusive_ptr<c10d::Work>.
// The heavy c10d headers are pulled in only by
// translation units that `#define MEDR1_COMPAT_C10D` before their first include of this header
// (src/dist/*.cpp); everyone else sees nothing of c10d here.
#if defined(MEDR1_COMPAT_C10D) && !defined(MEDR1_COMPAT_C10D_LOADED)
#define MEDR1_COMPAT_C10D_LOADED 1
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1  // torch_cpu's CMake target exports it; the header is empty without it
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#ifdef MEDR1_CUDA
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1  // the wheel's TorchConfig does not export it; the header is empty without it
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace medr1::compat {

using C10dBackend = ::c10d::Backend;  // ProcessGroupGloo/NCCL : Backend

// TCPStore for rendezvous; the server (rank 0) waits for `world_size` clients within `timeout`.
inline c10::intrusive_ptr<::c10d::Store> make_tcp_store(const std::string& host, std::uint16_t port,
                                                         bool is_server, int world_size,
                                                         std::chrono::milliseconds timeout) {
  ::c10d::TCPStoreOptions opts;
  opts.port = port;
  opts.isServer = is_server;
  opts.numWorkers = static_cast<std::size_t>(world_size);
  opts.waitWorkers = true;
  opts.timeout = timeout;
  return c10::make_intrusive<::c10d::TCPStore>(host, opts);
}

// Gloo backend on one transport device; every collective fails after `timeout`.
inline c10::intrusive_ptr<C10dBackend> make_gloo_backend(
    const c10::intrusive_ptr<::c10d::Store>& store, int rank, int world_size,
    std::chrono::milliseconds timeout, std::shared_ptr<::gloo::transport::Device> device) {
  auto opts = ::c10d::ProcessGroupGloo::Options::create(timeout);
  opts->devices.push_back(std::move(device));
  return c10::make_intrusive<::c10d::ProcessGroupGloo>(store, rank, world_size, opts);
}

#ifdef MEDR1_CUDA
inline c10::intrusive_ptr<C10dBackend> make_nccl_backend(
    const c10::intrusive_ptr<::c10d::Store>& store, int rank, int world_size,
    std::chrono::milliseconds timeout) {
  auto opts = ::c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<::c10d::ProcessGroupNCCL>(store, rank, world_size, opts);
}
#endif

// Blocks until `work` finished; rethrows the backend's error (timeout, peer loss).
inline void wait_work(const c10::intrusive_ptr<::c10d::Work>& work) { work->wait(); }

}  // namespace medr1::compat
#endif  // MEDR1_COMPAT_C10D
