// Helpers for the multi-process dist tests: the test binary re-executes itself (through the
// launcher) with MEDR1_DIST_WORKER=<Name> and --gtest_filter=DistWorker.<Name>; the DistWorker
// tests skip unless that variable names them. Workers report through files in MEDR1_DIST_DIR.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "medr1/dist/launcher.h"

namespace medr1::dist::testing {

// A port the kernel just handed out (bind to 0), so parallel test runs do not collide.
inline int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

inline bool worker_is(const char* name) {
  const char* w = std::getenv("MEDR1_DIST_WORKER");
  return w != nullptr && std::string(w) == name;
}

inline std::filesystem::path worker_dir() {
  const char* d = std::getenv("MEDR1_DIST_DIR");
  return d != nullptr ? std::filesystem::path(d) : std::filesystem::temp_directory_path();
}

// A fresh scratch directory, removed on destruction.
struct ScratchDir {
  std::filesystem::path path;
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "medr1_dist_XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

inline LaunchOptions worker_options(const char* name, const ScratchDir& dir, int nproc = 2) {
  LaunchOptions o;
  o.nproc_per_node = nproc;
  o.master_port = free_port();
  o.grace = std::chrono::seconds(2);
  o.deadline = std::chrono::seconds(45);  // nothing may hang the suite
  o.extra_env = {{"MEDR1_DIST_WORKER", name}, {"MEDR1_DIST_DIR", dir.path.string()}};
  return o;
}

// Runs `nproc` workers of this test binary in scenario `name`.
inline LaunchResult run_scenario(const char* name, const LaunchOptions& o) {
  return run_workers(o, "test_dist",
                     {std::string("--gtest_filter=DistWorker.") + name, "--gtest_brief=1"});
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_text(const std::filesystem::path& p, const std::string& s) {
  std::ofstream f(p);
  f << s;
}

using Env = std::vector<std::pair<std::string, std::string>>;

// fork + exec of `exe` with `args` and extra variables `env`, stdout and stderr into `log`.
inline pid_t spawn(const std::filesystem::path& exe, const std::vector<std::string>& args, const Env& env,
                   const std::filesystem::path& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::string exe_s = exe.string();
    std::vector<std::string> copy = args;
    std::vector<char*> argv{exe_s.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(exe_s.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// Exit code (128 + signal when killed); kills the process and returns -1 after `timeout_s`.
inline int wait_for(pid_t pid, double timeout_s) {
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  while (true) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (std::chrono::steady_clock::now() - t0 > std::chrono::duration<double>(timeout_s)) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The variables torchrun sets for `rank` of a 2-process job on one node.
inline Env rank_env(int rank, int port, int world = 2) {
  return {{"RANK", std::to_string(rank)},        {"LOCAL_RANK", std::to_string(rank)},
          {"WORLD_SIZE", std::to_string(world)}, {"LOCAL_WORLD_SIZE", std::to_string(world)},
          {"GROUP_RANK", "0"},                   {"MASTER_ADDR", "127.0.0.1"},
          {"MASTER_PORT", std::to_string(port)}};
}

}  // namespace medr1::dist::testing
