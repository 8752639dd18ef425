// One writer per output: an advisory lock (flock on a lock file beside / inside the output) held
// for a run's life, so a second medr1-infer / medr1-eval / medr1-train on the same output file or
// folder is refused at start with a message naming the holder (pid, host, command, start time)
// instead of interleaving its writes. The kernel drops the lock when the holder exits or is killed
// (no stale locks to clean up); the lock file itself stays, holding the last holder's description.
// Advisory: only medr1 processes honour it.
#pragma once

#include <string>

namespace medr1::io {

class OutputLock {
 public:
  // Takes the lock `lock_path` (created if missing; its folder must exist) without waiting. Throws
  // medr1::Error
  //   "<what> is in use by another run (pid 1234 on host, medr1-infer --output x.jsonl, since
  //   2026-...):
  //    wait for it to finish or stop it; lock file: <lock_path>"
  // when another process holds it. `what` names the output in the message ("output x.jsonl").
  OutputLock(const std::string& lock_path, const std::string& what);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;
  OutputLock(OutputLock&& o) noexcept;
  OutputLock& operator=(OutputLock&& o) noexcept;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// The lock of an output FILE (medr1-infer's JSONL): "<file>.lock" beside it.
OutputLock lock_output_file(const std::string& file);
// The lock of an output FOLDER (medr1-train's output_dir, medr1-eval's output dir):
// "<dir>/.medr1.lock"; creates the folder if needed.
OutputLock lock_output_dir(const std::string& dir);

// This process's command line ("medr1-infer --output x.jsonl ..."), from /proc/self/cmdline; "" if
// unreadable.
std::string current_command_line();

}  // namespace medr1::io
