// medr1-infer on the bundled tiny checkpoint and demo images: JSONL fields, error lines for
// missing/corrupt images with the run going on, and resume after a kill -9 of the app mid-run (no
// duplicates, nothing lost).
#include "medr1/infer/infer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
const std::string kSrc = MEDR1_SOURCE_DIR;
const std::string kTiny = kSrc + "/tests/data/qwen2vl-tiny";

bool have_fixtures() {
  return fs::exists(kSrc + "/tests/data/tokenizer/qwen2vl/tokenizer.json") &&
         fs::exists(kSrc + "/data/demo/test.json");
}

fs::path temp_dir(const std::string& name) { return medr1::test::make_temp_dir("infer_test_" + name); }

// The first n records of the demo test set (image paths relative to data/demo).
json demo_records(size_t n) {
  std::ifstream f(kSrc + "/data/demo/test.json");
  json all = json::parse(f);
  json out = json::array();
  for (size_t i = 0; i < n && i < all.size(); ++i) out.push_back(all[i]);
  return out;
}

std::vector<json> read_lines(const fs::path& p) {
  std::vector<json> v;
  std::ifstream f(p);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr,
                         /*allow_exceptions=*/false);  // a killed run may leave a partial line
    if (!j.is_discarded()) v.push_back(std::move(j));
  }
  return v;
}

// fork + exec of medr1-infer over `in` -> `out` on the tiny model (batch 1, one thread, quiet);
// stderr into `stderr_log` when given.
pid_t spawn_infer(const fs::path& in, const std::string& out, int max_new_tokens,
                  const fs::path& stderr_log = {}) {
  const std::string exe = std::string(MEDR1_BINARY_DIR) + "/medr1-infer";
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<std::string> args{exe,
                                  "--input",
                                  in.string(),
                                  "--output",
                                  out,
                                  "--dataset-root",
                                  kSrc + "/data/demo",
                                  "--model",
                                  kTiny,
                                  "--batch-size",
                                  "1",
                                  "--max-new-tokens",
                                  std::to_string(max_new_tokens),
                                  "--threads",
                                  "1",
                                  "--quiet"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (!stderr_log.empty()) {
      const int fd = ::open(stderr_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 2);
    }
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

medr1::infer::InferOptions base_opts(const fs::path& in, const fs::path& out) {
  medr1::infer::InferOptions o;
  o.input = in.string();
  o.output = out.string();
  o.dataset_root = kSrc + "/data/demo";
  o.model_dir = kTiny;
  o.batch_size = 3;
  o.max_new_tokens = 6;
  o.threads = 1;
  o.progress = false;
  return o;
}

TEST(Infer, DemoItemsGiveAnswerLinesAndErrorLinesForBadImages) {
  if (!have_fixtures())
    GTEST_SKIP() << "tokenizer fixture (scripts/tokenizer_fixtures.sh) or data/demo missing";
  fs::path d = temp_dir("smoke");
  json recs = demo_records(4);
  recs.insert(recs.begin() + 1,
              json{{"image", "Images/nope/missing.png"}, {"problem", "Q? A)x, B)y"}});
  { std::ofstream(d / "corrupt.png") << "not a png"; }
  recs.push_back(json{{"image", (d / "corrupt.png").string()}, {"problem", "Q? A)x, B)y"}});
  { std::ofstream(d / "in.json") << recs.dump(); }
  auto s = medr1::infer::run_inference(base_opts(d / "in.json", d / "out.jsonl"));
  EXPECT_EQ(s.total, 6);
  EXPECT_EQ(s.written, 6);
  EXPECT_EQ(s.errors, 2);
  auto lines = read_lines(d / "out.jsonl");
  ASSERT_EQ(lines.size(), 6u);
  std::set<int64_t> idx;
  for (const auto& l : lines) {
    idx.insert(l["index"].get<int64_t>());
    const int64_t i = l["index"].get<int64_t>();
    if (i == 1 || i == 5) {
      EXPECT_TRUE(l.contains("error")) << l.dump();
      EXPECT_FALSE(l.contains("output"));
    } else {
      EXPECT_FALSE(l.contains("error")) << l.dump();
      EXPECT_TRUE(l["output"].is_string());
      EXPECT_TRUE(l.contains("extracted_answer"));
      EXPECT_GE(l["tokens"].get<int64_t>(), 1);
      EXPECT_LE(l["tokens"].get<int64_t>(), 6);
      EXPECT_TRUE(l["time"].is_number());
      EXPECT_EQ(l["problem"], recs[static_cast<size_t>(i)]["problem"]);
    }
  }
  EXPECT_EQ(idx.size(), 6u);
  // Re-running resumes: nothing new is written.
  auto s2 = medr1::infer::run_inference(base_opts(d / "in.json", d / "out.jsonl"));
  EXPECT_EQ(s2.skipped, 6);
  EXPECT_EQ(s2.written, 0);
  EXPECT_EQ(read_lines(d / "out.jsonl").size(), 6u);
  fs::remove_all(d);
}

TEST(Infer, BatchedOutputsEqualUnbatched) {
  if (!have_fixtures()) GTEST_SKIP() << "fixtures missing";
  fs::path d = temp_dir("batch");
  { std::ofstream(d / "in.json") << demo_records(3).dump(); }
  auto o1 = base_opts(d / "in.json", d / "b1.jsonl");
  o1.batch_size = 1;
  medr1::infer::run_inference(o1);
  auto o3 = base_opts(d / "in.json", d / "b3.jsonl");
  medr1::infer::run_inference(o3);
  auto a = read_lines(d / "b1.jsonl"), b = read_lines(d / "b3.jsonl");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(a[i]["output"], b[i]["output"]) << i;
  fs::remove_all(d);
}

TEST(Infer, RejectsBadOptions) {
  medr1::infer::InferOptions o;
  const fs::path d = temp_dir("badopts");
  o.input = (d / "x.json").string();
  o.output = (d / "y.jsonl").string();
  o.model_dir = kTiny;
  o.device = "cuda:0";
#ifndef MEDR1_CUDA
  EXPECT_THROW(medr1::infer::run_inference(o), std::exception);
#endif
  o.device = "cpu";
  o.template_name = "custom";
  o.custom_template = "no placeholder";
  EXPECT_THROW(medr1::infer::run_inference(o), std::exception);
  EXPECT_FALSE(fs::exists(d / "y.jsonl.lock")) << "a refused command line must not lock its output";
  fs::remove_all(d);
}

TEST(Infer, ResumeAfterKillLosesNothingAndDuplicatesNothing) {
  const std::string exe = std::string(MEDR1_BINARY_DIR) + "/medr1-infer";
  if (!have_fixtures() || !fs::exists(exe))
    GTEST_SKIP() << "medr1-infer not built or fixtures missing";
  fs::path d = temp_dir("kill");
  const size_t n = 12;
  { std::ofstream(d / "in.json") << demo_records(n).dump(); }
  const std::string out = (d / "out.jsonl").string();
  auto spawn = [&]() { return spawn_infer(d / "in.json", out, 16); };
  pid_t pid = spawn();
  ASSERT_GT(pid, 0);
  // Kill once a few lines are there (or the run ended on its own).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int status = 0;
  bool exited = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      break;
    }
    if (fs::exists(out) && read_lines(out).size() >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  const size_t before = fs::exists(out) ? read_lines(out).size() : 0;
  EXPECT_LT(before, n) << "the run finished before the kill; the test did not exercise resume";
  pid = spawn();
  ASSERT_GT(pid, 0);
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  auto lines = read_lines(out);
  std::set<int64_t> idx;
  for (const auto& l : lines) idx.insert(l["index"].get<int64_t>());
  EXPECT_EQ(lines.size(), n);
  EXPECT_EQ(idx.size(), n);
  fs::remove_all(d);
}

// Issue 14: a run left alive plus its rerun on the same --output gave 109 lines for 65 items. The
// second process is now refused at start, naming the first; the first finishes alone (no
// duplicates); a later rerun resumes.
TEST(Infer, SecondProcessOnTheSameOutputIsRefusedNamingTheFirst) {
  const std::string exe = std::string(MEDR1_BINARY_DIR) + "/medr1-infer";
  if (!have_fixtures() || !fs::exists(exe))
    GTEST_SKIP() << "medr1-infer not built or fixtures missing";
  fs::path d = temp_dir("lock");
  const size_t n = 8;
  { std::ofstream(d / "in.json") << demo_records(n).dump(); }
  const std::string out = (d / "out.jsonl").string();
  auto spawn = [&](const fs::path& log) { return spawn_infer(d / "in.json", out, 24, log); };
  auto read_all = [](const fs::path& p) {
    std::ifstream f(p);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  const pid_t first = spawn(d / "first.log");
  ASSERT_GT(first, 0);
  // Wait until the first run is writing (it takes the lock before loading anything).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline &&
         !(fs::exists(out) && !read_lines(out).empty()))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  int status = 0;
  ASSERT_EQ(::waitpid(first, &status, WNOHANG), 0)
      << "the first run ended before the second started";
  const pid_t second = spawn(d / "second.log");
  ASSERT_GT(second, 0);
  ::waitpid(second, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  const std::string msg = read_all(d / "second.log");
  EXPECT_NE(msg.find("output " + out + " is in use by another run (pid " + std::to_string(first)),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("medr1-infer"), std::string::npos) << msg;
  ::waitpid(first, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << read_all(d / "first.log");
  std::set<int64_t> idx;
  auto lines = read_lines(out);
  for (const auto& l : lines) idx.insert(l["index"].get<int64_t>());
  EXPECT_EQ(lines.size(), n);
  EXPECT_EQ(idx.size(), n);
  // After the first run: a rerun takes the lock and finds everything done.
  const pid_t third = spawn(d / "third.log");
  ::waitpid(third, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << read_all(d / "third.log");
  EXPECT_EQ(read_lines(out).size(), n);
  fs::remove_all(d);
}

}  // namespace
