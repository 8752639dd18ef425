// External reward process (external_reward.h): posix_spawn of /bin/sh -c <command> with
// close-on-exec pipes for stdin / stdout, non-blocking parent ends polled against one deadline
// per call, SIGPIPE blocked around writes (EPIPE is reported instead), and a process group so a
// shell's children are signalled with it.
#include "medr1/rl/external_reward.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "medr1/core/error.h"

extern char** environ;

namespace medr1::rl {
namespace {

using Clock = std::chrono::steady_clock;

std::string describe_status(int st) {
  if (WIFEXITED(st)) return "exited with status " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st))
    return "was killed by signal " + std::to_string(WTERMSIG(st)) + " (" +
           ::strsignal(WTERMSIG(st)) + ")";
  return "stopped";
}

// The first 200 bytes of a reply, for error messages.
std::string head(const std::string& s) { return s.size() <= 200 ? s : s.substr(0, 200) + "..."; }

// Blocks SIGPIPE in this thread for the guard's lifetime; a SIGPIPE raised meanwhile by a write
// to a closed pipe is consumed before the mask is restored, so it never kills the trainer.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{0, 0};
        sigtimedwait(&pipe_, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_{}, old_{};
  bool was_pending_ = false;
};

class ExternalProcess {
 public:
  ExternalProcess(std::string command, double timeout_s)
      : command_(std::move(command)), timeout_s_(timeout_s) {
    MEDR1_CHECK(!command_.empty(), "external reward: empty command");
    MEDR1_CHECK(std::isfinite(timeout_s) && timeout_s > 0, "external reward '", command_,
                "': timeout must be > 0 seconds, got ", timeout_s);
    start();
  }
  ~ExternalProcess() { stop(/*graceful=*/true); }
  ExternalProcess(const ExternalProcess&) = delete;
  ExternalProcess& operator=(const ExternalProcess&) = delete;

  std::vector<double> call(const RewardInputs& in) {
    std::lock_guard<std::mutex> lock(mu_);
    if (in.completions.size() != in.solutions.size())
      error(in.completions.size(), " completions but ", in.solutions.size(), " solutions");
    if (in.completions.empty()) return {};
    if (pid_ < 0) start();
    try {
      return exchange(in);
    } catch (...) {
      stop(/*graceful=*/false);  // the stream is out of step now; the next call starts afresh
      throw;
    }
  }

 private:
  template <typename... Args>
  [[noreturn]] void error(Args&&... args) const {
    fail("external reward '", command_, "': ", std::forward<Args>(args)...);
  }

  void start() {
    int in_fds[2], out_fds[2];
    if (::pipe2(in_fds, O_CLOEXEC) != 0) error("pipe failed: ", std::strerror(errno));
    if (::pipe2(out_fds, O_CLOEXEC) != 0) {
      const int e = errno;
      ::close(in_fds[0]);
      ::close(in_fds[1]);
      error("pipe failed: ", std::strerror(e));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in_fds[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out_fds[1], 1);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none, dfl;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    std::string sh = "/bin/sh", dash_c = "-c", cmd = command_;
    char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    ::close(in_fds[0]);
    ::close(out_fds[1]);
    if (rc != 0) {
      ::close(in_fds[1]);
      ::close(out_fds[0]);
      error("cannot start /bin/sh: ", std::strerror(rc));
    }
    pid_ = pid;
    to_child_ = in_fds[1];
    from_child_ = out_fds[0];
    ::fcntl(to_child_, F_SETFL, ::fcntl(to_child_, F_GETFL) | O_NONBLOCK);
    ::fcntl(from_child_, F_SETFL, ::fcntl(from_child_, F_GETFL) | O_NONBLOCK);
    buf_.clear();
  }

  // Reaps the child if it ends within `seconds`; true when it is gone (status_ set).
  bool reap_within(double seconds) {
    const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(seconds));
    for (;;) {
      int st = 0;
      const pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_ || (r < 0 && errno == ECHILD)) {
        status_ = r == pid_ ? st : -1;
        pid_ = -1;
        return true;
      }
      if (Clock::now() >= until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // Closes the pipes and ends the child: EOF on its stdin first when graceful, then SIGTERM and
  // SIGKILL to its process group.
  void stop(bool graceful) {
    if (to_child_ >= 0) ::close(to_child_);
    if (from_child_ >= 0) ::close(from_child_);
    to_child_ = from_child_ = -1;
    if (pid_ <= 0) return;
    if (graceful && reap_within(2.0)) return;
    ::kill(-pid_, SIGTERM);
    if (reap_within(2.0)) return;
    ::kill(-pid_, SIGKILL);
    reap_within(std::numeric_limits<double>::infinity());
  }

  [[noreturn]] void exited(const char* what) {
    const std::string partial = buf_.empty() ? "" : "; its partial output: '" + head(buf_) + "'";
    if (reap_within(2.0)) {
      if (status_ == -1) error("the process ", what, partial);
      error("the process ", describe_status(status_), " (it ", what, ")", partial);
    }
    error("the process ", what, " but is still running", partial);
  }

  void wait_fd(int fd, short events, Clock::time_point deadline) {
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0)
        error("no reply within the timeout of ", timeout_s_, " s; the process was killed");
      pollfd p{fd, events, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count() + 1, 1 << 30)));
      if (r > 0) return;  // ready, or POLLHUP / POLLERR, which the read / write then reports
      if (r < 0 && errno != EINTR) error("poll failed: ", std::strerror(errno));
    }
  }

  void write_all(const std::string& s, Clock::time_point deadline) {
    size_t off = 0;
    while (off < s.size()) {
      wait_fd(to_child_, POLLOUT, deadline);
      ssize_t n = 0;
      int e = 0;
      {
        SigpipeGuard guard;
        n = ::write(to_child_, s.data() + off, s.size() - off);
        e = errno;
      }
      if (n < 0) {
        if (e == EINTR || e == EAGAIN) continue;
        if (e == EPIPE) exited("closed its stdin");
        error("write failed: ", std::strerror(e));
      }
      off += static_cast<size_t>(n);
    }
  }

  std::string read_line(Clock::time_point deadline) {
    for (;;) {
      const size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      wait_fd(from_child_, POLLIN, deadline);
      char tmp[65536];
      const ssize_t n = ::read(from_child_, tmp, sizeof tmp);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        error("read failed: ", std::strerror(errno));
      }
      if (n == 0) exited("closed its stdout before replying");
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  std::vector<double> exchange(const RewardInputs& in) {
    const nlohmann::json req = {{"completions", in.completions},
                                {"solutions", in.solutions},
                                {"prompt_mode", to_string(in.mode)}};
    // Invalid UTF-8 goes out as U+FFFD, as Python sees text decoded with errors="replace".
    const std::string line =
        req.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(timeout_s_));
    write_all(line, deadline);
    const std::string reply = read_line(deadline);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(reply);
    } catch (const nlohmann::json::exception&) {
      error("reply is not JSON: '", head(reply), "'");
    }
    if (j.is_object() && j.contains("error"))
      error("the process reported an error: ",
            j["error"].is_string() ? j["error"].get<std::string>() : j["error"].dump());
    if (!j.is_object() || !j.contains("rewards") || !j["rewards"].is_array())
      error("reply is not {\"rewards\": [...]}: '", head(reply), "'");
    const auto& arr = j["rewards"];
    const size_t n = in.completions.size();
    if (arr.size() != n) error("returned ", arr.size(), " rewards for ", n, " completions");
    std::vector<double> out(n);
    for (size_t i = 0; i < n; ++i) {
      if (arr[i].is_null())
        out[i] = std::numeric_limits<double>::quiet_NaN();
      else if (arr[i].is_number())
        out[i] = arr[i].get<double>();
      else
        error("rewards[", i, "] is ", arr[i].dump(), ", not a number or null");
    }
    return out;
  }

  const std::string command_;
  const double timeout_s_;
  std::mutex mu_;
  pid_t pid_ = -1;
  int to_child_ = -1, from_child_ = -1;
  int status_ = 0;
  std::string buf_;  // bytes read past the last reply line
};

}  // namespace

bool is_external_reward_name(std::string_view name) {
  return name.size() > kExternalRewardPrefix.size() &&
         name.substr(0, kExternalRewardPrefix.size()) == kExternalRewardPrefix;
}

RewardFunc make_external_reward(const std::string& command, double timeout_s) {
  auto proc = std::make_shared<ExternalProcess>(command, timeout_s);
  return [proc](const RewardInputs& in) { return proc->call(in); };
}

}  // namespace medr1::rl
