// Internal: crash-safe file replacement (temp file in the same folder, write, fsync, rename,
// fsync the folder) shared by the safetensors writer and checkpoint.h. POSIX only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace medr1::io::detail {

// Writes `path` atomically: either the old file stays untouched or the new content is
// complete and durable. If commit() is not reached (exception), the temp file is removed.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  // fsync the file, close, rename over `path`, fsync the parent folder.
  void commit();
  const std::string& temp_path() const { return tmp_; }

 private:
  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
};

// fsync a folder so that renames/creations inside it are durable.
void fsync_dir(const std::string& dir);
// The parent folder of `path` ("." when there is none).
std::string parent_dir(const std::string& path);

}  // namespace medr1::io::detail
