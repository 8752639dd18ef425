// medr1::hub: digests, patterns, token look-up, and snapshot_download against a mock Hub on
// 127.0.0.1 (tests/hub/mock_hub.py, started per test with $MEDR1_PYTHON on a free port it reports
// back): full download, cut-and-resume, resume across runs, a corrupted byte, gated with / without
// a token, 404 repo / file / revision, 500 retried then failing, rerun fetching nothing, include /
// exclude, disk full, a renamed repo (relative redirect), and huggingface_hub's snapshot_download
// on the same mock giving a byte-identical folder.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "medr1/hub/checksum.h"
#include "medr1/hub/http.h"
#include "medr1/hub/snapshot_download.h"

namespace fs = std::filesystem;
using namespace medr1::hub;

namespace {

const char* kToken = "hf_mock_secret";

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Relative path -> bytes of every file under `root`, skipping the `.cache` bookkeeping folder.
std::map<std::string, std::string> tree_of(const fs::path& root) {
  std::map<std::string, std::string> out;
  if (!fs::exists(root)) return out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    if (it->is_directory() && it->path().filename() == ".cache") {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) out[fs::relative(it->path(), root).string()] = read_file(it->path());
  }
  return out;
}

std::string python() {
  const char* p = std::getenv("MEDR1_PYTHON");
  return p && *p ? p : "";
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "medr1_hub_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The mock Hub process; its request log is one JSON object per line.
class MockHub {
 public:
  bool start(const fs::path& dir) {
    log_ = dir / "requests.jsonl";
    dump_ = dir / "reference";
    const std::string script = std::string(MEDR1_SOURCE_DIR) + "/tests/hub/mock_hub.py";
    int fds[2];
    if (::pipe(fds) != 0) return false;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      ::close(fds[1]);
      const std::string py = python(), lg = log_.string(), dp = dump_.string();
      ::execl(py.c_str(), py.c_str(), script.c_str(), "--log", lg.c_str(), "--token", kToken,
              "--dump", dp.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    std::string line;
    pollfd pfd{fds[0], POLLIN, 0};
    while (line.find('\n') == std::string::npos && ::poll(&pfd, 1, 20000) > 0) {
      char buf[256];
      const ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    std::istringstream is(line);
    std::string word;
    int port = 0;
    is >> word >> port >> cdn_host_;
    if (word != "PORT" || port <= 0) return false;
    endpoint_ = "http://127.0.0.1:" + std::to_string(port);
    return true;
  }
  ~MockHub() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  const std::string& endpoint() const { return endpoint_; }
  // The CDN runs on another host name (127.0.0.2) unless that could not be bound (then 127.0.0.1).
  bool cdn_off_host() const { return cdn_host_ != "127.0.0.1"; }
  std::string reference(const std::string& file) const { return read_file(dump_ / file); }
  const fs::path& reference_dir() const { return dump_; }
  std::vector<nlohmann::json> requests() const {
    std::vector<nlohmann::json> out;
    std::ifstream in(log_);
    std::string l;
    while (std::getline(in, l)) {
      if (!l.empty()) out.push_back(nlohmann::json::parse(l));
    }
    return out;
  }
  // Requests whose path contains `needle` (and came to `server`, "" = either).
  std::vector<nlohmann::json> requests_to(const std::string& needle,
                                          const std::string& server = "") const {
    std::vector<nlohmann::json> out;
    for (auto& r : requests()) {
      if (r["path"].get<std::string>().find(needle) != std::string::npos &&
          (server.empty() || r["server"] == server)) {
        out.push_back(r);
      }
    }
    return out;
  }

 private:
  pid_t pid_ = -1;
  fs::path log_, dump_;
  std::string endpoint_, cdn_host_;
};

// The mock repos' files, sorted (empty.txt: a zero-byte file).
const std::vector<std::string> kRepoFiles = {
    ".gitattributes",           "README.md",        "config.json", "empty.txt", "model.safetensors",
    "tokenizer/tokenizer.json", "weights/extra.bin"};

class HubDownload : public ::testing::Test {
 protected:
  void SetUp() override {
    if (python().empty()) GTEST_SKIP() << "MEDR1_PYTHON is not set: no mock Hub";
    ASSERT_TRUE(hub_.start(tmp_.path())) << "the mock Hub did not start (" << python() << ")";
  }
  DownloadOptions options(const std::string& repo, const std::string& out_name = "out") {
    DownloadOptions o;
    o.repo_id = repo;
    o.endpoint = hub_.endpoint();
    o.output_dir = (tmp_.path() / out_name).string();
    o.progress = false;
    o.max_workers = 4;
    o.max_retries = 3;
    o.retry_backoff_s = 0.01;
    return o;
  }
  int64_t reference_bytes() const {
    int64_t n = 0;
    for (const auto& f : kRepoFiles) n += static_cast<int64_t>(hub_.reference(f).size());
    return n;
  }
  // Runs snapshot_download expecting a HubError of `kind`; returns its message.
  std::string expect_error(const DownloadOptions& o, ErrorKind kind) {
    try {
      snapshot_download(o);
    } catch (const HubError& e) {
      EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind)) << e.what();
      return e.what();
    }
    ADD_FAILURE() << "snapshot_download(" << o.repo_id << ") did not fail";
    return "";
  }

  TempDir tmp_;
  MockHub hub_;
};

}  // namespace

// ---- digests
// ----------------------------------------------------------------------------------------------------

TEST(Checksum, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  // `git hash-object` of an empty file and of "hello world\n".
  EXPECT_EQ(git_blob_sha1_hex(""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
  EXPECT_EQ(git_blob_sha1_hex("hello world\n"), "3b18e512dba79e4c8300dd08aeb37f8e728b8dad");
}

TEST(Checksum, IncrementalAndFileDigestsAgree) {
  std::string data;
  for (int i = 0; i < 5'000'000; ++i) data += static_cast<char>((i * 131 + 7) & 0xff);
  Hasher h(HashKind::kSha256);
  for (size_t off = 0; off < data.size(); off += 777'777) h.update(data.substr(off, 777'777));
  const std::string whole = sha256_hex(data);
  EXPECT_EQ(h.hex_digest(), whole);
  TempDir t;
  write_file(t.path() / "f.bin", data);
  EXPECT_EQ(sha256_file_hex((t.path() / "f.bin").string()), whole);
  EXPECT_EQ(sha256_file_hex((t.path() / "f.bin").string(), 1000), sha256_hex(data.substr(0, 1000)));
  EXPECT_EQ(git_blob_sha1_file_hex((t.path() / "f.bin").string()), git_blob_sha1_hex(data));
  EXPECT_TRUE(is_sha256_hex(whole));
  EXPECT_FALSE(is_sha256_hex(whole.substr(1)));
  EXPECT_TRUE(is_sha1_hex(git_blob_sha1_hex(data)));
  EXPECT_FALSE(is_sha1_hex("W/\"0123\""));
}

// ---- patterns, presets, token, formatting
// ----------------------------------------------------------------------

TEST(HubPatterns, FnmatchLikeHuggingfaceHub) {
  const std::vector<std::string> none;
  EXPECT_TRUE(keep_path("model.safetensors", none, none));
  EXPECT_TRUE(keep_path("config.json", {"*.json"}, none));
  EXPECT_TRUE(
      keep_path("tokenizer/tokenizer.json", {"*.json"}, none));  // '*' crosses '/', as fnmatch
  EXPECT_FALSE(keep_path("model.safetensors", {"*.json"}, none));
  EXPECT_FALSE(
      keep_path("tokenizer/tokenizer.json", {"*.json"}, {"tokenizer/"}));  // "dir/" = "dir/*"
  EXPECT_TRUE(
      keep_path("model-00001-of-00002.safetensors", {"model-0000?-of-*.safetensors"}, none));
  EXPECT_TRUE(keep_path("a[1].bin", {"a[[]1].bin"}, none));
  EXPECT_FALSE(keep_path("b.bin", {"[!b]*"}, none));
  EXPECT_FALSE(keep_path("x\\y", {"x\\\\y"}, none));  // no backslash escapes (FNM_NOESCAPE)
  EXPECT_TRUE(keep_path("x\\y", {"x\\y"}, none));
  EXPECT_FALSE(keep_path("README.md", {"*.md", "*.json"}, {"README*"}));
}

TEST(HubPresets, PresetsAndRepoIds) {
  EXPECT_EQ(resolve_model("qwen2-vl-2b"), "Qwen/Qwen2-VL-2B-Instruct");
  EXPECT_EQ(resolve_model("qwen2-vl-7b"), "Qwen/Qwen2-VL-7B-Instruct");
  EXPECT_EQ(resolve_model("qwen2.5-vl-3b"), "Qwen/Qwen2.5-VL-3B-Instruct");
  EXPECT_EQ(resolve_model("qwen2.5-vl-7b"), "Qwen/Qwen2.5-VL-7B-Instruct");
  EXPECT_EQ(resolve_model("med-r1"), "yuxianglai117/Med-R1");
  EXPECT_EQ(resolve_model("some-org/some-model"), "some-org/some-model");
  for (const char* bad : {"qwen3", "a/b/c", "/x", "x/", "../x"}) {
    try {
      resolve_model(bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const HubError& e) {
      EXPECT_NE(std::string(e.what()).find("--list"), std::string::npos) << e.what();
    }
  }
}

TEST(HubToken, CliThenEnvThenTokenFile) {
  TempDir t;
  write_file(t.path() / "token", "hf_from_file\n");
  const char* saved[] = {"HF_TOKEN", "HF_TOKEN_PATH", "HF_HOME"};
  std::map<std::string, std::string> old;
  for (const char* k : saved) {
    if (const char* v = std::getenv(k)) old[k] = v;
    ::unsetenv(k);
  }
  ::setenv("HF_HOME", t.path().c_str(), 1);
  std::string src;
  EXPECT_EQ(resolve_token("", &src), "hf_from_file");
  EXPECT_EQ(src, (t.path() / "token").string());
  ::setenv("HF_TOKEN", "hf_from_env", 1);
  EXPECT_EQ(resolve_token("", &src), "hf_from_env");
  EXPECT_EQ(src, "HF_TOKEN");
  EXPECT_EQ(resolve_token(" hf_cli ", &src), "hf_cli");
  EXPECT_EQ(src, "--token");
  ::unsetenv("HF_TOKEN");
  ::setenv("HF_TOKEN_PATH", (t.path() / "missing").c_str(), 1);
  EXPECT_EQ(resolve_token("", &src), "");
  EXPECT_EQ(src, "");
  for (const char* k : saved) {
    if (old.count(k)) {
      ::setenv(k, old[k].c_str(), 1);
    } else {
      ::unsetenv(k);
    }
  }
}

TEST(HubFormat, BytesRateAndEta) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1234), "1.23 kB");
  EXPECT_EQ(format_bytes(85.3e6), "85.3 MB");
  EXPECT_EQ(format_bytes(4.42e9), "4.42 GB");
  EXPECT_EQ(format_transfer(1'000'000, 4'000'000, 1, 3, 1e6),
            "1/3 files 1.00 MB/4.00 MB 25.0% 1.00 MB/s ETA 0:03");
  EXPECT_EQ(format_transfer(0, 0, 0, 2, 0), "0/2 files 0 B -- B/s");
  EXPECT_EQ(format_transfer(0, 10, 0, 1, 0), "0/1 files 0 B/10 B 0.0% -- B/s ETA --");
}

// The listing parser (also fuzzed: tests/fuzz/fuzz_hub.cpp): sizes from lfs over the pointer size, etags
// from lfs.sha256 over blobId; unsafe, repeated or negative-sized entries refused naming the entry.
TEST(HubListing, ParsesTheHubsJsonAndRefusesWhatWouldEscapeOrCollide) {
  const std::string ok =
      R"({"sha":"c0ffee","siblings":[{"rfilename":"config.json","blobId":"b1","size":12},)"
      R"({"rfilename":"w/model.safetensors","blobId":"b2","size":135,"lfs":{"sha256":"s256","size":4000}}]})";
  const RepoListing l = parse_repo_listing(ok, "u");
  EXPECT_EQ(l.commit, "c0ffee");
  ASSERT_EQ(l.files.size(), 2u);
  EXPECT_EQ(l.files[0].etag, "b1");
  EXPECT_EQ(l.files[0].size, 12);
  EXPECT_EQ(l.files[1].etag, "s256");
  EXPECT_EQ(l.files[1].size, 4000);
  auto refused = [](const std::string& body) {
    try {
      parse_repo_listing(body, "http://hub/api/models/x");
    } catch (const HubError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  auto one = [](const std::string& sibling) { return R"({"sha":"a","siblings":[)" + sibling + "]}"; };
  for (const char* bad : {"../x", "/etc/passwd", "a/../../b", "a//b", "a/", "./a", "a\\\\b", ""})  // a\\b: JSON for a backslash
    EXPECT_NE(refused(one(std::string(R"({"rfilename":")") + bad + R"("})")).find("unsafe file name"),
              std::string::npos)
        << bad;
  // Names that only start with dots are files of their own (the fuzz target once took them for escapes).
  for (const char* fine : {"..itattributes", "a/..b", "...", ".gitattributes"})
    EXPECT_EQ(refused(one(std::string(R"({"rfilename":")") + fine + R"("})")), "(accepted)") << fine;
  EXPECT_NE(refused(one(R"({"rfilename":"a"},{"rfilename":"a"})")).find("siblings[1].rfilename: 'a' is listed twice"),
            std::string::npos);
  EXPECT_NE(refused(one(R"({"rfilename":"a","size":-5})")).find("siblings[0].size: -5 is not a file size"),
            std::string::npos);
  EXPECT_NE(refused(one(R"({"rfilename":"a","lfs":{"size":18446744073709551615}})")).find("lfs.size"),
            std::string::npos);
  EXPECT_NE(refused("<html>").find("malformed JSON"), std::string::npos);
  EXPECT_NE(refused(R"({"siblings":[]})").find("no string field 'sha'"), std::string::npos);
  EXPECT_NE(refused(R"({"sha":"a"})").find("no array field 'siblings'"), std::string::npos);
  // .metadata files: three lines, a finite timestamp; anything else means "download again"
  const auto m = parse_meta("c0ffee\n s256 \n1764680000.5\n");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->commit, "c0ffee");
  EXPECT_EQ(m->etag, "s256");
  EXPECT_DOUBLE_EQ(m->timestamp, 1764680000.5);
  EXPECT_FALSE(parse_meta("c0ffee\ns256\n").has_value());
  EXPECT_FALSE(parse_meta("c0ffee\ns256\nnot a time\n").has_value());
  EXPECT_FALSE(parse_meta("c0ffee\ns256\nnan\n").has_value());
}

TEST(HubHttp, UrlHelpers) {
  EXPECT_EQ(resolve_url("http://127.0.0.1:8/a/b/c?x=1", "/d/e"), "http://127.0.0.1:8/d/e");
  EXPECT_EQ(resolve_url("http://127.0.0.1:8/a/b/c", "d"), "http://127.0.0.1:8/a/b/d");
  EXPECT_EQ(resolve_url("http://h/a", "https://cdn.example/x?s=1"), "https://cdn.example/x?s=1");
  EXPECT_EQ(url_host("https://HuggingFace.co:443/x"), "huggingface.co");
  EXPECT_EQ(url_quote("refs/pr/1", false), "refs%2Fpr%2F1");
  EXPECT_EQ(url_quote("dir/a b+c.json", true), "dir/a%20b%2Bc.json");
}

// ---- against the mock Hub
// ----------------------------------------------------------------------------------------

TEST_F(HubDownload, FullDownloadFetchesEveryFileOnceAndVerifies) {
  const auto rep = snapshot_download(options("test-org/tiny-model"));
  EXPECT_EQ(rep.files_total, 7);
  EXPECT_EQ(rep.files_downloaded, 7);
  EXPECT_EQ(rep.files_skipped, 0);
  EXPECT_EQ(rep.bytes_fetched, reference_bytes());
  EXPECT_EQ(rep.retries, 0);
  EXPECT_EQ(rep.downloaded, kRepoFiles);
  EXPECT_EQ(tree_of(tmp_.path() / "out"), tree_of(hub_.reference_dir()));
  // One listing, one resolve per file, the two LFS files' bytes from the CDN host, no .incomplete
  // left.
  EXPECT_EQ(hub_.requests().size(), 1u + 7u + 2u);
  EXPECT_EQ(hub_.requests_to("/api/models/").size(), 1u);
  EXPECT_EQ(hub_.requests_to("/resolve/").size(), 7u);
  EXPECT_EQ(hub_.requests_to("/cdn/", "cdn").size(), 2u);
  for (auto& p : fs::recursive_directory_iterator(tmp_.path() / "out")) {
    EXPECT_EQ(p.path().string().find(".incomplete"), std::string::npos) << p.path();
  }
  // huggingface_hub's local_dir metadata: commit, etag, timestamp.
  std::ifstream meta(metadata_path((tmp_.path() / "out").string(), "model.safetensors"));
  std::string commit, etag;
  std::getline(meta, commit);
  std::getline(meta, etag);
  EXPECT_EQ(commit, rep.commit);
  EXPECT_EQ(etag, sha256_hex(hub_.reference("model.safetensors")));
  std::printf("[figures] full download: %d files, %lld bytes fetched, %zu requests\n",
              rep.files_downloaded, static_cast<long long>(rep.bytes_fetched),
              hub_.requests().size());
}

TEST_F(HubDownload, RerunDownloadsNothing) {
  snapshot_download(options("test-org/tiny-model"));
  const size_t before = hub_.requests().size();
  const auto rep = snapshot_download(options("test-org/tiny-model"));
  EXPECT_EQ(rep.files_downloaded, 0);
  EXPECT_EQ(rep.files_skipped, 7);
  EXPECT_EQ(rep.bytes_fetched, 0);
  EXPECT_EQ(hub_.requests().size(), before + 1);  // the listing only: no resolve, no re-hash needed
  const size_t rerun_requests = hub_.requests().size() - before;
  // A file changed on disk (newer than its metadata) is re-hashed, found wrong and fetched again:
  // that one only.
  const fs::path cfg = tmp_.path() / "out" / "config.json";
  write_file(cfg, "{\"tampered\": true}");
  fs::last_write_time(cfg, fs::file_time_type::clock::now() + std::chrono::seconds(5));
  const auto rep2 = snapshot_download(options("test-org/tiny-model"));
  EXPECT_EQ(rep2.downloaded, std::vector<std::string>{"config.json"});
  EXPECT_EQ(read_file(cfg), hub_.reference("config.json"));
  std::printf("[figures] rerun: %d downloaded, %d skipped, %lld bytes, %zu request(s)\n",
              rep.files_downloaded, rep.files_skipped, static_cast<long long>(rep.bytes_fetched),
              rerun_requests);
}

TEST_F(HubDownload, ConnectionCutMidFileResumesWithRange) {
  const auto rep = snapshot_download(options("test-org/cut-model"));
  EXPECT_EQ(rep.files_downloaded, 7);
  EXPECT_EQ(rep.retries, 2);  // each LFS file cut once
  EXPECT_EQ(rep.bytes_fetched,
            reference_bytes());  // half before the cut + the rest after it: no byte twice
  const auto cdn = hub_.requests_to("file=model.safetensors", "cdn");
  ASSERT_EQ(cdn.size(), 2u);
  EXPECT_EQ(cdn[0]["status"], "200-cut");
  EXPECT_TRUE(cdn[0]["range"].is_null());
  EXPECT_EQ(cdn[1]["range"], "bytes=750000-");
  EXPECT_EQ(cdn[1]["status"], 206);
  // The retry goes through the Hub's resolve again (the signed URL may have expired) and carries
  // the Range.
  const auto resolve = hub_.requests_to("/resolve/", "hub");
  int ranged = 0;
  for (auto& r : resolve) ranged += r["range"] == "bytes=750000-";
  EXPECT_EQ(ranged, 1);
  EXPECT_EQ(read_file(tmp_.path() / "out" / "model.safetensors"),
            hub_.reference("model.safetensors"));
  EXPECT_EQ(tree_of(tmp_.path() / "out"), tree_of(hub_.reference_dir()));
  std::printf(
      "[figures] cut-and-resume: first GET %s after 750000 of 1500000 bytes, second Range %s -> "
      "%d\n",
      cdn[0]["status"].get<std::string>().c_str(), cdn[1]["range"].get<std::string>().c_str(),
      cdn[1]["status"].get<int>());
}

TEST_F(HubDownload, ResumesAPartialFileFromAnEarlierRun) {
  const std::string ref = hub_.reference("model.safetensors");
  const std::string out = (tmp_.path() / "out").string();
  write_file(incomplete_path(out, "model.safetensors", sha256_hex(ref)), ref.substr(0, 600'000));
  auto o = options("test-org/tiny-model");
  o.include = {"model.safetensors"};
  const auto rep = snapshot_download(o);
  EXPECT_EQ(rep.files_downloaded, 1);
  EXPECT_EQ(rep.bytes_resumed, 600'000);
  EXPECT_EQ(rep.bytes_fetched, 900'000);
  const auto cdn = hub_.requests_to("/cdn/", "cdn");
  ASSERT_EQ(cdn.size(), 1u);
  EXPECT_EQ(cdn[0]["range"], "bytes=600000-");
  EXPECT_EQ(read_file(fs::path(out) / "model.safetensors"), ref);
  EXPECT_FALSE(fs::exists(incomplete_path(out, "model.safetensors", sha256_hex(ref))));
}

TEST_F(HubDownload, StalePartialFileIsDiscardedAfterTheChecksumFails) {
  const std::string ref = hub_.reference("model.safetensors");
  const std::string out = (tmp_.path() / "out").string();
  write_file(incomplete_path(out, "model.safetensors", sha256_hex(ref)), std::string(600'000, 'x'));
  auto o = options("test-org/tiny-model");
  o.include = {"model.safetensors"};
  const auto rep = snapshot_download(o);
  EXPECT_EQ(rep.files_downloaded, 1);
  const auto cdn = hub_.requests_to("/cdn/", "cdn");
  ASSERT_EQ(cdn.size(), 2u);
  EXPECT_EQ(cdn[0]["range"], "bytes=600000-");
  EXPECT_TRUE(cdn[1]["range"].is_null());
  EXPECT_EQ(read_file(fs::path(out) / "model.safetensors"), ref);
}

TEST_F(HubDownload, CorruptedByteIsCaughtBySha256) {
  auto o = options("test-org/corrupt-model");
  o.max_workers = 1;
  const std::string msg = expect_error(o, ErrorKind::kChecksum);
  const std::string want = sha256_hex(hub_.reference("model.safetensors"));
  EXPECT_NE(msg.find("model.safetensors: sha256 mismatch: expected " + want + ", got "),
            std::string::npos)
      << msg;
  const fs::path out = tmp_.path() / "out";
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
  EXPECT_FALSE(fs::exists(incomplete_path(out.string(), "model.safetensors", want)));
  std::printf("[figures] corrupted byte: %s\n", msg.c_str());
}

TEST_F(HubDownload, GatedRepoNeedsAToken) {
  const std::string msg = expect_error(options("test-org/gated-model"), ErrorKind::kAuth);
  EXPECT_NE(msg.find("needs a token"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--token"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HF_TOKEN"), std::string::npos) << msg;
  EXPECT_TRUE(tree_of(tmp_.path() / "out").empty());
  auto bad = options("test-org/gated-model", "bad");
  bad.token = "hf_wrong";
  EXPECT_NE(expect_error(bad, ErrorKind::kAuth).find("token was refused"), std::string::npos);
  const size_t before = hub_.requests().size();

  auto o = options("test-org/gated-model", "with_token");
  o.token = kToken;
  const auto rep = snapshot_download(o);
  EXPECT_EQ(rep.files_downloaded, 7);
  EXPECT_EQ(tree_of(tmp_.path() / "with_token"), tree_of(hub_.reference_dir()));
  // The token goes to the Hub, never to the CDN's signed URL on another host.
  const auto reqs = hub_.requests();
  for (size_t i = before; i < reqs.size(); ++i) {
    if (reqs[i]["server"] == "hub" || !hub_.cdn_off_host()) {
      EXPECT_EQ(reqs[i]["auth"], "Bearer hf_mock_secret") << reqs[i].dump();
    } else {
      EXPECT_TRUE(reqs[i]["auth"].is_null()) << reqs[i].dump();
    }
  }
  std::printf("[figures] gated: without token -> %s | with token -> %d files\n", msg.c_str(),
              rep.files_downloaded);
}

TEST_F(HubDownload, NotFoundNamesTheRepoTheFileOrTheRevision) {
  const std::string repo = expect_error(options("test-org/no-such-model"), ErrorKind::kNotFound);
  EXPECT_NE(repo.find("repository 'test-org/no-such-model' not found"), std::string::npos) << repo;
  auto o = options("test-org/ghost-model");
  o.max_workers = 1;
  const std::string file = expect_error(o, ErrorKind::kNotFound);
  EXPECT_NE(file.find("file 'ghost.bin' not found in repository 'test-org/ghost-model'"),
            std::string::npos)
      << file;
  EXPECT_FALSE(fs::exists(tmp_.path() / "out" / "ghost.bin"));
  auto r = options("test-org/tiny-model", "rev");
  r.revision = "v9";
  const std::string rev = expect_error(r, ErrorKind::kNotFound);
  EXPECT_NE(rev.find("revision 'v9' not found"), std::string::npos) << rev;
}

TEST_F(HubDownload, ServerErrorIsRetriedWithBackoffThenFails) {
  auto o = options("test-org/flaky-model");
  o.include = {"model.safetensors"};
  const std::string msg = expect_error(o, ErrorKind::kNetwork);
  EXPECT_NE(msg.find("HTTP 500"), std::string::npos) << msg;
  EXPECT_NE(msg.find("after 4 attempts (3 retries with backoff)"), std::string::npos) << msg;
  EXPECT_EQ(hub_.requests_to("/resolve/").size(), 4u);
  EXPECT_FALSE(fs::exists(tmp_.path() / "out" / "model.safetensors"));
}

TEST_F(HubDownload, IncludeAndExcludePatterns) {
  auto o = options("test-org/tiny-model");
  o.include = {"*.json", "weights/"};
  o.exclude = {"tokenizer/*"};
  const auto rep = snapshot_download(o);
  EXPECT_EQ(rep.files_total, 2);
  EXPECT_EQ(rep.downloaded, (std::vector<std::string>{"config.json", "weights/extra.bin"}));
  const auto tree = tree_of(tmp_.path() / "out");
  ASSERT_EQ(tree.size(), 2u);
  EXPECT_EQ(tree.at("config.json"), hub_.reference("config.json"));
  EXPECT_EQ(hub_.requests_to("/resolve/").size(), 2u);
}

TEST_F(HubDownload, ProgressLineCountsBytesAndFiles) {
  TempDir t;
  std::FILE* f = std::fopen((t.path() / "progress.txt").c_str(), "w+");
  ASSERT_NE(f, nullptr);
  auto o = options("test-org/tiny-model");
  o.progress = true;
  o.progress_stream = f;
  o.progress_tty = 0;  // plain lines, as in a log
  snapshot_download(o);
  std::fclose(f);
  const std::string text = read_file(t.path() / "progress.txt");
  const std::string last = text.substr(text.rfind('\n', text.size() - 2) + 1);
  EXPECT_EQ(last.rfind("test-org/tiny-model 7/7 files 1.82 MB/1.82 MB 100.0% ", 0), 0u) << text;
  EXPECT_NE(last.find("B/s ETA 0:00"), std::string::npos) << text;
}

TEST_F(HubDownload, AnHtmlPageInsteadOfTheHubIsAClearError) {
  const std::string msg = expect_error(options("test-org/html-model"), ErrorKind::kOther);
  EXPECT_NE(msg.find("malformed JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HF_ENDPOINT"), std::string::npos) << msg;
}

TEST_F(HubDownload, RenamedRepoFollowsARelativeRedirect) {
  const auto rep = snapshot_download(options("old-org/tiny-model"));
  EXPECT_EQ(rep.files_downloaded, 7);
  EXPECT_EQ(tree_of(tmp_.path() / "out"), tree_of(hub_.reference_dir()));
  int moved = 0;
  for (auto& r : hub_.requests()) moved += r["status"] == 307;
  EXPECT_EQ(moved, 8);  // the listing and each of the 7 resolves
}

TEST_F(HubDownload, DiskFullIsAClearErrorAndLeavesNoFinalFile) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  const std::string out = (tmp_.path() / "out").string();
  const std::string sha = sha256_hex(hub_.reference("model.safetensors"));
  const fs::path part = incomplete_path(out, "model.safetensors", sha);
  fs::create_directories(part.parent_path());
  fs::create_symlink("/dev/full", part);  // every write there fails with ENOSPC
  auto o = options("test-org/tiny-model");
  o.include = {"model.safetensors"};
  const std::string msg = expect_error(o, ErrorKind::kDiskFull);
  EXPECT_NE(msg.find("disk full"), std::string::npos) << msg;
  EXPECT_NE(msg.find("No space left on device"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(fs::path(out) / "model.safetensors"));
}

TEST_F(HubDownload, SameFolderAsHuggingfaceHubSnapshotDownload) {
  const std::string probe = python() + " -c 'import huggingface_hub' >/dev/null 2>&1";
  if (std::system(probe.c_str()) != 0)
    GTEST_SKIP() << "huggingface_hub does not import in " << python();
  const fs::path hf_out = tmp_.path() / "hf", hf_home = tmp_.path() / "hf_home";
  const std::string cmd =
      "HF_ENDPOINT=" + hub_.endpoint() +
      " HF_HUB_DISABLE_XET=1 HF_HUB_OFFLINE=0 HF_HUB_DISABLE_TELEMETRY=1 HF_TOKEN= HF_HOME=" +
      hf_home.string() + " " + python() +
      " -c 'import os, sys; from huggingface_hub import snapshot_download; "
      "snapshot_download(sys.argv[1], revision=\"main\", local_dir=sys.argv[2], "
      "endpoint=os.environ[\"HF_ENDPOINT\"])' test-org/tiny-model " +
      hf_out.string() + " >" + (tmp_.path() / "hf.log").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file(tmp_.path() / "hf.log");
  snapshot_download(options("test-org/tiny-model"));
  const auto ours = tree_of(tmp_.path() / "out"), theirs = tree_of(hf_out);
  EXPECT_EQ(ours.size(), 7u);
  EXPECT_EQ(ours, theirs);
  // And each reads the other's bookkeeping: medr1 on huggingface_hub's folder fetches nothing.
  auto again = options("test-org/tiny-model", "hf");
  const auto rep = snapshot_download(again);
  EXPECT_EQ(rep.files_skipped, 7);
  EXPECT_EQ(rep.bytes_fetched, 0);
  size_t bytes = 0;
  for (auto& [k, v] : ours) bytes += v.size();
  std::printf("[figures] snapshot_download vs medr1: %zu files, %zu bytes, identical: %s\n",
              ours.size(), bytes, ours == theirs ? "yes" : "no");
}

TEST_F(HubDownload, AppExitCodesAndPresetList) {
  const std::string exe = std::string(MEDR1_BINARY_DIR) + "/medr1-download";
  if (!fs::exists(exe)) GTEST_SKIP() << exe << " not built";
  const std::string log = (tmp_.path() / "app.log").string();
  ASSERT_EQ(std::system((exe + " --list >" + log).c_str()), 0);
  EXPECT_NE(read_file(log).find("qwen2.5-vl-3b   Qwen/Qwen2.5-VL-3B-Instruct"), std::string::npos)
      << read_file(log);
  auto run = [&](const std::string& args) {
    const int st =
        std::system(("HF_TOKEN= HF_HOME=" + tmp_.path().string() + " " + exe + " --endpoint " +
                     hub_.endpoint() + " --quiet " + args + " >" + log + " 2>&1")
                        .c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  auto out = [&](const std::string& name) { return " --output " + (tmp_.path() / name).string(); };
  EXPECT_EQ(run("--model test-org/gated-model" + out("a1")), 3) << read_file(log);
  EXPECT_EQ(run("--model test-org/no-such-model" + out("a2")), 4) << read_file(log);
  EXPECT_EQ(run("--model test-org/flaky-model --retries 0" + out("a3")), 5) << read_file(log);
  EXPECT_EQ(run("--model test-org/gated-model --token " + std::string(kToken) + out("a4")), 0)
      << read_file(log);
  EXPECT_EQ(tree_of(tmp_.path() / "a4"), tree_of(hub_.reference_dir()));
  EXPECT_EQ(run("--model nonsense" + out("a5")), 1) << read_file(log);
}
