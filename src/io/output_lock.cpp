// OutputLock (output_lock.h): flock(LOCK_EX | LOCK_NB) on a lock file; the holder writes a one-line
// description of itself into the file so a refused process can name it.
#include "medr1/io/output_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "medr1/core/error.h"

namespace medr1::io {
namespace {

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "?";
  return buf;
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string read_holder(int fd) {
  std::string s;
  char buf[1024];
  ssize_t n = 0;
  off_t off = 0;
  while ((n = pread(fd, buf, sizeof(buf), off)) > 0 && s.size() < 4096) {
    s.append(buf, static_cast<size_t>(n));
    off += n;
  }
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s;
}

}  // namespace

std::string current_command_line() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::string out;
  for (char c : raw) out += (c == '\0' ? ' ' : c);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (out.size() > 300) out = out.substr(0, 297) + "...";
  return out;
}

OutputLock::OutputLock(const std::string& lock_path, const std::string& what) : path_(lock_path) {
  fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  MEDR1_CHECK(fd_ >= 0, lock_path, ": cannot open the lock file of ", what, ": ",
              std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = read_holder(fd_);
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      fail(what, " is in use by another run (",
           holder.empty() ? std::string("holder unknown") : holder,
           "): wait for it to finish or stop it; lock file: ", lock_path);
    fail(lock_path, ": cannot lock ", what, ": ", std::strerror(err));
  }
  std::ostringstream os;
  os << "pid " << ::getpid() << " on " << host_name() << ", " << current_command_line()
     << ", since " << now_utc() << "\n";
  const std::string desc = os.str();
  // Best effort: the description is for messages only; the lock itself is the flock.
  if (::ftruncate(fd_, 0) == 0) {
    const ssize_t w = ::pwrite(fd_, desc.data(), desc.size(), 0);
    (void)w;
  }
}

OutputLock::~OutputLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
}

OutputLock::OutputLock(OutputLock&& o) noexcept
    : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)) {}

OutputLock& OutputLock::operator=(OutputLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

OutputLock lock_output_file(const std::string& file) {
  const std::filesystem::path p(file);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  return OutputLock(file + ".lock", "output " + file);
}

OutputLock lock_output_dir(const std::string& dir) {
  std::filesystem::create_directories(dir);
  return OutputLock((std::filesystem::path(dir) / ".medr1.lock").string(), "output folder " + dir);
}

}  // namespace medr1::io
