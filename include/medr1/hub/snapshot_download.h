// Download a Hugging Face Hub model repo into a local folder, speaking the Hub's HTTP API as
// huggingface_hub's snapshot_download(repo_id, revision, local_dir=...) does: the file list and
// commit from GET /api/models/<repo>/revision/<rev>?blobs=true (siblings[].rfilename, sizes, LFS
// sha256, git blob ids), each file from GET /<repo>/resolve/<commit>/<file> (redirects followed;
// the token stays on the Hub's host). Large (LFS) files are checked against the sha256 the Hub
// names (X-Linked-Etag), small ones against their git blob sha1 (ETag). Bytes go to
// <out>/.cache/huggingface/download/<file>.<etag>.incomplete, an interrupted file resumes with
// Range: bytes=N-, and the final name appears only once the file is complete and verified (rename).
// Per file the commit and etag are kept in <file>.metadata (huggingface_hub's local_dir format:
// commit, etag, timestamp), so a rerun skips present files without a request or a re-hash, and
// huggingface_hub accepts the folder as its own. No Xet protocol (huggingface_hub with
// HF_HUB_DISABLE_XET=1 downloads the same way), no blob cache / symlinks.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "medr1/core/error.h"

namespace medr1::hub {

struct ModelPreset {
  std::string name;
  std::string repo_id;
  std::string description;
};
// The --model presets (Qwen2-VL / Qwen2.5-VL Instruct checkpoints Med-R1 trains from, Med-R1's
// release).
const std::vector<ModelPreset>& model_presets();
// A preset name -> its repo id; any "ORG/NAME" passes through; anything else is an error listing
// the presets.
std::string resolve_model(const std::string& model);

// HF_ENDPOINT, else https://huggingface.co (no trailing '/').
std::string default_endpoint();
// The token, in huggingface_hub's order: `cli_token`, else $HF_TOKEN, else the token file
// ($HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token). "" = anonymous. `source`
// (optional) says which one was used.
std::string resolve_token(const std::string& cli_token, std::string* source = nullptr);

// huggingface_hub's filter_repo_objects: kept when it fnmatch-es one of `include` (or include is
// empty) and none of `exclude`; '*' also matches '/', and a pattern ending in '/' means the
// folder's contents ("dir/" = "dir/*").
bool keep_path(const std::string& path, const std::vector<std::string>& include,
               const std::vector<std::string>& exclude);

// What went wrong, for the app's exit code.
enum class ErrorKind { kOther, kAuth, kNotFound, kNetwork, kChecksum, kDiskFull };
class HubError : public Error {
 public:
  HubError(ErrorKind kind, const std::string& msg) : Error(msg), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

struct DownloadOptions {
  std::string repo_id;  // ORG/NAME
  std::string revision = "main";
  std::string output_dir;
  std::string endpoint;  // "" = default_endpoint()
  std::string token;     // "" = anonymous (the app passes resolve_token())
  std::vector<std::string> include;
  std::vector<std::string> exclude;
  int max_workers = 8;           // files in parallel
  int max_retries = 5;           // per request, on network errors, 408/429 and 5xx
  double retry_backoff_s = 1.0;  // first wait; doubled per retry, capped at 10 s
  long connect_timeout_s = 10;
  long low_speed_time_s = 60;  // a transfer under 1 byte/s this long counts as a network failure
  bool progress = true;        // one status line on stderr (plain lines when not a terminal)
  std::FILE* progress_stream = nullptr;  // nullptr = stderr
  int progress_tty = -1;                 // -1 = isatty, 0 = plain lines, 1 = redraws
  double progress_log_interval_s = 10.0;
};

struct DownloadReport {
  std::string repo_id;
  std::string commit;
  int files_total = 0;  // after include / exclude
  int files_downloaded = 0;
  int files_skipped = 0;      // present and verified already
  int64_t bytes_fetched = 0;  // body bytes received in this run, every attempt counted
  int64_t bytes_resumed = 0;  // bytes of .incomplete files reused from an earlier run
  int retries = 0;            // requests retried
  std::vector<std::string> downloaded;
  std::vector<std::string> skipped;
};

DownloadReport snapshot_download(const DownloadOptions& opts);

// ---- what the downloader parses (exposed for tests and tests/fuzz/fuzz_hub.cpp)

struct RemoteFile {
  std::string path;   // siblings[].rfilename: a relative path, no "", ".", ".." parts, "\\" or NUL
  int64_t size = -1;  // -1 unknown
  std::string etag;   // LFS sha256 or git blob sha1; "" unknown
};
struct RepoListing {
  std::string commit;  // "sha"
  std::vector<RemoteFile> files;
};
// The body of GET /api/models/<repo>/revision/<rev>?blobs=true; `url` names it in errors (HubError
// kOther): malformed JSON, no string "sha", no array "siblings", a sibling without a string rfilename, an
// unsafe or repeated file name, a negative size.
RepoListing parse_repo_listing(const std::string& body, const std::string& url);

// A .metadata file's text (huggingface_hub local_dir: commit, etag, timestamp lines); nullopt when it is
// not one (the file is then downloaded again).
struct LocalMeta {
  std::string commit, etag;
  double timestamp = 0;
};
std::optional<LocalMeta> parse_meta(const std::string& text);

// The local_dir bookkeeping paths (huggingface_hub's .cache/huggingface/download/ layout).
std::string metadata_path(const std::string& output_dir, const std::string& file);
std::string incomplete_path(const std::string& output_dir, const std::string& file,
                            const std::string& etag);

// "3/12 files 1.23 GB/4.42 GB 27.8% 85.3 MB/s ETA 0:37" (total <= 0: no percentage or ETA). Exposed
// for tests.
std::string format_transfer(int64_t done_bytes, int64_t total_bytes, int files_done,
                            int files_total, double bytes_per_s);
// Decimal units as huggingface_hub's progress bars: "512 B", "1.23 kB", "85.3 MB", "4.42 GB".
std::string format_bytes(double bytes);

}  // namespace medr1::hub
