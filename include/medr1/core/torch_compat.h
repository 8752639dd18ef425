// The ONLY place where LibTorch 1.13 (Debian) and 2.x (PyTorch wheel) differ for medr1.
// Everything version-dependent is expressed here as a macro, alias or small inline function:
//   - MEDR1_TORCH_2: defined on LibTorch >= 2.0.
//   - MEDR1_HAS_SDPA: at::scaled_dot_product_attention usable (>= 2.1).
//   - c10d: ProcessGroup (1.13) vs Backend (2.x) for the concrete gloo/NCCL classes.
#pragma once

#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2
#define MEDR1_TORCH_2 1
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define MEDR1_HAS_SDPA 1
#endif

// ---- optimizer state keys ------------------------------------------------------------------------
// torch::optim::Optimizer::state() is keyed by the parameter's TensorImpl address: as a string
// (c10::guts::to_string of the pointer, i.e. ostream << ptr) on 1.13, as the void* itself on 2.x.
#include <ATen/core/Tensor.h>

#include <sstream>
#include <string>
#include <type_traits>

namespace medr1::compat {
template <class StateMap>
typename StateMap::key_type optimizer_state_key(const StateMap&, const at::Tensor& p) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream os;
    os << p.unsafeGetTensorImpl();
    return os.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}
}  // namespace medr1::compat

// ---- c10d (distributed) -------------------------------------------------------------------------
// The concrete gloo/NCCL classes derive from c10d::ProcessGroup in 1.13 and from c10d::Backend in
// 2.x; the collective methods (allreduce/broadcast/allgather/barrier -> intrusive_ptr<c10d::Work>),
// ProcessGroupGloo::Options::create(timeout), the TCPStore(host, TCPStoreOptions) constructor and
// Work::wait(timeout) have the same shape in both. The heavy c10d headers are pulled in only by
// translation units that `#define MEDR1_COMPAT_C10D` before their first include of this header
// (src/dist/*.cpp); everyone else sees nothing of c10d here.
#if defined(MEDR1_COMPAT_C10D) && !defined(MEDR1_COMPAT_C10D_LOADED)
#define MEDR1_COMPAT_C10D_LOADED 1
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1  // Debian's TorchConfig exports it; the wheel's may not (header empty without)
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
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

#ifdef MEDR1_TORCH_2
using C10dBackend = ::c10d::Backend;  // 2.x: ProcessGroupGloo/NCCL : Backend
#else
using C10dBackend = ::c10d::ProcessGroup;  // 1.13: ProcessGroupGloo/NCCL : ProcessGroup
#endif

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
