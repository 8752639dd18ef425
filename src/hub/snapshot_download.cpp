// Hub snapshot download into a local folder (snapshot_download.h): listing, parallel workers,
// resume, verification, retries with backoff, progress line.
#include "medr1/hub/snapshot_download.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "medr1/core/logging.h"
#include "medr1/hub/checksum.h"
#include "medr1/hub/http.h"

namespace medr1::hub {

namespace fs = std::filesystem;

// ---- presets, endpoint, token, patterns
// --------------------------------------------------------------------------

const std::vector<ModelPreset>& model_presets() {
  static const std::vector<ModelPreset> presets = {
      {"qwen2-vl-2b", "Qwen/Qwen2-VL-2B-Instruct", "Qwen2-VL 2B Instruct (Med-R1's base model)"},
      {"qwen2-vl-7b", "Qwen/Qwen2-VL-7B-Instruct", "Qwen2-VL 7B Instruct"},
      {"qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct",
       "Qwen2.5-VL 3B Instruct (Med-R1's Qwen2.5 base)"},
      {"qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen2.5-VL 7B Instruct"},
      {"med-r1", "yuxianglai117/Med-R1",
       "Med-R1 release checkpoints (GRPO-trained, per modality / task)"},
  };
  return presets;
}

std::string resolve_model(const std::string& model) {
  for (const auto& p : model_presets()) {
    if (p.name == model) return p.repo_id;
  }
  const size_t slash = model.find('/');
  const bool repo_like = slash != std::string::npos && slash > 0 && slash + 1 < model.size() &&
                         model.find('/', slash + 1) == std::string::npos &&
                         model.find("..") == std::string::npos;
  if (repo_like) return model;
  std::string names;
  for (const auto& p : model_presets()) names += (names.empty() ? "" : ", ") + p.name;
  throw HubError(ErrorKind::kOther, "--model '" + model + "': neither a preset (" + names +
                                        ") nor a Hub repo id ORG/NAME; --list prints the presets");
}

std::string default_endpoint() {
  const char* e = std::getenv("HF_ENDPOINT");
  std::string s = e && *e ? e : "https://huggingface.co";
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

}  // namespace

std::string resolve_token(const std::string& cli_token, std::string* source) {
  auto set_source = [&](const std::string& s) {
    if (source) *source = s;
  };
  if (!trim(cli_token).empty()) {
    set_source("--token");
    return trim(cli_token);
  }
  const std::string env = trim(env_or("HF_TOKEN", ""));
  if (!env.empty()) {
    set_source("HF_TOKEN");
    return env;
  }
  std::string path = env_or("HF_TOKEN_PATH", "");
  if (path.empty()) {
    std::string home = env_or("HF_HOME", "");
    if (home.empty()) {
      const std::string xdg = env_or("XDG_CACHE_HOME", env_or("HOME", "") + "/.cache");
      home = xdg + "/huggingface";
    }
    path = home + "/token";
  }
  std::ifstream in(path);
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string tok = trim(ss.str());
    if (!tok.empty()) {
      set_source(path);
      return tok;
    }
  }
  set_source("");
  return "";
}

bool keep_path(const std::string& path, const std::vector<std::string>& include,
               const std::vector<std::string>& exclude) {
  // Python's fnmatch: no escapes, '*' crosses '/', no special leading '.'.
  auto match = [&](std::string pat) {
    if (!pat.empty() && pat.back() == '/') pat += '*';
    return ::fnmatch(pat.c_str(), path.c_str(), FNM_NOESCAPE) == 0;
  };
  if (!include.empty() && std::none_of(include.begin(), include.end(), match)) return false;
  return std::none_of(exclude.begin(), exclude.end(), match);
}

// ---- formatting
// ---------------------------------------------------------------------------------------------------

std::string format_bytes(double bytes) {
  static const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  int u = 0;
  while (bytes >= 1000.0 && u < 5) {
    bytes /= 1000.0;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  } else {
    std::snprintf(buf, sizeof buf,
                  bytes < 10    ? "%.2f %s"
                  : bytes < 100 ? "%.1f %s"
                                : "%.0f %s",
                  bytes, units[u]);
  }
  return buf;
}

namespace {

std::string format_eta(double s) {
  if (!std::isfinite(s) || s < 0) return "--";
  const auto t = static_cast<long long>(std::llround(s));
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, (t / 60) % 60, t % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
  }
  return buf;
}

}  // namespace

std::string format_transfer(int64_t done_bytes, int64_t total_bytes, int files_done,
                            int files_total, double bytes_per_s) {
  std::string s = std::to_string(files_done) + "/" + std::to_string(files_total) + " files " +
                  format_bytes(static_cast<double>(done_bytes));
  if (total_bytes > 0) {
    char pct[32];
    std::snprintf(pct, sizeof pct, " %.1f%%",
                  100.0 * std::min(1.0, static_cast<double>(done_bytes) / total_bytes));
    s += "/" + format_bytes(static_cast<double>(total_bytes)) + pct;
  }
  const bool have_rate = bytes_per_s > 0 && std::isfinite(bytes_per_s);
  s += have_rate ? " " + format_bytes(bytes_per_s) + "/s" : std::string(" -- B/s");
  if (total_bytes > 0) {
    const double left = static_cast<double>(std::max<int64_t>(0, total_bytes - done_bytes));
    s += " ETA " + format_eta(have_rate ? left / bytes_per_s : -1.0);
  }
  return s;
}

std::string metadata_path(const std::string& output_dir, const std::string& file) {
  return (fs::path(output_dir) / ".cache" / "huggingface" / "download" / (file + ".metadata"))
      .string();
}

std::string incomplete_path(const std::string& output_dir, const std::string& file,
                            const std::string& etag) {
  const std::string name = etag.empty() ? file + ".incomplete" : file + "." + etag + ".incomplete";
  return (fs::path(output_dir) / ".cache" / "huggingface" / "download" / name).string();
}

namespace {

// ---- progress line
// ------------------------------------------------------------------------------------------------

class TransferProgress {
 public:
  TransferProgress(const DownloadOptions& o, std::string label, int64_t total_bytes,
                   int files_total)
      : enabled_(o.progress),
        out_(o.progress_stream ? o.progress_stream : stderr),
        tty_(o.progress_tty >= 0 ? o.progress_tty == 1 : ::isatty(::fileno(out_)) == 1),
        interval_(tty_ ? 0.2 : o.progress_log_interval_s),
        label_(std::move(label)),
        total_bytes_(total_bytes),
        files_total_(files_total),
        start_(Clock::now()) {
    if (enabled_) thread_ = std::thread([this] { loop(); });
  }
  ~TransferProgress() { finish(); }

  void add_bytes(int64_t n) { done_bytes_ += n; }
  void file_done() { ++files_done_; }

  void finish() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (finished_) return;
      finished_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (enabled_) draw(true);
  }

 private:
  using Clock = std::chrono::steady_clock;
  void loop() {
    std::unique_lock<std::mutex> lk(mu_);
    while (!finished_) {
      cv_.wait_for(lk, std::chrono::duration<double>(interval_));
      if (!finished_) draw(false);
    }
  }
  // Rate over the last ~5 s (the ETA follows the current speed, not the run's average); the final
  // line gives the average of the whole run.
  void draw(bool final_line) {
    const auto now = Clock::now();
    const int64_t done = done_bytes_.load();
    window_.emplace_back(now, done);
    while (window_.size() > 2 && now - window_[1].first >= std::chrono::seconds(5))
      window_.pop_front();
    const auto& [t0, b0] =
        final_line ? std::pair<Clock::time_point, int64_t>(start_, 0) : window_.front();
    const double el = std::chrono::duration<double>(now - t0).count();
    const double rate = el > 0 ? static_cast<double>(done - b0) / el : 0.0;
    const std::string line =
        label_ + " " + format_transfer(done, total_bytes_, files_done_.load(), files_total_, rate);
    if (tty_) {
      std::fprintf(out_, "\r%s\x1b[K%s", line.c_str(), final_line ? "\n" : "");
    } else {
      std::fprintf(out_, "%s\n", line.c_str());
    }
    std::fflush(out_);
  }

  bool enabled_;
  std::FILE* out_;
  bool tty_;
  double interval_;
  std::string label_;
  int64_t total_bytes_;
  int files_total_;
  Clock::time_point start_;
  std::deque<std::pair<Clock::time_point, int64_t>> window_{{start_, 0}};
  std::atomic<int64_t> done_bytes_{0};
  std::atomic<int> files_done_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;
  std::thread thread_;
};

// ---- HTTP error handling
// ------------------------------------------------------------------------------------------

bool transient_curl(int code) {
  switch (code) {
    case 5:   // CURLE_COULDNT_RESOLVE_PROXY
    case 6:   // CURLE_COULDNT_RESOLVE_HOST
    case 7:   // CURLE_COULDNT_CONNECT
    case 16:  // CURLE_HTTP2
    case 18:  // CURLE_PARTIAL_FILE (connection cut mid-body)
    case 28:  // CURLE_OPERATION_TIMEDOUT
    case 35:  // CURLE_SSL_CONNECT_ERROR
    case 52:  // CURLE_GOT_NOTHING
    case 55:  // CURLE_SEND_ERROR
    case 56:  // CURLE_RECV_ERROR
    case 92:  // CURLE_HTTP2_STREAM
      return true;
    default:
      return false;
  }
}

bool transient(const HttpResult& r) {
  if (r.aborted) return false;
  if (r.curl_code != 0) return transient_curl(r.curl_code);
  return r.status == 408 || r.status == 429 || r.status >= 500;
}

std::string header_or(const Headers& h, const std::string& name) {
  const auto it = h.find(name);
  return it == h.end() ? std::string() : it->second;
}

// The Hub's own words (X-Error-Message, else a JSON {"error": ...} body, else the body's start).
std::string server_message(const HttpResult& r) {
  std::string m = header_or(r.headers, "x-error-message");
  if (m.empty() && !r.error_body.empty()) {
    try {
      const auto j = nlohmann::json::parse(r.error_body);
      if (j.is_object() && j.contains("error") && j["error"].is_string())
        m = j["error"].get<std::string>();
    } catch (const nlohmann::json::exception&) {
      m = r.error_body.substr(0, 200);
    }
  }
  return trim(m);
}

double backoff_s(const DownloadOptions& o, int retry) {
  return std::min(10.0, o.retry_backoff_s * std::pow(2.0, retry));
}

std::string describe_failure(const HttpResult& r) {
  if (r.curl_code != 0) return "network error: " + r.curl_error;
  std::string s = "HTTP " + std::to_string(r.status);
  const std::string m = server_message(r);
  if (!m.empty()) s += " (" + m + ")";
  return s;
}

struct Context {
  DownloadOptions opts;
  std::string endpoint;
  std::string commit;
  std::atomic<bool> stop{false};
  std::atomic<int> retries{0};
  std::atomic<int64_t> bytes_fetched{0};
  std::atomic<int64_t> bytes_resumed{0};
  TransferProgress* progress = nullptr;
};

// Turns a final non-2xx (or a network failure after the retries) into a HubError that says what to
// do.
[[noreturn]] void throw_http(const Context& c, const HttpResult& r, const std::string& url,
                             const std::string& file, int attempts) {
  const std::string& repo = c.opts.repo_id;
  const std::string code = header_or(r.headers, "x-error-code");
  const std::string msg = server_message(r);
  const std::string said = msg.empty() ? "" : " (server: " + msg + ")";
  const std::string how =
      "pass --token hf_..., set HF_TOKEN, or save one with `hf auth login` (read from "
      "$HF_HOME/token, default "
      "~/.cache/huggingface/token)";
  if (r.curl_code != 0) {
    throw HubError(ErrorKind::kNetwork, "GET " + url + ": " + describe_failure(r) + " after " +
                                            std::to_string(attempts) + " attempts (" +
                                            std::to_string(attempts - 1) +
                                            " retries with backoff)");
  }
  if (r.status >= 500 || r.status == 429 || r.status == 408) {
    throw HubError(ErrorKind::kNetwork,
                   "GET " + url + ": HTTP " + std::to_string(r.status) + said + " after " +
                       std::to_string(attempts) + " attempts (" + std::to_string(attempts - 1) +
                       " retries with backoff); the Hub may be down, retry later");
  }
  if (code == "RepoNotFound" || (r.status == 404 && file.empty() && code != "RevisionNotFound")) {
    throw HubError(
        ErrorKind::kNotFound,
        "repository '" + repo + "' not found on " + c.endpoint + said +
            (c.opts.token.empty() ? "; if it is private, a token is needed: " + how : ""));
  }
  if (code == "RevisionNotFound") {
    throw HubError(ErrorKind::kNotFound, "revision '" + c.opts.revision +
                                             "' not found in repository '" + repo + "'" + said);
  }
  if (r.status == 404) {
    throw HubError(ErrorKind::kNotFound, "file '" + file + "' not found in repository '" + repo +
                                             "' at " +
                                             (c.commit.empty() ? c.opts.revision : c.commit) +
                                             said + " (GET " + url + ")");
  }
  if (r.status == 401) {
    throw HubError(
        ErrorKind::kAuth,
        c.opts.token.empty()
            ? "repository '" + repo + "' needs a token (HTTP 401: gated or private repo)" + said +
                  ": " + how + "; for a gated repo, also accept its terms on " + c.endpoint + "/" +
                  repo
            : "the token was refused for repository '" + repo + "' (HTTP 401: invalid or expired)" +
                  said + "; check --token / HF_TOKEN / the token file");
  }
  if (r.status == 403) {
    throw HubError(ErrorKind::kAuth,
                   "access to repository '" + repo + "' is refused (HTTP 403)" + said +
                       (c.opts.token.empty()
                            ? ": it is gated or private; " + how
                            : ": the token has no access; for a gated repo, request access on " +
                                  c.endpoint + "/" + repo + " with the token's account"));
  }
  throw HubError(ErrorKind::kOther, "GET " + url + ": " + describe_failure(r));
}

void sleep_s(const Context& c, double s) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(s);
  while (!c.stop && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

HttpRequest make_request(const Context& c, const std::string& url) {
  HttpRequest req;
  req.url = url;
  req.token = c.opts.token;
  req.connect_timeout_s = c.opts.connect_timeout_s;
  req.low_speed_time_s = c.opts.low_speed_time_s;
  return req;
}

// ---- listing
// ------------------------------------------------------------------------------------------------------

std::vector<RemoteFile> fetch_listing(Context& c, HttpClient& http) {
  const std::string url = c.endpoint + "/api/models/" + c.opts.repo_id + "/revision/" +
                          url_quote(c.opts.revision, false) + "?blobs=true";
  std::string body;
  HttpResult r;
  for (int attempt = 0;; ++attempt) {
    r = http.get_text(make_request(c, url), body);
    if (!transient(r) || attempt >= c.opts.max_retries || c.stop) {
      if (r.curl_code != 0 || r.status < 200 || r.status >= 300)
        throw_http(c, r, url, "", attempt + 1);
      break;
    }
    const double wait = backoff_s(c.opts, attempt);
    spdlog::warn("{}: {}; retry {}/{} in {:.1f} s", url, describe_failure(r), attempt + 1,
                 c.opts.max_retries, wait);
    ++c.retries;
    sleep_s(c, wait);
  }
  RepoListing listing = parse_repo_listing(body, url);
  c.commit = listing.commit;
  return std::move(listing.files);
}

// ---- local metadata
// -----------------------------------------------------------------------------------------------

std::optional<LocalMeta> read_meta(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return parse_meta(text.str());
}

void write_meta(const std::string& path, const std::string& commit, const std::string& etag) {
  fs::create_directories(fs::path(path).parent_path());
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    char ts[64];
    std::snprintf(ts, sizeof ts, "%.6f", now);
    out << commit << "\n" << etag << "\n" << ts << "\n";
    if (!out) throw HubError(ErrorKind::kDiskFull, path + ": cannot write the download metadata");
  }
  fs::rename(tmp, path);
}

double mtime_of(const std::string& p) {
  struct stat st;
  if (::stat(p.c_str(), &st) != 0) return -1;
  return static_cast<double>(st.st_mtim.tv_sec) + st.st_mtim.tv_nsec * 1e-9;
}

// The ETag as huggingface_hub's _normalize_etag: without W/ and the quotes.
std::string normalize_etag(std::string e) {
  e = trim(e);
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  while (!e.empty() && e.front() == '"') e.erase(e.begin());
  while (!e.empty() && e.back() == '"') e.pop_back();
  return e;
}

std::string hash_matching(const std::string& path, const std::string& etag) {
  if (is_sha256_hex(etag)) return sha256_file_hex(path);
  if (is_sha1_hex(etag)) return git_blob_sha1_file_hex(path);
  return "";
}

// True when `final_path` already holds `f` at this commit (huggingface_hub's local_dir rules:
// metadata etag equal and the file not modified since, else a re-hash when the etag is a digest).
bool already_present(Context& c, const RemoteFile& f, const std::string& final_path) {
  std::error_code ec;
  if (!fs::is_regular_file(final_path, ec)) return false;
  const auto size = static_cast<int64_t>(fs::file_size(final_path, ec));
  if (ec || (f.size >= 0 && size != f.size)) return false;
  const std::string meta_path = metadata_path(c.opts.output_dir, f.path);
  const auto meta = read_meta(meta_path);
  if (meta && mtime_of(final_path) - 1 <= meta->timestamp) {
    const bool same = f.etag.empty() ? meta->commit == c.commit : meta->etag == f.etag;
    if (same) {
      if (meta->commit != c.commit) write_meta(meta_path, c.commit, meta->etag);
      return true;
    }
    return false;
  }
  if (f.etag.empty()) return false;
  const std::string got = hash_matching(final_path, f.etag);
  if (got.empty() || got != f.etag) return false;
  write_meta(meta_path, c.commit, f.etag);
  return true;
}

// ---- one file
// -----------------------------------------------------------------------------------------------------

struct Cancelled {};

class FileDownload {
 public:
  FileDownload(Context& c, HttpClient& http, const RemoteFile& f) : c_(c), http_(http), f_(f) {
    url_ = c.endpoint + "/" + c.opts.repo_id + "/resolve/" + url_quote(c.commit, false) + "/" +
           url_quote(f.path, true);
    final_path_ = (fs::path(c.opts.output_dir) / f.path).string();
    part_path_ = incomplete_path(c.opts.output_dir, f.path, f.etag);
  }
  ~FileDownload() { close_fd(); }

  void run() {
    for (int fresh_try = 0;; ++fresh_try) {
      const bool resumed = open_part(/*discard=*/fresh_try > 0);
      if (fetch()) return;  // verified and in place
      // A checksum mismatch on bytes resumed from an earlier run: those may be stale; retry once
      // from zero.
      if (!resumed || fresh_try > 0) throw_mismatch();
      spdlog::warn(
          "{}: checksum mismatch after resuming an earlier partial download; downloading it again",
          f_.path);
    }
  }

 private:
  void close_fd() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Opens <file>.<etag>.incomplete, keeping the bytes of an earlier run; true when there were some.
  bool open_part(bool discard) {
    close_fd();
    fs::create_directories(fs::path(part_path_).parent_path());
    if (discard) ::unlink(part_path_.c_str());
    fd_ = ::open(part_path_.c_str(), O_WRONLY | O_CREAT, 0644);
    if (fd_ < 0) fail_io("cannot open", errno);
    struct stat st;
    have_ = (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) ? st.st_size : 0;
    if (f_.size >= 0 && have_ > f_.size) truncate_to_zero();
    // Without an etag the part file's name does not pin the version: do not mix bytes of two
    // versions.
    if (f_.etag.empty() && have_ > 0) truncate_to_zero();
    sha_ = std::make_unique<Hasher>(HashKind::kSha256);
    if (have_ > 0) {
      // Hash the bytes already there, so the digest covers the whole file without a second pass at
      // the end.
      std::FILE* in = std::fopen(part_path_.c_str(), "rb");
      if (!in) fail_io("cannot read", errno);
      std::vector<char> buf(4 << 20);
      int64_t left = have_;
      while (left > 0) {
        const size_t got =
            std::fread(buf.data(), 1, static_cast<size_t>(std::min<int64_t>(left, buf.size())), in);
        if (got == 0) break;
        sha_->update(buf.data(), got);
        left -= static_cast<int64_t>(got);
      }
      std::fclose(in);
      if (left != 0) truncate_to_zero();
    }
    if (::lseek(fd_, have_, SEEK_SET) < 0 && have_ > 0) fail_io("cannot seek", errno);
    c_.bytes_resumed += have_;
    return have_ > 0;
  }

  void truncate_to_zero() {
    struct stat st;
    if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
      if (::ftruncate(fd_, 0) != 0) fail_io("cannot truncate", errno);
    }
    ::lseek(fd_, 0, SEEK_SET);
    have_ = 0;
    if (sha_) sha_->reset();
  }

  [[noreturn]] void fail_io(const std::string& what, int err) {
    const bool full = err == ENOSPC || err == EDQUOT;
    throw HubError(full ? ErrorKind::kDiskFull : ErrorKind::kOther,
                   std::string(full ? "disk full: " : "") + what + " " + part_path_ + " (" +
                       f_.path + ", " + std::to_string(have_) +
                       " bytes written): " + std::strerror(err) +
                       (full ? "; nothing was written under " + final_path_ +
                                   "; free some space and rerun: the partial file resumes"
                             : ""));
  }

  // Downloads the rest with retries, verifies and renames. False on a checksum mismatch (part file
  // removed).
  bool fetch() {
    int attempts = 0, retries_since_progress = 0;
    HttpResult r;
    for (;;) {
      ++attempts;
      const int64_t before = have_;
      r = attempt();
      if (c_.stop) throw Cancelled{};
      if (write_errno_ != 0) fail_io("cannot write", write_errno_);
      if (r.aborted)
        throw HubError(ErrorKind::kOther, f_.path + ": " + abort_reason_ + " (GET " + url_ + ")");
      if (r.curl_code == 0 && r.status == 416) {
        // Range past the end: the part file is already whole (or longer than the file: start over).
        const int64_t total = range_total(header_or(r.headers, "content-range"));
        if (total >= 0 && total == have_) break;
        truncate_to_zero();
        if (attempts > 2 * c_.opts.max_retries + 2) throw_http(c_, r, url_, f_.path, attempts);
        continue;
      }
      if (!transient(r)) {
        if (r.curl_code != 0 || r.status < 200 || r.status >= 300)
          throw_http(c_, r, url_, f_.path, attempts);
        break;
      }
      // Progress made: the retry budget starts again (huggingface_hub's http_get does the same).
      if (have_ > before) retries_since_progress = 0;
      if (retries_since_progress >= c_.opts.max_retries ||
          attempts > 20 * (c_.opts.max_retries + 1)) {
        throw_http(c_, r, url_, f_.path, attempts);
      }
      const double wait = backoff_s(c_.opts, retries_since_progress);
      ++retries_since_progress;
      ++c_.retries;
      spdlog::warn("{}: {} at byte {}; retry {}/{} in {:.1f} s{}", f_.path, describe_failure(r),
                   have_, retries_since_progress, c_.opts.max_retries, wait,
                   have_ > 0 ? " (resuming with Range)" : "");
      sleep_s(c_, wait);
      if (c_.stop) throw Cancelled{};
    }
    return finish(r);
  }

  static int64_t range_total(const std::string& content_range) {
    const size_t slash = content_range.find('/');
    if (slash == std::string::npos) return -1;
    const std::string t = content_range.substr(slash + 1);
    if (t.empty() || t == "*") return -1;
    return std::strtoll(t.c_str(), nullptr, 10);
  }

  HttpResult attempt() {
    HttpRequest req = make_request(c_, url_);
    req.range_from = have_;
    BodySink sink;
    sink.on_headers = [&](long status, const Headers& h) {
      if (status == 206) {
        const std::string cr = header_or(h, "content-range");  // "bytes <start>-<end>/<total>"
        const size_t sp = cr.find(' ');
        const int64_t start =
            sp == std::string::npos ? -1 : std::strtoll(cr.c_str() + sp + 1, nullptr, 10);
        if (start != have_) {
          abort_reason_ =
              "asked for bytes " + std::to_string(have_) + "- and got Content-Range '" + cr + "'";
          return false;
        }
      } else if (have_ > 0) {
        truncate_to_zero();  // the server ignored the Range: start over (as huggingface_hub does)
      }
      return true;
    };
    sink.on_data = [&](const char* d, size_t n) {
      if (c_.stop) return false;
      size_t off = 0;
      while (off < n) {
        const ssize_t w = ::write(fd_, d + off, n - off);
        if (w < 0) {
          if (errno == EINTR) continue;
          write_errno_ = errno;
          return false;
        }
        off += static_cast<size_t>(w);
      }
      sha_->update(d, n);
      have_ += static_cast<int64_t>(n);
      c_.bytes_fetched += static_cast<int64_t>(n);
      if (c_.progress) c_.progress->add_bytes(static_cast<int64_t>(n));
      return true;
    };
    return http_.perform(req, &sink);
  }

  bool finish(const HttpResult& r) {
    // The Hub's answer for this file: X-Linked-Etag (LFS sha256) on its resolve response, else its
    // ETag.
    std::string etag = normalize_etag(header_or(r.hub_headers, "x-linked-etag"));
    if (etag.empty()) etag = normalize_etag(header_or(r.hub_headers, "etag"));
    if (!f_.etag.empty() && etag != f_.etag) {
      if (!etag.empty()) {
        spdlog::warn(
            "{}: the file list names etag {} but the resolve response {}; checking against the "
            "list",
            f_.path, f_.etag, etag);
      }
      etag = f_.etag;
    }
    int64_t expected_size = f_.size;
    const std::string linked = header_or(r.hub_headers, "x-linked-size");
    if (expected_size < 0 && !linked.empty())
      expected_size = std::strtoll(linked.c_str(), nullptr, 10);
    got_size_ = have_;
    if (::fsync(fd_) != 0 && errno != EINVAL) fail_io("cannot sync", errno);
    close_fd();
    if (expected_size >= 0 && have_ != expected_size) {
      expected_ = std::to_string(expected_size) + " bytes";
      got_ = std::to_string(have_) + " bytes";
      kind_ = "size";
      ::unlink(part_path_.c_str());
      return false;
    }
    if (is_sha256_hex(etag)) {
      kind_ = "sha256";
      got_ = sha_->hex_digest();
    } else if (is_sha1_hex(etag)) {
      kind_ = "git blob sha1";
      got_ = git_blob_sha1_file_hex(part_path_);
    } else {
      spdlog::warn("{}: the Hub gave no sha256 / git sha1 ETag ('{}'): only the size is checked",
                   f_.path, etag);
      got_ = etag;
    }
    expected_ = etag;
    if (got_ != etag) {
      ::unlink(part_path_.c_str());
      return false;
    }
    fs::create_directories(fs::path(final_path_).parent_path());
    std::error_code ec;
    fs::rename(part_path_, final_path_, ec);
    if (ec) {
      throw HubError(ErrorKind::kOther,
                     "cannot move " + part_path_ + " to " + final_path_ + ": " + ec.message());
    }
    write_meta(metadata_path(c_.opts.output_dir, f_.path), c_.commit, etag);
    return true;
  }

  [[noreturn]] void throw_mismatch() {
    throw HubError(ErrorKind::kChecksum,
                   f_.path + ": " + kind_ + " mismatch: expected " + expected_ + ", got " + got_ +
                       " (" + std::to_string(got_size_) + " bytes from " + url_ +
                       "); the corrupt download was deleted and nothing was written under " +
                       final_path_);
  }

  Context& c_;
  HttpClient& http_;
  const RemoteFile& f_;
  std::string url_, final_path_, part_path_;
  int fd_ = -1;
  int64_t have_ = 0;
  int64_t got_size_ = 0;
  std::unique_ptr<Hasher> sha_;
  int write_errno_ = 0;
  std::string abort_reason_ = "transfer aborted";
  std::string kind_ = "checksum", expected_, got_;
};

}  // namespace

// ---- the job
// ------------------------------------------------------------------------------------------------------

DownloadReport snapshot_download(const DownloadOptions& opts) {
  MEDR1_CHECK(!opts.repo_id.empty(), "snapshot_download: repo_id is empty");
  MEDR1_CHECK(!opts.output_dir.empty(), "snapshot_download: output_dir is empty");
  Context c;
  c.opts = opts;
  c.opts.max_workers = std::max(1, opts.max_workers);
  c.opts.max_retries = std::max(0, opts.max_retries);
  c.endpoint = opts.endpoint.empty() ? default_endpoint() : opts.endpoint;
  while (!c.endpoint.empty() && c.endpoint.back() == '/') c.endpoint.pop_back();

  DownloadReport rep;
  rep.repo_id = opts.repo_id;
  HttpClient http;
  const std::vector<RemoteFile> all = fetch_listing(c, http);
  rep.commit = c.commit;

  std::vector<const RemoteFile*> wanted;
  for (const auto& f : all) {
    if (keep_path(f.path, opts.include, opts.exclude)) wanted.push_back(&f);
  }
  rep.files_total = static_cast<int>(wanted.size());
  if (wanted.empty() && !all.empty()) {
    spdlog::warn("{}: none of its {} files matches --include / --exclude", opts.repo_id,
                 all.size());
  }
  std::error_code ec;
  fs::create_directories(opts.output_dir, ec);
  if (ec)
    throw HubError(ErrorKind::kOther,
                   "cannot create --output " + opts.output_dir + ": " + ec.message());

  std::vector<const RemoteFile*> todo;
  int64_t todo_bytes = 0;
  for (const RemoteFile* f : wanted) {
    if (already_present(c, *f, (fs::path(opts.output_dir) / f->path).string())) {
      rep.skipped.push_back(f->path);
    } else {
      todo.push_back(f);
      if (f->size > 0) todo_bytes += f->size;
    }
  }
  rep.files_skipped = static_cast<int>(rep.skipped.size());
  if (todo.empty()) return rep;

  struct statvfs vfs;
  if (::statvfs(opts.output_dir.c_str(), &vfs) == 0) {
    const double free_bytes = static_cast<double>(vfs.f_bavail) * static_cast<double>(vfs.f_frsize);
    if (free_bytes < static_cast<double>(todo_bytes)) {
      spdlog::warn("{} has {} free but {} are to be downloaded", opts.output_dir,
                   format_bytes(free_bytes), format_bytes(static_cast<double>(todo_bytes)));
    }
  }

  TransferProgress progress(opts, opts.repo_id, todo_bytes, static_cast<int>(todo.size()));
  c.progress = &progress;
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::exception_ptr first_error;
  const int n_workers = std::min<int>(c.opts.max_workers, static_cast<int>(todo.size()));
  auto worker = [&](HttpClient* client) {
    std::unique_ptr<HttpClient> own;
    if (!client) {
      own = std::make_unique<HttpClient>();
      client = own.get();
    }
    for (;;) {
      const size_t i = next++;
      if (i >= todo.size() || c.stop) return;
      try {
        FileDownload(c, *client, *todo[i]).run();
        progress.file_done();
        std::lock_guard<std::mutex> lk(mu);
        rep.downloaded.push_back(todo[i]->path);
      } catch (const Cancelled&) {
        return;
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!first_error) first_error = std::current_exception();
        c.stop = true;
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int w = 1; w < n_workers; ++w) threads.emplace_back(worker, nullptr);
  worker(&http);  // the listing's connection serves as one worker
  for (auto& t : threads) t.join();
  progress.finish();
  rep.bytes_fetched = c.bytes_fetched;
  rep.bytes_resumed = c.bytes_resumed;
  rep.retries = c.retries;
  rep.files_downloaded = static_cast<int>(rep.downloaded.size());
  std::sort(rep.downloaded.begin(), rep.downloaded.end());
  if (first_error) std::rethrow_exception(first_error);
  return rep;
}

// ---- parsing (snapshot_download.h)
// -------------------------------------------------------------------------------------------------------

namespace {

void check_safe_name(const std::string& p) {
  bool ok = !p.empty() && p[0] != '/' && p.find('\\') == std::string::npos &&
            p.find('\0') == std::string::npos;
  std::stringstream ss(p);
  std::string part;
  while (ok && std::getline(ss, part, '/')) ok = !part.empty() && part != "." && part != "..";
  ok = ok && p.back() != '/';
  if (!ok)
    throw HubError(ErrorKind::kOther, "repo listing: refusing the unsafe file name '" + p + "'");
}

}  // namespace

RepoListing parse_repo_listing(const std::string& body, const std::string& url) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    throw HubError(ErrorKind::kOther, url + ": malformed JSON (" + e.what() +
                                          "); does HF_ENDPOINT point to a Hugging Face Hub?");
  }
  if (!j.is_object() || !j.contains("sha") || !j["sha"].is_string()) {
    throw HubError(ErrorKind::kOther, url +
                                          ": response has no string field 'sha' (the commit); does "
                                          "HF_ENDPOINT point to a Hugging Face Hub?");
  }
  RepoListing out;
  out.commit = j["sha"].get<std::string>();
  if (!j.contains("siblings") || !j["siblings"].is_array()) {
    throw HubError(ErrorKind::kOther,
                   url + ": response has no array field 'siblings' (the file list)");
  }
  std::set<std::string> seen;
  const auto& sib = j["siblings"];
  for (size_t i = 0; i < sib.size(); ++i) {
    const auto& s = sib[i];
    const std::string where = url + ": siblings[" + std::to_string(i) + "]";
    if (!s.is_object() || !s.contains("rfilename") || !s["rfilename"].is_string()) {
      throw HubError(ErrorKind::kOther, where + ".rfilename: missing or not a string");
    }
    RemoteFile f;
    f.path = s["rfilename"].get<std::string>();
    check_safe_name(f.path);
    // Two entries for one path would be downloaded by two workers into the same .incomplete file.
    if (!seen.insert(f.path).second)
      throw HubError(ErrorKind::kOther, where + ".rfilename: '" + f.path + "' is listed twice");
    auto size_of = [&](const nlohmann::json& v, const std::string& field) {
      if (!v.is_number_integer()) return int64_t{-1};
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        throw HubError(ErrorKind::kOther, where + "." + field + ": " + v.dump() + " is not a file size");
      const int64_t n = v.get<int64_t>();
      if (n < 0) throw HubError(ErrorKind::kOther, where + "." + field + ": " + v.dump() + " is not a file size");
      return n;
    };
    if (s.contains("size")) f.size = size_of(s["size"], "size");
    if (s.contains("blobId") && s["blobId"].is_string()) f.etag = s["blobId"].get<std::string>();
    if (s.contains("lfs") && s["lfs"].is_object()) {
      const auto& l = s["lfs"];
      if (l.contains("sha256") && l["sha256"].is_string()) f.etag = l["sha256"].get<std::string>();
      if (l.contains("size")) {
        const int64_t n = size_of(l["size"], "lfs.size");
        if (n >= 0) f.size = n;
      }
    }
    out.files.push_back(std::move(f));
  }
  return out;
}

std::optional<LocalMeta> parse_meta(const std::string& text) {
  std::istringstream in(text);
  LocalMeta m;
  std::string ts;
  if (!std::getline(in, m.commit) || !std::getline(in, m.etag) || !std::getline(in, ts))
    return std::nullopt;
  char* end = nullptr;
  m.timestamp = std::strtod(ts.c_str(), &end);
  if (end == ts.c_str() || !std::isfinite(m.timestamp)) return std::nullopt;
  m.commit = trim(m.commit);
  m.etag = trim(m.etag);
  return m;
}

}  // namespace medr1::hub
