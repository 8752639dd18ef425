// torchrun-like local launcher (see include/medr1/dist/launcher.h).
#include "medr1/dist/launcher.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <thread>

#include "medr1/core/error.h"
#include "medr1/core/logging.h"

extern char** environ;

namespace medr1::dist {
namespace {

// Signal forwarding state; the handler may only touch these (async-signal-safe).
constexpr int kMaxWorkers = 1024;
pid_t g_pids[kMaxWorkers];
volatile sig_atomic_t g_n_pids = 0;
volatile sig_atomic_t g_forwarded = 0;

void forward_signal(int sig) {
  g_forwarded = sig;
  for (int i = 0; i < g_n_pids; ++i) {
    if (g_pids[i] > 0) kill(g_pids[i], sig);
  }
}

// Installs the forwarding handler for SIGINT/SIGTERM; restores the previous ones on destruction.
class SignalForwarder {
 public:
  SignalForwarder() {
    g_n_pids = 0;
    g_forwarded = 0;
    struct sigaction sa {};
    sa.sa_handler = forward_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalForwarder() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    g_n_pids = 0;
  }
  SignalForwarder(const SignalForwarder&) = delete;
  SignalForwarder& operator=(const SignalForwarder&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

constexpr std::string_view kTorchrunVars[] = {"RANK",       "LOCAL_RANK",  "WORLD_SIZE",
                                              "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
                                              "MASTER_PORT"};

bool is_overridden(std::string_view entry, const std::vector<std::pair<std::string, std::string>>& add) {
  const auto eq = entry.find('=');
  const auto name = entry.substr(0, eq);
  for (const auto& v : kTorchrunVars) {
    if (name == v) return true;
  }
  for (const auto& [k, v] : add) {
    if (name == k) return true;
  }
  return false;
}

std::string describe(const WorkerExit& w) {
  if (w.signal != 0) return "was killed by " + signal_name(w.signal);
  return "exited with code " + std::to_string(w.exit_code);
}

}  // namespace

std::string signal_name(int sig) {
  switch (sig) {
    case SIGHUP: return "SIGHUP";
    case SIGINT: return "SIGINT";
    case SIGQUIT: return "SIGQUIT";
    case SIGILL: return "SIGILL";
    case SIGTRAP: return "SIGTRAP";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGUSR1: return "SIGUSR1";
    case SIGSEGV: return "SIGSEGV";
    case SIGUSR2: return "SIGUSR2";
    case SIGPIPE: return "SIGPIPE";
    case SIGALRM: return "SIGALRM";
    case SIGTERM: return "SIGTERM";
    case SIGXCPU: return "SIGXCPU";
    default: return "signal " + std::to_string(sig);
  }
}

std::vector<std::string> strip_launcher_flags(int argc, const char* const* argv) {
  static constexpr std::string_view kFlags[] = {
      "--nproc-per-node", "--nproc_per_node", "--nnodes",      "--node-rank",  "--node_rank",
      "--master-addr",    "--master_addr",    "--master-port", "--master_port"};
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    bool dropped = false;
    for (const auto& f : kFlags) {
      if (a == f) {  // "--flag value"
        ++i;
        dropped = true;
        break;
      }
      if (a.size() > f.size() && a.substr(0, f.size()) == f && a[f.size()] == '=') {
        dropped = true;
        break;
      }
    }
    if (!dropped) out.emplace_back(a);
  }
  return out;
}

LaunchResult run_workers(const LaunchOptions& opts, const std::string& argv0,
                         const std::vector<std::string>& args) {
  MEDR1_CHECK(opts.nproc_per_node >= 1 && opts.nproc_per_node <= kMaxWorkers,
              "launcher: --nproc-per-node must be in [1, ", kMaxWorkers, "], got ",
              opts.nproc_per_node);
  MEDR1_CHECK(opts.nnodes >= 1, "launcher: --nnodes must be >= 1, got ", opts.nnodes);
  MEDR1_CHECK(opts.node_rank >= 0 && opts.node_rank < opts.nnodes, "launcher: --node-rank ",
              opts.node_rank, " not in [0, ", opts.nnodes, ")");
  MEDR1_CHECK(opts.master_port >= 1 && opts.master_port <= 65535, "launcher: --master-port ",
              opts.master_port, " not in [1, 65535]");
  MEDR1_CHECK(!opts.master_addr.empty(), "launcher: --master-addr is empty");
  const int nproc = opts.nproc_per_node;
  const int world = nproc * opts.nnodes;

  // Everything the children need is built before fork: only async-signal-safe calls after it.
  std::vector<std::string> base_env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (!is_overridden(*e, opts.extra_env)) base_env.emplace_back(*e);
  }
  for (const auto& [k, v] : opts.extra_env) base_env.push_back(k + "=" + v);
  std::vector<std::vector<std::string>> envs(static_cast<size_t>(nproc), base_env);
  for (int lr = 0; lr < nproc; ++lr) {
    auto& env = envs[static_cast<size_t>(lr)];
    env.push_back("RANK=" + std::to_string(opts.node_rank * nproc + lr));
    env.push_back("LOCAL_RANK=" + std::to_string(lr));
    env.push_back("WORLD_SIZE=" + std::to_string(world));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
    env.push_back("GROUP_RANK=" + std::to_string(opts.node_rank));
    env.push_back("MASTER_ADDR=" + opts.master_addr);
    env.push_back("MASTER_PORT=" + std::to_string(opts.master_port));
  }
  std::vector<char*> argv_c;
  argv_c.push_back(const_cast<char*>(argv0.c_str()));
  for (const auto& a : args) argv_c.push_back(const_cast<char*>(a.c_str()));
  argv_c.push_back(nullptr);
  std::vector<std::vector<char*>> envp(static_cast<size_t>(nproc));
  for (int lr = 0; lr < nproc; ++lr) {
    for (auto& s : envs[static_cast<size_t>(lr)]) envp[static_cast<size_t>(lr)].push_back(s.data());
    envp[static_cast<size_t>(lr)].push_back(nullptr);
  }
  const char* exe = opts.exe.c_str();

  LaunchResult result;
  result.workers.resize(static_cast<size_t>(nproc));
  std::vector<bool> alive(static_cast<size_t>(nproc), false);
  SignalForwarder forwarder;
  const pid_t launcher_pid = getpid();
  for (int lr = 0; lr < nproc; ++lr) {
    const pid_t pid = fork();
    if (pid == 0) {
      // Worker: die with the launcher, even if it is SIGKILLed (no orphans left running).
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != launcher_pid) _exit(128 + SIGTERM);
      execve(exe, argv_c.data(), envp[static_cast<size_t>(lr)].data());
      const char msg[] = "medr1 launcher: execve failed\n";
      ssize_t ignored = write(2, msg, sizeof(msg) - 1);
      (void)ignored;
      _exit(127);
    }
    if (pid < 0) {
      const int err = errno;
      for (int j = 0; j < lr; ++j) kill(g_pids[j], SIGKILL);
      for (int j = 0; j < lr; ++j) waitpid(g_pids[j], nullptr, 0);
      fail("launcher: fork of local rank ", lr, " failed: ", std::strerror(err));
    }
    g_pids[lr] = pid;
    g_n_pids = lr + 1;
    auto& w = result.workers[static_cast<size_t>(lr)];
    w.rank = opts.node_rank * nproc + lr;
    w.pid = pid;
    alive[static_cast<size_t>(lr)] = true;
  }

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  bool stopping = false;
  Clock::time_point kill_at{};
  bool killed = false;
  bool deadline_hit = false;
  int n_alive = nproc;
  auto stop_others = [&](int sig) {
    for (int lr = 0; lr < nproc; ++lr) {
      if (!alive[static_cast<size_t>(lr)]) continue;
      kill(g_pids[lr], sig);
      result.workers[static_cast<size_t>(lr)].stopped_by_launcher = true;
    }
  };
  while (n_alive > 0) {
    for (int lr = 0; lr < nproc; ++lr) {
      if (!alive[static_cast<size_t>(lr)]) continue;
      int status = 0;
      const pid_t r = waitpid(g_pids[lr], &status, WNOHANG);
      if (r == 0 || (r < 0 && errno == EINTR)) continue;
      alive[static_cast<size_t>(lr)] = false;
      g_pids[lr] = -1;
      --n_alive;
      auto& w = result.workers[static_cast<size_t>(lr)];
      if (r < 0) {
        w.exit_code = 127;  // lost (someone else reaped it)
      } else if (WIFSIGNALED(status)) {
        w.signal = WTERMSIG(status);
      } else {
        w.exit_code = WEXITSTATUS(status);
      }
      const bool failed = w.signal != 0 || w.exit_code != 0;
      if (failed && !w.stopped_by_launcher && result.failed_rank < 0 && g_forwarded == 0) {
        result.failed_rank = w.rank;
        result.exit_code = w.signal != 0 ? 128 + w.signal : w.exit_code;
        result.message = "rank " + std::to_string(w.rank) + " (local " + std::to_string(lr) +
                         ", pid " + std::to_string(w.pid) + ") " + describe(w);
        if (opts.terminate_on_failure && !stopping && n_alive > 0) {
          stop_others(SIGTERM);
          stopping = true;
          kill_at = Clock::now() + opts.grace;
        }
      }
    }
    if (n_alive == 0) break;
    const auto now = Clock::now();
    if (g_forwarded != 0 && !stopping) {  // the handler already sent the signal on
      stopping = true;
      kill_at = now + opts.grace;
      for (int lr = 0; lr < nproc; ++lr) {
        if (alive[static_cast<size_t>(lr)]) result.workers[static_cast<size_t>(lr)].stopped_by_launcher = true;
      }
    }
    if (opts.deadline.count() > 0 && !deadline_hit && now - start > opts.deadline) {
      deadline_hit = true;
      stop_others(SIGTERM);
      if (!stopping) {
        stopping = true;
        kill_at = now + opts.grace;
      }
    }
    if (stopping && !killed && now >= kill_at) {
      stop_others(SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  int n_stopped = 0;
  for (const auto& w : result.workers) n_stopped += w.stopped_by_launcher ? 1 : 0;
  if (result.failed_rank >= 0) {
    if (n_stopped > 0) {
      result.message += "; stopped the other " + std::to_string(n_stopped) + " worker(s)" +
                        (killed ? " (SIGKILL after the grace period)" : " (SIGTERM)");
    }
  } else if (g_forwarded != 0) {
    result.exit_code = 128 + g_forwarded;
    result.message = "launcher received " + signal_name(g_forwarded) + "; forwarded it to " +
                     std::to_string(nproc) + " worker(s)";
  } else if (deadline_hit) {
    result.exit_code = 124;
    result.message = "launcher deadline of " + std::to_string(opts.deadline.count()) +
                     " ms exceeded; stopped " + std::to_string(n_stopped) + " worker(s)";
  }
  return result;
}

int launch_local(int nproc_per_node, int nnodes, int node_rank, std::string master_addr,
                 int master_port, int argc, const char* const* argv) {
  LaunchOptions opts;
  opts.nproc_per_node = nproc_per_node;
  opts.nnodes = nnodes;
  opts.node_rank = node_rank;
  opts.master_addr = std::move(master_addr);
  opts.master_port = master_port;
  const std::string argv0 = argc > 0 ? argv[0] : "medr1";
  const auto args = strip_launcher_flags(argc, argv);
  spdlog::info("launcher: starting {} worker(s) (node {} of {}, world {}, master {}:{})",
               nproc_per_node, node_rank, nnodes, nproc_per_node * nnodes, opts.master_addr,
               master_port);
  const auto r = run_workers(opts, argv0, args);
  if (r.exit_code != 0) spdlog::error("launcher: {}", r.message);
  return r.exit_code;
}

}  // namespace medr1::dist
