// Crash-safe resumable JSONL writer (jsonl_writer.h).
#include "medr1/data/jsonl_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "medr1/core/error.h"

namespace medr1::data {

using nlohmann::json;

namespace {
std::string errno_text() { return std::strerror(errno); }

int64_t index_of(const json& j, const std::string& key, const std::string& where) {
  auto it = j.find(key);
  MEDR1_CHECK(it != j.end(), where, ": ", key, ": missing");
  MEDR1_CHECK(it->is_number_integer(), where, ": ", key, ": expected integer");
  return it->get<int64_t>();
}
}  // namespace

JsonlWriter::JsonlWriter(std::string path, JsonlWriterOptions opts)
    : path_(std::move(path)), opts_(std::move(opts)) {
  MEDR1_CHECK(opts_.fsync_every >= 0, path_, ": fsync_every must be >= 0, got ", opts_.fsync_every);
  const auto parent = std::filesystem::path(path_).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    MEDR1_CHECK(!ec, parent.string(), ": cannot create folder (", ec.message(), ")");
  }
  int flags = O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC;
  if (!opts_.resume) flags |= O_TRUNC;
  fd_ = ::open(path_.c_str(), flags, 0644);
  MEDR1_CHECK(fd_ >= 0, path_, ": cannot open for writing (", errno_text(), ")");
  try {
    scan_existing();
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

JsonlWriter::~JsonlWriter() {
  try {
    close();
  } catch (...) {
    // Destructors must not throw; close() already reported nothing we could act on here.
  }
}

void JsonlWriter::scan_existing() {
  std::string text;
  {
    std::ifstream in(path_, std::ios::binary);
    MEDR1_CHECK(in.good(), path_, ": cannot read (", errno_text(), ")");
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  // Everything after the last '\n' is a line whose write() never completed.
  const size_t last_nl = text.rfind('\n');
  const size_t keep = last_nl == std::string::npos ? 0 : last_nl + 1;
  if (keep < text.size()) {
    truncated_bytes_ = text.size() - keep;
    MEDR1_CHECK(::ftruncate(fd_, static_cast<off_t>(keep)) == 0, path_,
                ": cannot truncate the partial last line (", errno_text(), ")");
    MEDR1_CHECK(::fsync(fd_) == 0, path_, ": fsync failed (", errno_text(), ")");
  }
  size_t pos = 0;
  size_t line_no = 0;
  while (pos < keep) {
    const size_t nl = text.find('\n', pos);
    ++line_no;
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = path_ + ": line " + std::to_string(line_no);
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      fail(where, ": not valid JSON (", e.what(),
           "); the file is corrupt in the middle, not just cut short: fix or remove it");
    }
    MEDR1_CHECK(j.is_object(), where, ": expected a JSON object");
    if (!opts_.index_key.empty()) done_.insert(index_of(j, opts_.index_key, where));
    existing_.push_back(std::move(j));
    ++n_lines_;
  }
}

bool JsonlWriter::contains(int64_t index) const {
  std::lock_guard<std::mutex> lk(mu_);
  return done_.count(index) != 0;
}

size_t JsonlWriter::size() const {
  std::lock_guard<std::mutex> lk(mu_);
  return n_lines_;
}

bool JsonlWriter::write(const json& record) {
  MEDR1_CHECK(record.is_object(), path_, ": write: expected a JSON object");
  // Serialise outside the lock; the line carries its '\n' so one write() lands it whole.
  std::string line = record.dump(-1, ' ', false, json::error_handler_t::replace);
  line.push_back('\n');
  std::lock_guard<std::mutex> lk(mu_);
  MEDR1_CHECK(fd_ >= 0, path_, ": write after close");
  int64_t idx = 0;
  if (!opts_.index_key.empty()) {
    idx = index_of(record, opts_.index_key, path_ + ": write");
    if (done_.count(idx)) return false;
  }
  size_t off = 0;
  while (off < line.size()) {  // a short write (signal, full disk) continues where it stopped
    ssize_t n = ::write(fd_, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    MEDR1_CHECK(n > 0, path_, ": write failed (", errno_text(), ")");
    off += static_cast<size_t>(n);
  }
  if (!opts_.index_key.empty()) done_.insert(idx);
  ++n_lines_;
  if (opts_.fsync_every > 0 && ++unsynced_ >= opts_.fsync_every) sync_locked();
  return true;
}

void JsonlWriter::sync_locked() {
  if (fd_ < 0) return;
  MEDR1_CHECK(::fsync(fd_) == 0, path_, ": fsync failed (", errno_text(), ")");
  unsynced_ = 0;
}

void JsonlWriter::sync() {
  std::lock_guard<std::mutex> lk(mu_);
  sync_locked();
}

void JsonlWriter::close() {
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ < 0) return;
  const int fd = fd_;
  fd_ = -1;
  const bool synced = ::fsync(fd) == 0;
  const bool closed = ::close(fd) == 0;
  MEDR1_CHECK(synced && closed, path_, ": close failed (", errno_text(), ")");
}

}  // namespace medr1::data
