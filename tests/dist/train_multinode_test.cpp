// medr1-train data parallel across "hosts" without real hosts: (1) two network namespaces joined by a veth
// pair on their own /30 subnet are node 0 and node 1 (--nnodes 2 --node_rank 0/1 --nproc-per-node 1, TCPStore
// and gloo over the veth addresses, never loopback nor any other address); (2) scripts/launch_slurm_example.sh
// in both MODEs with a fake srun/scontrol (tests/dist/fake_slurm/) that starts the tasks on this machine with the
// SLURM variables a real srun task sees. Each 2-node run must end with the weights of the one-host 2-rank
// launcher run bitwise, and log the same metrics per step (timings aside). The netns test skips, saying why,
// when namespaces cannot be made (not root, no `ip`, `ip netns add` refused as in unprivileged containers).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dist/dist_test_util.h"
#include "dist/train_test_util.h"

namespace medr1::dist {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing::Env;
using testing::Fixture;
using testing::free_port;
using testing::kTokenizer;
using testing::kTrain;
using testing::max_abs_diff;
using testing::read_metrics;
using testing::read_text;
using testing::ScratchDir;
using testing::seconds_since;

// The training run of every test here: GRPO as in TrainDdp.GrpoTwoRanksEqualsSingleProcessWithAccumulation
// (seed 7, 2 steps, 1 prompt per rank per step), i.e. 2 ranks x GA 1.
std::vector<std::string> run_args(const Fixture& fx, const fs::path& out) { return fx.grpo_args(out, 1, 2); }

// fork + exec in a process group of its own (so a timeout can kill whatever it started: the launcher's
// workers, the fake srun's tasks), stdout and stderr into `log`; the child dies with this process (SIGKILL),
// and medr1-train's launcher takes its workers along.
pid_t spawn_group(const std::string& exe, const std::vector<std::string>& args, const Env& env,
                  const fs::path& log) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<std::string> copy = args;
    std::string exe_s = exe;
    std::vector<char*> argv{exe_s.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(exe_s.c_str(), argv.data());
    _exit(127);
  }
  if (pid > 0) setpgid(pid, pid);  // also here: no race with an early kill of the group
  return pid;
}

// Exit code (128 + signal when killed); after `timeout_s` the whole group is killed and -1 returned. Whatever
// is left of the group afterwards is killed too (nothing outlives a test).
int wait_group(pid_t pid, double timeout_s) {
  const auto t0 = Clock::now();
  int status = 0;
  int rc = -1;
  while (true) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (seconds_since(t0) > timeout_s) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(-pid, SIGKILL);
  return rc;
}

// The one-host reference: medr1-train's launcher with 2 ranks over loopback; once per test process.
fs::path one_host_reference(const Fixture& fx, double* seconds) {
  static ScratchDir shared;
  static double cached_s = -1;
  const fs::path out = shared.path / "one_host";
  if (cached_s < 0) {
    std::vector<std::string> args = run_args(fx, out);
    args.insert(args.end(), {"--nproc-per-node", "2", "--master-port", std::to_string(free_port())});
    const auto t0 = Clock::now();
    const int rc = wait_group(spawn_group(kTrain.string(), args, {}, shared.path / "one_host.log"), 55);
    cached_s = seconds_since(t0);
    EXPECT_EQ(rc, 0) << read_text(shared.path / "one_host.log");
  }
  *seconds = cached_s;
  return out;
}

// `got` (an output_dir) holds the same run as the reference `ref`: final weights bitwise, metrics.jsonl with the
// same keys and the same values per step apart from the timings.
void expect_same_run(const fs::path& ref, const fs::path& got, const fs::path& start_model) {
  ASSERT_TRUE(fs::exists(ref / "model.safetensors")) << ref;
  ASSERT_TRUE(fs::exists(got / "model.safetensors")) << got;
  const double moved = max_abs_diff(ref / "model.safetensors", start_model);
  const double diff = max_abs_diff(ref / "model.safetensors", got / "model.safetensors");
  std::printf("[multinode] %s: weights moved by %.3g; max |got - one-host 2 ranks| = %.3g\n",
              got.filename().c_str(), moved, diff);
  EXPECT_GT(moved, 1e-4);  // training really changed the weights (else equality would be vacuous)
  EXPECT_EQ(diff, 0.0);
  const auto one = read_metrics(ref / "metrics.jsonl");
  const auto two = read_metrics(got / "metrics.jsonl");
  ASSERT_EQ(one.size(), 2u);
  ASSERT_EQ(two.size(), one.size());
  const std::set<std::string> timings = {"step_time", "rollout_tokens_per_s", "train_tokens_per_s"};
  double reward_std_sum = 0;
  for (size_t k = 0; k < one.size(); ++k) {
    std::set<std::string> keys_one, keys_two;
    for (const auto& [key, v] : one[k].items()) keys_one.insert(key);
    for (const auto& [key, v] : two[k].items()) keys_two.insert(key);
    EXPECT_EQ(keys_two, keys_one) << "step " << k + 1;
    for (const auto& key : keys_one) {
      if (timings.count(key) != 0 || !two[k].contains(key)) continue;
      EXPECT_EQ(two[k].at(key), one[k].at(key)) << "step " << k + 1 << " " << key;
    }
    reward_std_sum += one[k].value("reward_std", 0.0);
  }
  EXPECT_GT(reward_std_sum, 0.0) << "all rewards of a group equal: zero advantages, nothing to compare";
}

// ---------------------------------------------------------------------------------------------------------------
// (1) Two network namespaces.

std::string find_exe(const std::string& name) {
  std::vector<std::string> dirs;
  if (const char* p = std::getenv("PATH")) {
    std::string s = p;
    for (size_t b = 0; b <= s.size();) {
      const size_t e = s.find(':', b);
      dirs.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
      if (e == std::string::npos) break;
      b = e + 1;
    }
  }
  for (const char* d : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) dirs.emplace_back(d);
  for (const auto& d : dirs) {
    const fs::path p = fs::path(d.empty() ? "." : d) / name;
    if (access(p.c_str(), X_OK) == 0) return p.string();
  }
  return "";
}

// Runs `cmd` through the shell; its exit status, stdout+stderr in *out.
int shell(const std::string& cmd, std::string* out = nullptr) {
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (f == nullptr) return -1;
  std::string s;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
  const int st = pclose(f);
  if (out != nullptr) *out = s;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

// Two namespaces "medr1t-<pid>-a" / "-b" with a veth pair medr1v0 (in a) <-> medr1v1 (in b) on
// 10.213.<pid % 256>.0/30 (.1 in a, .2 in b), lo and the veth ends up; the only addresses the test's processes
// can reach. The destructor deletes both namespaces (the veth pair dies with them), whatever happened.
class NetnsPair {
 public:
  const std::string a = "medr1t-" + std::to_string(getpid()) + "-a";
  const std::string b = "medr1t-" + std::to_string(getpid()) + "-b";
  const std::string veth_a = "medr1v0", veth_b = "medr1v1";
  const std::string subnet = "10.213." + std::to_string(getpid() % 256) + ".";
  const std::string addr_a = subnet + "1", addr_b = subnet + "2";
  std::string ip;     // the iproute2 binary
  std::string error;  // why up() failed

  NetnsPair() = default;
  NetnsPair(const NetnsPair&) = delete;
  NetnsPair& operator=(const NetnsPair&) = delete;
  ~NetnsPair() {
    if (made_b_) shell(ip + " netns del " + b);
    if (made_a_) shell(ip + " netns del " + a);
  }

  // false with `error` set when namespaces cannot be made here (the caller skips).
  bool up() {
    if (geteuid() != 0) return refuse("needs root for `ip netns add` (euid " + std::to_string(geteuid()) + ")");
    ip = find_exe("ip");
    if (ip.empty()) return refuse("no `ip` (iproute2) on PATH or in /usr/sbin, /sbin");
    remove_stale();
    std::string out;
    shell(ip + " netns del " + a, &out);  // left by an earlier process with our pid (errors: nothing there)
    shell(ip + " netns del " + b, &out);
    if (shell(ip + " netns add " + a, &out) != 0) return refuse("`ip netns add " + a + "` failed: " + out);
    made_a_ = true;
    if (shell(ip + " netns add " + b, &out) != 0) return refuse("`ip netns add " + b + "` failed: " + out);
    made_b_ = true;
    const std::string in_a = ip + " -n " + a + " ", in_b = ip + " -n " + b + " ";
    for (const std::string& cmd :
         {in_a + "link add " + veth_a + " type veth peer name " + veth_b + " netns " + b,
          in_a + "addr add " + addr_a + "/30 dev " + veth_a, in_b + "addr add " + addr_b + "/30 dev " + veth_b,
          in_a + "link set lo up", in_b + "link set lo up", in_a + "link set " + veth_a + " up",
          in_b + "link set " + veth_b + " up"}) {
      if (shell(cmd, &out) != 0) return refuse("`" + cmd + "` failed: " + out);
    }
    return true;
  }

  // Bytes the veth end in namespace a sent / received so far (-1 when unreadable).
  std::pair<long long, long long> veth_a_bytes() const {
    std::string out;
    if (shell(ip + " -s -j -n " + a + " link show dev " + veth_a, &out) != 0) return {-1, -1};
    try {
      const auto j = nlohmann::json::parse(out).at(0).at("stats64");
      return {j.at("tx").at("bytes").get<long long>(), j.at("rx").at("bytes").get<long long>()};
    } catch (const std::exception&) {
      return {-1, -1};
    }
  }

 private:
  bool made_a_ = false, made_b_ = false;

  bool refuse(std::string why) {
    error = std::move(why);
    return false;
  }

  // Namespaces of earlier runs of this test whose process is gone (killed before its destructor ran).
  void remove_stale() const {
    std::string out;
    if (shell(ip + " netns list", &out) != 0) return;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      const std::string name = line.substr(0, line.find(' '));
      if (name.rfind("medr1t-", 0) != 0 || name.size() < 10) continue;
      const std::string pid_s = name.substr(7, name.size() - 9);
      if (pid_s.empty() || pid_s.find_first_not_of("0123456789") != std::string::npos) continue;
      if (kill(std::stoi(pid_s), 0) == -1 && errno == ESRCH) shell(ip + " netns del " + name);
    }
  }
};

TEST(TrainMultiNode, TwoNetnsNodesOverVethEqualOneHostTwoRanks) {
  if (!testing::train_prerequisites()) GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  NetnsPair ns;
  if (!ns.up()) GTEST_SKIP() << "cannot make network namespaces here: " << ns.error;
  ScratchDir dir;
  Fixture fx(dir.path);
  double t_ref = 0;
  const fs::path ref = one_host_reference(fx, &t_ref);

  // Node n in namespace n: `ip netns exec` execs medr1-train in place, whose launcher starts the one local
  // rank. gloo binds to the veth (GLOO_SOCKET_IFNAME): by hostname it would pick 127.0.0.1 ("vm" resolves to
  // loopback through /etc/hosts), which the other node cannot reach. Separate output_dirs, as on hosts
  // without a shared disk: node 0 (rank 0) writes the model and the metrics.
  const std::string port = std::to_string(free_port());
  auto node = [&](int rank) {
    std::vector<std::string> args = {"netns", "exec", rank == 0 ? ns.a : ns.b, kTrain.string()};
    for (auto& a : run_args(fx, dir.path / ("node" + std::to_string(rank)))) args.push_back(a);
    args.insert(args.end(), {"--nnodes", "2", "--node_rank", std::to_string(rank), "--nproc-per-node", "1",
                             "--master_addr", ns.addr_a, "--master_port", port});
    const Env env = {{"GLOO_SOCKET_IFNAME", rank == 0 ? ns.veth_a : ns.veth_b}};
    return spawn_group(ns.ip, args, env, dir.path / ("node" + std::to_string(rank) + ".log"));
  };
  const auto t0 = Clock::now();
  const pid_t n0 = node(0), n1 = node(1);
  const int rc0 = wait_group(n0, 55), rc1 = wait_group(n1, 15);
  const double t_nodes = seconds_since(t0);
  const std::string log0 = read_text(dir.path / "node0.log"), log1 = read_text(dir.path / "node1.log");
  ASSERT_EQ(rc0, 0) << log0;
  ASSERT_EQ(rc1, 0) << log1;
  const auto [tx, rx] = ns.veth_a_bytes();
  const auto model_bytes = static_cast<long long>(fs::file_size(fx.model / "model.safetensors"));
  std::printf("[multinode] netns: one host 2 ranks %.2f s, 2 nodes over %s-%s (%s/30) %.2f s; node 0's veth sent "
              "%lld, received %lld bytes (model %lld bytes)\n",
              t_ref, ns.veth_a.c_str(), ns.veth_b.c_str(), ns.addr_a.c_str(), t_nodes, tx, rx, model_bytes);
  // Each launcher saw itself as one of two nodes with the master on node 0's veth address.
  for (int r = 0; r < 2; ++r) {
    const std::string want = "(node " + std::to_string(r) + " of 2, world 2, master " + ns.addr_a + ":" + port + ")";
    EXPECT_NE((r == 0 ? log0 : log1).find(want), std::string::npos) << "node " << r << ": no '" << want << "'";
  }
  // The collectives really crossed the veth: rank 0's initial broadcast of the weights alone is a model's worth
  // of bytes from node 0 to node 1, and each of the 2 gradient allreduces (every weight trainable) sends about
  // a model's worth back (measured: 4 and 2 models' worth).
  EXPECT_GE(tx, model_bytes);
  EXPECT_GE(rx, model_bytes);
  expect_same_run(ref, dir.path / "node0", fx.model / "model.safetensors");
}

// ---------------------------------------------------------------------------------------------------------------
// (2) scripts/launch_slurm_example.sh with a fake srun / scontrol.

const fs::path kSlurmScript = fs::path(MEDR1_SOURCE_DIR) / "scripts" / "launch_slurm_example.sh";
const fs::path kFakeSlurm = fs::path(MEDR1_SOURCE_DIR) / "tests" / "dist" / "fake_slurm";

// A bin/ with the fake srun and scontrol (copied, made executable whatever git kept of the mode bits).
fs::path fake_slurm_bin(const fs::path& root) {
  const fs::path bin = root / "bin";
  fs::create_directories(bin);
  for (const char* f : {"srun", "scontrol", "echo_task"}) {
    fs::copy_file(kFakeSlurm / f, bin / f, fs::copy_options::overwrite_existing);
    fs::permissions(bin / f, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
  }
  return bin;
}

// What sbatch --nodes=<nnodes> gives the batch script, and the script's own variables.
Env slurm_env(const fs::path& root, const std::string& mode, int nnodes, int gpus_per_node, const fs::path& bin,
              const std::string& medr1_bin, int port) {
  return {{"PATH", bin.string() + ":" + std::string(std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin")},
          {"SLURM_JOB_ID", "4242"},
          {"SLURM_NNODES", std::to_string(nnodes)},
          {"SLURM_JOB_NUM_NODES", std::to_string(nnodes)},
          {"SLURM_JOB_NODELIST", "fake[0-" + std::to_string(nnodes - 1) + "]"},
          {"FAKE_SLURM_LOG", (root / "slurm_calls.log").string()},
          {"FAKE_SLURM_DIR", root.string()},
          {"MODE", mode},
          {"GPUS_PER_NODE", std::to_string(gpus_per_node)},
          {"MEDR1_BIN", medr1_bin},
          {"MEDR1_DEVICE", "cpu"},
          {"MASTER_PORT", std::to_string(port)}};
}

int run_slurm_script(const Env& env, const fs::path& config, const std::vector<std::string>& extra,
                     const fs::path& log, double timeout_s) {
  std::vector<std::string> args = {kSlurmScript.string(), config.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  return wait_group(spawn_group(find_exe("bash"), args, env, log), timeout_s);
}

// The variables and arguments each task's medr1-train would get (echo_task stands in for it): 2 nodes x 2 GPUs.
TEST(TrainMultiNode, SlurmScriptMapsSlurmVariablesPerTask) {
  ScratchDir dir;
  const fs::path bin = fake_slurm_bin(dir.path);
  const fs::path config = dir.path / "a config.json";  // a space: the script must keep every word whole
  const std::vector<std::string> extra = {"--run_name", "two words", "--seed", "7"};
  for (const char* m : {"srun", "launcher"}) {
    const std::string mode = m;
    SCOPED_TRACE("MODE=" + mode);
    for (int t = 0; t < 4; ++t) fs::remove(dir.path / ("task" + std::to_string(t) + ".txt"));
    const Env env = slurm_env(dir.path, mode, 2, 2, bin, (bin / "echo_task").string(), 23456);
    const int rc = run_slurm_script(env, config, extra, dir.path / (mode + ".log"), 20);
    ASSERT_EQ(rc, 0) << read_text(dir.path / (mode + ".log"));
    const std::string calls = read_text(dir.path / "slurm_calls.log");
    EXPECT_NE(calls.find("scontrol show hostnames fake[0-1]"), std::string::npos) << calls;
    const int tasks = mode == "srun" ? 4 : 2;
    EXPECT_NE(calls.find("srun ntasks-per-node=" + std::to_string(tasks / 2) + " kill-on-bad-exit=1 nnodes=2"),
              std::string::npos)
        << calls;
    for (int t = 0; t < 4; ++t) {
      const fs::path f = dir.path / ("task" + std::to_string(t) + ".txt");
      if (t >= tasks) {
        EXPECT_FALSE(fs::exists(f)) << "task " << t;
        continue;
      }
      std::string want = "MASTER_ADDR=127.0.0.1\nMASTER_PORT=23456\nSLURM_NODEID=" +
                         std::to_string(mode == "srun" ? t / 2 : t) + "\narg=--config\narg=" + config.string() + "\n";
      if (mode == "srun") {
        want = "RANK=" + std::to_string(t) + "\nLOCAL_RANK=" + std::to_string(t % 2) +
               "\nWORLD_SIZE=4\nLOCAL_WORLD_SIZE=2\nGROUP_RANK=" + std::to_string(t / 2) + "\n" + want;
      } else {  // the launcher sets torchrun's variables itself
        want = "RANK=<unset>\nLOCAL_RANK=<unset>\nWORLD_SIZE=<unset>\nLOCAL_WORLD_SIZE=<unset>\nGROUP_RANK=<unset>\n" +
               want + "arg=--nproc-per-node\narg=2\narg=--nnodes\narg=2\narg=--node-rank\narg=" + std::to_string(t) +
               "\narg=--master-addr\narg=127.0.0.1\narg=--master-port\narg=23456\n";
      }
      want += "arg=--run_name\narg=two words\narg=--seed\narg=7\narg=--device\narg=cpu\n";
      EXPECT_EQ(read_text(f), want) << "task " << t;
    }
  }
}

// Both MODEs start 2 real medr1-train ranks over loopback as 2 "nodes" x 1 rank (the srun tasks get
// RANK/GROUP_RANK 0/1, LOCAL_RANK 0); each run must equal the one-host launcher run.
TEST(TrainMultiNode, SlurmScriptBothModesEqualOneHostLauncher) {
  if (!testing::train_prerequisites()) GTEST_SKIP() << "needs " << kTrain << " and " << kTokenizer;
  ScratchDir dir;
  Fixture fx(dir.path);
  const fs::path bin = fake_slurm_bin(dir.path);
  double t_ref = 0;
  const fs::path ref = one_host_reference(fx, &t_ref);
  // The run config is the fixture's flags (extra arguments of the script, which outrank the file).
  const fs::path config = dir.path / "run.json";
  std::ofstream(config) << R"({"run_name": "fake-slurm"})";
  for (const char* m : {"srun", "launcher"}) {
    const std::string mode = m;
    SCOPED_TRACE("MODE=" + mode);
    const fs::path out = dir.path / mode;
    const Env env = slurm_env(dir.path, mode, 2, 1, bin, kTrain.string(), free_port());
    const auto t0 = Clock::now();
    const int rc = run_slurm_script(env, config, run_args(fx, out), dir.path / (mode + ".log"), 55);
    const double t_run = seconds_since(t0);
    ASSERT_EQ(rc, 0) << read_text(dir.path / (mode + ".log"));
    std::printf("[multinode] slurm MODE=%s: 2 tasks %.2f s (one host launcher %.2f s)\n", mode.c_str(), t_run,
                t_ref);
    expect_same_run(ref, out, fx.model / "model.safetensors");
  }
}

}  // namespace
}  // namespace medr1::dist
