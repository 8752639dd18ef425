// The launcher: workers see torchrun's variables and no launcher flags; a failing rank is
// reported by rank and cause and the others are stopped (SIGTERM, then SIGKILL); SIGTERM to the
// launcher reaches every worker.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <thread>

#include "dist/dist_test_util.h"
#include "medr1/core/error.h"
#include "medr1/dist/launch_env.h"
#include "medr1/dist/launcher.h"

namespace medr1::dist {
namespace {

using testing::read_text;
using testing::worker_dir;
using testing::worker_is;
using testing::write_text;

TEST(DistWorker, EnvEcho) {
  if (!worker_is("EnvEcho")) GTEST_SKIP() << "worker mode only";
  const auto e = read_launch_env();
  write_text(worker_dir() / ("env_r" + std::to_string(e.rank) + ".txt"),
             std::to_string(e.rank) + " " + std::to_string(e.local_rank) + " " +
                 std::to_string(e.world_size) + " " + std::to_string(e.local_world_size) + " " +
                 std::to_string(e.group_rank) + " " + e.master_addr + " " +
                 std::to_string(e.master_port));
}

// Rank 1 fails (exit 3, or SIGKILL); rank 0 ignores SIGTERM and would sleep 30 s, so the launcher
// has to escalate to SIGKILL after its grace period.
void fail_one(bool by_signal) {
  const auto e = read_launch_env();
  const auto ready = worker_dir() / "rank0_ignores_sigterm";
  if (e.rank == 1) {
    // Fail only once rank 0 ignores SIGTERM (start-up of a loaded machine can take seconds).
    for (int i = 0; i < 2000 && !std::filesystem::exists(ready); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (by_signal) std::raise(SIGKILL);
    std::_Exit(3);
  }
  std::signal(SIGTERM, SIG_IGN);
  write_text(ready, "1");
  std::this_thread::sleep_for(std::chrono::seconds(30));
}

TEST(DistWorker, FailOne) {
  if (!worker_is("FailOne")) GTEST_SKIP() << "worker mode only";
  fail_one(false);
}

TEST(DistWorker, KillOne) {
  if (!worker_is("KillOne")) GTEST_SKIP() << "worker mode only";
  fail_one(true);
}

TEST(DistWorker, Sleeper) {
  if (!worker_is("Sleeper")) GTEST_SKIP() << "worker mode only";
  std::this_thread::sleep_for(std::chrono::seconds(30));
}

TEST(Launcher, StripsLauncherFlags) {
  const char* argv[] = {"medr1-train", "--nproc-per-node", "4", "--config", "a.json",
                        "--master_port=1234", "--nnodes=1", "--node-rank", "0", "--lr=3"};
  const auto out = strip_launcher_flags(10, argv);
  EXPECT_EQ(out, (std::vector<std::string>{"--config", "a.json", "--lr=3"}));
}

TEST(Launcher, LaunchLocalRunsWorkersWithTorchrunEnv) {
  testing::ScratchDir dir;
  const int port = testing::free_port();
  setenv("MEDR1_DIST_WORKER", "EnvEcho", 1);
  setenv("MEDR1_DIST_DIR", dir.path.c_str(), 1);
  const std::string port_flag = "--master-port=" + std::to_string(port);
  const char* argv[] = {"test_dist", "--nproc-per-node", "2", "--gtest_filter=DistWorker.EnvEcho",
                        port_flag.c_str(), "--gtest_brief=1"};
  const int rc = launch_local(2, 1, 0, "127.0.0.1", port, 6, argv);
  unsetenv("MEDR1_DIST_WORKER");
  unsetenv("MEDR1_DIST_DIR");
  ASSERT_EQ(rc, 0);
  const std::string p = std::to_string(port);
  EXPECT_EQ(read_text(dir.path / "env_r0.txt"), "0 0 2 2 0 127.0.0.1 " + p);
  EXPECT_EQ(read_text(dir.path / "env_r1.txt"), "1 1 2 2 0 127.0.0.1 " + p);
}

TEST(Launcher, FailingRankStopsTheOthersAndIsNamed) {
  testing::ScratchDir dir;
  auto o = testing::worker_options("FailOne", dir);
  o.grace = std::chrono::milliseconds(1000);
  const auto t0 = std::chrono::steady_clock::now();
  const auto res = testing::run_scenario("FailOne", o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(res.exit_code, 3);
  EXPECT_EQ(res.failed_rank, 1);
  EXPECT_NE(res.message.find("rank 1 (local 1, pid"), std::string::npos) << res.message;
  EXPECT_NE(res.message.find("exited with code 3"), std::string::npos) << res.message;
  EXPECT_NE(res.message.find("SIGKILL after the grace period"), std::string::npos) << res.message;
  ASSERT_EQ(res.workers.size(), 2u);
  EXPECT_TRUE(res.workers[0].stopped_by_launcher);
  EXPECT_EQ(res.workers[0].signal, SIGKILL);  // it ignored SIGTERM
  EXPECT_LT(secs, 15.0);                      // not the worker's 30 s sleep
}

TEST(Launcher, SignalDeathIsNamed) {
  testing::ScratchDir dir;
  auto o = testing::worker_options("KillOne", dir);
  o.grace = std::chrono::milliseconds(500);
  const auto res = testing::run_scenario("KillOne", o);
  EXPECT_EQ(res.exit_code, 128 + SIGKILL);
  EXPECT_EQ(res.failed_rank, 1);
  EXPECT_NE(res.message.find("rank 1 (local 1, pid"), std::string::npos) << res.message;
  EXPECT_NE(res.message.find("was killed by SIGKILL"), std::string::npos) << res.message;
}

TEST(Launcher, ForwardsSigtermToWorkers) {
  testing::ScratchDir dir;
  auto o = testing::worker_options("Sleeper", dir);
  // SIGTERM to this (launcher) process while the workers sleep: it must reach both of them.
  std::thread sender([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    kill(getpid(), SIGTERM);
  });
  const auto t0 = std::chrono::steady_clock::now();
  const auto res = testing::run_scenario("Sleeper", o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  sender.join();
  EXPECT_EQ(res.exit_code, 128 + SIGTERM);
  EXPECT_EQ(res.failed_rank, -1);
  EXPECT_NE(res.message.find("launcher received SIGTERM"), std::string::npos) << res.message;
  ASSERT_EQ(res.workers.size(), 2u);
  EXPECT_EQ(res.workers[0].signal, SIGTERM);
  EXPECT_EQ(res.workers[1].signal, SIGTERM);
  EXPECT_LT(secs, 15.0);
}

TEST(Launcher, RejectsBadOptions) {
  LaunchOptions o;
  o.nproc_per_node = 0;
  EXPECT_THROW(run_workers(o, "x", {}), medr1::Error);
  o.nproc_per_node = 1;
  o.node_rank = 1;
  EXPECT_THROW(run_workers(o, "x", {}), medr1::Error);
}

}  // namespace
}  // namespace medr1::dist
