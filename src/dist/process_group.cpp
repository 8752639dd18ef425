// c10d process group wrapper (see include/medr1/dist/process_group.h).
// The c10d headers come from core/torch_compat.h.
#define MEDR1_COMPAT_C10D 1
#include "medr1/core/torch_compat.h"
#ifndef MEDR1_COMPAT_C10D_LOADED
#error "torch_compat.h was included before MEDR1_COMPAT_C10D was defined in this translation unit"
#endif

#include "medr1/dist/process_group.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <map>
#include <string_view>
#include <thread>
#include <utility>

#include "medr1/core/error.h"

namespace medr1::dist {
namespace detail {

struct GroupState {
  c10::intrusive_ptr<::c10d::Store> store;  // destroyed after the backend (member order)
  c10::intrusive_ptr<compat::C10dBackend> backend;
};

struct WorkState {
  c10::intrusive_ptr<::c10d::Work> work;
  std::string op;
  int rank = 0;
  int world_size = 1;
  std::chrono::milliseconds timeout{0};
};

}  // namespace detail

namespace {

// c10::Error::what() carries a C++ backtrace; the first message line is what a user needs.
std::string short_what(const std::exception& e) {
  std::string msg;
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) {
    msg = ce->what_without_backtrace();
  } else {
    msg = e.what();
  }
  const auto nl = msg.find('\n');
  if (nl != std::string::npos) msg.resize(nl);
  return msg;
}

[[noreturn]] void fail_op(const std::string& op, int rank, int world_size,
                          std::chrono::milliseconds timeout, const std::exception& e) {
  fail("dist: ", op, " failed on rank ", rank, " of ", world_size, " (timeout ", timeout.count(),
       " ms; a peer rank may have crashed, exited or hung): ", short_what(e));
}

// Runs a collective to completion, turning any backend exception into medr1::Error.
template <typename F>
void run_op(const std::string& op, int rank, int world_size, std::chrono::milliseconds timeout,
            F&& launch) {
  try {
    c10::intrusive_ptr<::c10d::Work> work = launch();
    compat::wait_work(work);
  } catch (const medr1::Error&) {
    throw;
  } catch (const std::exception& e) {
    fail_op(op, rank, world_size, timeout, e);
  }
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

std::shared_ptr<::gloo::transport::Device> make_gloo_device(const LaunchEnv& env,
                                                            const ProcessGroupOptions& opts) {
  if (!opts.gloo_hostname.empty()) {
    return ::c10d::ProcessGroupGloo::createDeviceForHostname(opts.gloo_hostname);
  }
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname) {
    return ::c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (is_loopback(env.master_addr)) {
    return ::c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return ::c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

void Work::wait() {
  if (!state_) return;
  auto st = std::move(state_);
  try {
    compat::wait_work(st->work);
  } catch (const std::exception& e) {
    fail_op(st->op, st->rank, st->world_size, st->timeout, e);
  }
}

ProcessGroup::ProcessGroup() = default;
ProcessGroup::~ProcessGroup() = default;
ProcessGroup::ProcessGroup(ProcessGroup&&) noexcept = default;
ProcessGroup& ProcessGroup::operator=(ProcessGroup&&) noexcept = default;

ProcessGroup::ProcessGroup(const LaunchEnv& env, ProcessGroupOptions opts)
    : rank_(env.rank), world_size_(env.world_size), timeout_(opts.timeout) {
  MEDR1_CHECK(env.rank >= 0 && env.rank < env.world_size, "dist: rank ", env.rank,
              " not in [0, ", env.world_size, ")");
  MEDR1_CHECK(opts.timeout.count() > 0, "dist: timeout must be > 0 ms, got ", opts.timeout.count());
  MEDR1_CHECK(opts.device == "cpu" || opts.device == "cuda", "dist: device must be 'cpu' or 'cuda', got '",
              opts.device, "'");
  if (world_size_ == 1) return;
  auto state = std::make_shared<detail::GroupState>();
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  const auto rdv_timeout = opts.rendezvous_timeout.count() > 0 ? opts.rendezvous_timeout : opts.timeout;
  try {
    // Under torchrun (TORCHELASTIC_USE_AGENT_STORE=True) the elastic agent already serves the TCPStore on
    // MASTER_PORT: every rank is a client of it, under the agent's per-attempt prefix, as torch's own env://
    // rendezvous does. Otherwise rank 0 serves it.
    const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    const bool agent_store = agent != nullptr && std::string(agent) == "True";
    state->store = compat::make_tcp_store(env.master_addr, static_cast<std::uint16_t>(env.master_port),
                                          env.rank == 0 && !agent_store, env.world_size, rdv_timeout);
    if (agent_store) {
      const char* attempt = std::getenv("TORCHELASTIC_RESTART_COUNT");
      state->store = c10::make_intrusive<::c10d::PrefixStore>(
          "/worker/attempt_" + std::string(attempt != nullptr ? attempt : "0"), state->store);
    }
    // Everyone joined before the backend starts its (op-timeout bound) full-mesh connect, so a
    // slow-starting rank costs rendezvous time, not a spurious collective timeout.
    state->store->add("medr1/joined", 1);
    const auto t0 = std::chrono::steady_clock::now();
    while (state->store->add("medr1/joined", 0) < world_size_) {
      MEDR1_CHECK(std::chrono::steady_clock::now() - t0 < rdv_timeout, "only ",
                  state->store->add("medr1/joined", 0), " of ", world_size_, " ranks joined");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    state->store->setTimeout(opts.timeout);
  } catch (const std::exception& e) {
    fail("dist: rendezvous (TCPStore at ", where, ", ", env.rank == 0 ? "server" : "client",
         ") failed on rank ", rank_, " of ", world_size_, " within ", rdv_timeout.count(),
         " ms: ", short_what(e));
  }
  try {
    if (opts.device == "cuda") {
#ifdef MEDR1_CUDA
      state->backend = compat::make_nccl_backend(state->store, rank_, world_size_, opts.timeout);
      backend_name_ = "nccl";
      wire_device_ = at::Device(at::kCUDA, static_cast<at::DeviceIndex>(env.local_rank));
#else
      fail("dist: device 'cuda' (NCCL) needs a MEDR1_CUDA build");
#endif
    } else {
      state->backend = compat::make_gloo_backend(state->store, rank_, world_size_, opts.timeout,
                                                 make_gloo_device(env, opts));
      backend_name_ = "gloo";
    }
  } catch (const medr1::Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("dist: creating the ", opts.device == "cuda" ? "nccl" : "gloo", " process group (store ",
         where, ") failed on rank ", rank_, " of ", world_size_, " within ", opts.timeout.count(),
         " ms: ", short_what(e));
  }
  state_ = std::move(state);
}

namespace {

// The dtype a backend reduces `t` in: gloo has no bf16 arithmetic and fp16 sums lose precision.
at::ScalarType reduce_dtype(const std::string& backend, at::ScalarType t) {
  if (backend == "gloo" && (t == at::kBFloat16 || t == at::kHalf)) return at::kFloat;
  return t;
}

// Tensors grouped by wire dtype, keeping list order inside each group.
std::map<at::ScalarType, std::vector<size_t>> group_by_dtype(const std::string& backend,
                                                             const std::vector<at::Tensor>& ts) {
  std::map<at::ScalarType, std::vector<size_t>> groups;
  for (size_t i = 0; i < ts.size(); ++i) {
    MEDR1_CHECK(ts[i].defined(), "dist: tensor ", i, " of the list is undefined");
    groups[reduce_dtype(backend, ts[i].scalar_type())].push_back(i);
  }
  return groups;
}

// One contiguous 1-D buffer of dtype `dt` holding the listed tensors back to back.
at::Tensor flatten(const std::vector<at::Tensor>& ts, const std::vector<size_t>& idx,
                   at::ScalarType dt, at::Device device) {
  if (idx.size() == 1) {
    const auto& t = ts[idx[0]];
    return t.reshape({-1}).to(device, dt, /*non_blocking=*/false, /*copy=*/true);
  }
  std::vector<at::Tensor> parts;
  parts.reserve(idx.size());
  for (auto i : idx) parts.push_back(ts[i].reshape({-1}).to(device, dt));
  return at::cat(parts);
}

void unflatten(const at::Tensor& buf, std::vector<at::Tensor>& ts, const std::vector<size_t>& idx) {
  int64_t off = 0;
  for (auto i : idx) {
    const int64_t n = ts[i].numel();
    ts[i].copy_(buf.narrow(0, off, n).view(ts[i].sizes()));
    off += n;
  }
}

}  // namespace

void ProcessGroup::allreduce(std::vector<at::Tensor>& tensors, ReduceOp op) {
  if (world_size_ == 1 || tensors.empty()) return;
  for (auto& [dt, idx] : group_by_dtype(backend_name_, tensors)) {
    MEDR1_CHECK(op != ReduceOp::kAvg || at::isFloatingType(dt), "dist: allreduce avg of ", dt,
                " tensors is not supported (integer division)");
    // A lone contiguous tensor already in the wire dtype is reduced where it lies.
    const bool in_place = idx.size() == 1 && tensors[idx[0]].is_contiguous() &&
                          tensors[idx[0]].scalar_type() == dt &&
                          tensors[idx[0]].device() == wire_device();
    at::Tensor buf = in_place ? tensors[idx[0]] : flatten(tensors, idx, dt, wire_device());
    std::vector<at::Tensor> bufs{buf};
    run_op("allreduce", rank_, world_size_, timeout_, [&] {
      ::c10d::AllreduceOptions o;
      o.reduceOp = ::c10d::ReduceOp::SUM;
      return state_->backend->allreduce(bufs, o);
    });
    if (op == ReduceOp::kAvg) buf.div_(world_size_);
    if (!in_place) unflatten(buf, tensors, idx);
  }
}

void ProcessGroup::allreduce(at::Tensor& tensor, ReduceOp op) {
  std::vector<at::Tensor> ts{tensor};
  allreduce(ts, op);
}

Work ProcessGroup::allreduce_async(const at::Tensor& tensor) {
  if (world_size_ == 1) return Work();
  MEDR1_CHECK(tensor.is_contiguous(), "dist: allreduce_async needs a contiguous tensor");
  MEDR1_CHECK(tensor.device() == wire_device(), "dist: allreduce_async: ", backend_name_,
              " needs tensors on ", wire_device(), ", got ", tensor.device());
  MEDR1_CHECK(reduce_dtype(backend_name_, tensor.scalar_type()) == tensor.scalar_type(),
              "dist: allreduce_async: ", backend_name_, " cannot sum ", tensor.scalar_type(),
              " tensors; reduce a float copy");
  auto st = std::make_shared<detail::WorkState>();
  st->op = "allreduce";
  st->rank = rank_;
  st->world_size = world_size_;
  st->timeout = timeout_;
  try {
    std::vector<at::Tensor> bufs{tensor};
    ::c10d::AllreduceOptions o;
    o.reduceOp = ::c10d::ReduceOp::SUM;
    st->work = state_->backend->allreduce(bufs, o);
  } catch (const std::exception& e) {
    fail_op("allreduce", rank_, world_size_, timeout_, e);
  }
  return Work(std::move(st));
}

void ProcessGroup::broadcast(std::vector<at::Tensor>& tensors, int root) {
  MEDR1_CHECK(root >= 0 && root < world_size_, "dist: broadcast root ", root, " not in [0, ",
              world_size_, ")");
  if (world_size_ == 1 || tensors.empty()) return;
  // Wire dtype as for allreduce: bf16 -> fp32 is exact, and gloo cannot reduce bf16.
  for (auto& [dt, idx] : group_by_dtype(backend_name_, tensors)) {
    const bool in_place = idx.size() == 1 && tensors[idx[0]].is_contiguous() &&
                          tensors[idx[0]].scalar_type() == dt &&
                          tensors[idx[0]].device() == wire_device();
    at::Tensor buf = in_place ? tensors[idx[0]] : flatten(tensors, idx, dt, wire_device());
    std::vector<at::Tensor> bufs{buf};
    run_op("broadcast", rank_, world_size_, timeout_, [&] {
      ::c10d::BroadcastOptions o;
      o.rootRank = root;
      o.rootTensor = 0;
      return state_->backend->broadcast(bufs, o);
    });
    if (!in_place) unflatten(buf, tensors, idx);
  }
}

void ProcessGroup::broadcast(at::Tensor& tensor, int root) {
  std::vector<at::Tensor> ts{tensor};
  broadcast(ts, root);
}

std::vector<at::Tensor> ProcessGroup::allgather(const at::Tensor& tensor) {
  MEDR1_CHECK(tensor.defined(), "dist: allgather of an undefined tensor");
  if (world_size_ == 1) return {tensor.clone()};
  const auto dt = reduce_dtype(backend_name_, tensor.scalar_type());
  std::vector<at::Tensor> in{tensor.to(wire_device(), dt).contiguous()};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < world_size_; ++r) out[0].push_back(at::empty_like(in[0]));
  run_op("allgather", rank_, world_size_, timeout_,
         [&] { return state_->backend->allgather(out, in); });
  std::vector<at::Tensor> result;
  result.reserve(out[0].size());
  for (auto& t : out[0]) result.push_back(t.to(tensor.device(), tensor.scalar_type()));
  return result;
}

void ProcessGroup::barrier() {
  if (world_size_ == 1) return;
  run_op("barrier", rank_, world_size_, timeout_, [&] { return state_->backend->barrier(); });
}

}  // namespace medr1::dist
