// Resumable, crash-safe JSONL output for medr1-infer and medr1-eval.
// On open an existing file is scanned: complete lines ('\n'-terminated) are parsed and their
// `index` values remembered; a half-written last line (a crash mid-write) is cut off. Each new
// line is written whole with one write() on an O_APPEND descriptor, then fsync'ed every
// `fsync_every` lines, so after a kill the file holds only whole records plus at most one partial
// line, which the next open removes. A record whose index is already present is never re-written.
// Not in Med-R1 (its scripts write one JSON at the end); AdvMed-R1 has no resume either.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

namespace medr1::data {

struct JsonlWriterOptions {
  // fsync after every k-th line (1 = every line, the safest); 0 = never fsync during the run
  // (the kernel still has every write() once it returns; fsync only guards against power loss).
  int fsync_every = 1;
  // Member holding the record id used to skip done work; "" disables the de-duplication.
  std::string index_key = "index";
  // false: truncate an existing file and start over.
  bool resume = true;
};

class JsonlWriter {
 public:
  // Opens (creating parent folders and the file if needed) and scans for resume.
  // Errors: cannot open/create, a complete line that is not a JSON object, or that lacks an
  // integer `index_key` (names the file and line number).
  explicit JsonlWriter(std::string path, JsonlWriterOptions opts = {});
  ~JsonlWriter();  // close(); never throws
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;

  const std::string& path() const { return path_; }
  // Records found complete on open, in file order (for reports that cover a resumed run).
  const std::vector<nlohmann::json>& existing() const { return existing_; }
  // Bytes of a half-written last line removed on open (0 if the file ended cleanly).
  size_t truncated_bytes() const { return truncated_bytes_; }
  // True if a record with this index is in the file (found on open or written since).
  bool contains(int64_t index) const;
  size_t size() const;  // number of records in the file

  // Appends `record` as one line (compact JSON, UTF-8 errors replaced). With an index_key the
  // record must carry an integer index; returns false (writes nothing) if it is already present.
  // Thread-safe.
  bool write(const nlohmann::json& record);
  // fsync now (e.g. before a checkpoint or at the end of a split).
  void sync();
  // sync and close; later writes are errors. Idempotent.
  void close();

 private:
  void scan_existing();
  void sync_locked();

  std::string path_;
  JsonlWriterOptions opts_;
  int fd_ = -1;
  mutable std::mutex mu_;
  std::unordered_set<int64_t> done_;
  std::vector<nlohmann::json> existing_;
  size_t truncated_bytes_ = 0;
  size_t n_lines_ = 0;
  int unsynced_ = 0;
};

}  // namespace medr1::data
