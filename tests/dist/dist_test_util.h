// Helpers for the multi-process dist tests: the test binary re-executes itself (through the
// launcher) with MEDR1_DIST_WORKER=<Name> and --gtest_filter=DistWorker.<Name>; the DistWorker
// tests skip unless that variable names them. Workers report through files in MEDR1_DIST_DIR.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
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

}  // namespace medr1::dist::testing
