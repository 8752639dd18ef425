// A torchrun-like local launcher: re-executes the current binary (/proc/self/exe) once per local
// rank with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT
// set and the launcher flags removed; forwards SIGINT/SIGTERM to the workers; when one worker
// fails (non-zero exit or signal) the others get SIGTERM, then SIGKILL after a grace period, and
// the failure is reported naming the rank and the cause. Mirrors torchrun's
// LocalElasticAgent without restarts. POSIX only; no torch dependency.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace medr1::dist {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // SIGTERM -> SIGKILL delay when stopping the surviving workers.
  std::chrono::milliseconds grace{std::chrono::seconds(10)};
  // 0 = none; otherwise every worker is stopped (and the launch fails) after this long.
  std::chrono::milliseconds deadline{0};
  // false: let the others run on after a worker failed (tests of the workers' own failure paths).
  bool terminate_on_failure = true;
  std::string exe = "/proc/self/exe";
  // Extra variables for the workers, on top of this process's environment.
  std::vector<std::pair<std::string, std::string>> extra_env;
};

struct WorkerExit {
  int rank = 0;
  int pid = 0;
  int exit_code = -1;  // when exited normally
  int signal = 0;      // when killed by a signal
  bool stopped_by_launcher = false;  // we sent it SIGTERM/SIGKILL
};

struct LaunchResult {
  int exit_code = 0;     // 0 when every worker exited 0; else the first failure's code (128+sig)
  int failed_rank = -1;  // first worker that failed on its own, -1 if none
  std::string message;   // e.g. "rank 1 (local 1, pid 4242) exited with code 3; stopped 1 other"
  std::vector<WorkerExit> workers;  // by local rank
};

// Starts the workers with `args` (argv[1..], launcher flags already removed; argv[0] is kept as
// `argv0`), waits for all of them. Throws medr1::Error when the options are invalid or fork fails.
LaunchResult run_workers(const LaunchOptions& opts, const std::string& argv0,
                         const std::vector<std::string>& args);

// argv without the launcher's own flags (--nproc-per-node/--nproc_per_node, --nnodes,
// --node-rank/--node_rank, --master-addr/--master_addr, --master-port/--master_port), in both the
// "--flag value" and "--flag=value" forms. argv[0] is not included in the result.
std::vector<std::string> strip_launcher_flags(int argc, const char* const* argv);

// The entry point for apps (`medr1-train --nproc-per-node N ...`): runs N workers of this binary
// with the remaining flags, logs a failure message naming the rank and cause (spdlog, stderr),
// and returns the exit code for main().
int launch_local(int nproc_per_node, int nnodes, int node_rank, std::string master_addr,
                 int master_port, int argc, const char* const* argv);

// "SIGKILL", "SIGSEGV", ... or "signal N".
std::string signal_name(int sig);

}  // namespace medr1::dist
