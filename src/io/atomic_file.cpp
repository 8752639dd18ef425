// Internal: crash-safe file replacement (see atomic_file.h).
#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "medr1/core/error.h"

namespace medr1::io::detail {

namespace {
std::atomic<uint64_t> g_counter{0};
}

std::string parent_dir(const std::string& path) {
  std::string p = std::filesystem::path(path).parent_path().string();
  return p.empty() ? std::string(".") : p;
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail(dir, ": cannot open folder for fsync (", std::strerror(errno), ")");
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some filesystems refuse fsync on folders (EINVAL); the rename itself is done then.
  if (rc != 0 && err != EINVAL) fail(dir, ": fsync of folder failed (", std::strerror(err), ")");
}

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  std::filesystem::path p(path);
  MEDR1_CHECK(!p.filename().empty(), path, ": not a file path");
  // Hidden temp name in the same folder, so the final rename never crosses filesystems.
  // (Built with append: GCC 12 warns falsely, -Wstringop-overflow, on "." + std::string.)
  std::string name(".");
  name.append(p.filename().string());
  name.append(".tmp-");
  name.append(std::to_string(::getpid()));
  name.append("-");
  name.append(std::to_string(g_counter.fetch_add(1)));
  tmp_ = (p.parent_path() / name).string();
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0) fail(path, ": cannot create temp file ", tmp_, " (", std::strerror(errno), ")");
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t n) {
  MEDR1_CHECK(fd_ >= 0, path_, ": write after commit");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    // Linux writes at most ~2 GiB per call; loop on partial writes and EINTR.
    size_t chunk = n < (size_t{1} << 30) ? n : (size_t{1} << 30);
    ssize_t w = ::write(fd_, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(path_, ": write failed after ", written_, " bytes (", std::strerror(errno), ")");
    }
    p += w;
    n -= static_cast<size_t>(w);
    written_ += static_cast<uint64_t>(w);
  }
}

void AtomicFile::commit() {
  MEDR1_CHECK(fd_ >= 0, path_, ": commit twice");
  if (::fsync(fd_) != 0) fail(path_, ": fsync failed (", std::strerror(errno), ")");
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp_.c_str());
    fail(path_, ": close failed (", std::strerror(err), ")");
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp_.c_str());
    fail(path_, ": rename from ", tmp_, " failed (", std::strerror(err), ")");
  }
  fsync_dir(parent_dir(path_));
}

}  // namespace medr1::io::detail
