// Resumable JSONL writer: resume skips done indices, a half-written last line is cut off,
// records are never duplicated.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "medr1/core/error.h"
#include "medr1/data/jsonl_writer.h"

namespace fs = std::filesystem;
using medr1::data::JsonlWriter;
using medr1::data::JsonlWriterOptions;
using nlohmann::json;

namespace {
fs::path fresh_file(const std::string& name) {
  fs::path d = fs::path(MEDR1_BINARY_DIR) / "test_tmp" / "jsonl";
  fs::create_directories(d);
  fs::remove(d / name);
  return d / name;
}
std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

TEST(JsonlWriter, WritesWholeLinesAndSkipsDuplicates) {
  auto p = fresh_file("basic.jsonl");
  {
    JsonlWriter w(p.string());
    EXPECT_TRUE(w.existing().empty());
    EXPECT_TRUE(w.write({{"index", 0}, {"out", "a"}}));
    EXPECT_TRUE(w.write({{"index", 1}, {"out", "b\nc"}}));
    EXPECT_FALSE(w.write({{"index", 1}, {"out", "again"}}));
    EXPECT_TRUE(w.contains(0));
    EXPECT_FALSE(w.contains(2));
    EXPECT_EQ(w.size(), 2u);
    EXPECT_THROW(w.write({{"out", "no index"}}), medr1::Error);
  }
  EXPECT_EQ(slurp(p), "{\"index\":0,\"out\":\"a\"}\n{\"index\":1,\"out\":\"b\\nc\"}\n");
}

TEST(JsonlWriter, ResumeKeepsCompleteLinesAndCutsPartialLine) {
  auto p = fresh_file("partial.jsonl");
  // What a kill mid-write leaves: two whole lines, then part of a third without its '\n'.
  const std::string whole = "{\"index\":3,\"out\":\"x\"}\n{\"index\":5,\"out\":\"y\"}\n";
  std::ofstream(p, std::ios::binary) << whole << "{\"index\":7,\"out\":\"trunc";
  {
    JsonlWriter w(p.string());
    EXPECT_EQ(w.truncated_bytes(), std::string("{\"index\":7,\"out\":\"trunc").size());
    ASSERT_EQ(w.existing().size(), 2u);
    EXPECT_EQ(w.existing()[1].at("out"), "y");
    EXPECT_TRUE(w.contains(3));
    EXPECT_TRUE(w.contains(5));
    EXPECT_FALSE(w.contains(7));  // the cut record is redone
    EXPECT_EQ(slurp(p), whole);   // truncated on open, before any write
    EXPECT_FALSE(w.write({{"index", 5}, {"out", "dup"}}));
    EXPECT_TRUE(w.write({{"index", 7}, {"out", "z"}}));
  }
  EXPECT_EQ(slurp(p), whole + "{\"index\":7,\"out\":\"z\"}\n");
  // A whole JSON object missing only its '\n' is also treated as unfinished.
  std::ofstream(p, std::ios::app | std::ios::binary) << "{\"index\":9}";
  JsonlWriter w2(p.string());
  EXPECT_EQ(w2.truncated_bytes(), 11u);
  EXPECT_EQ(w2.size(), 3u);
  EXPECT_FALSE(w2.contains(9));
}

TEST(JsonlWriter, CorruptMiddleLineIsAnError) {
  auto p = fresh_file("corrupt.jsonl");
  std::ofstream(p, std::ios::binary) << "{\"index\":0}\n{\"index\":\n{\"index\":2}\n";
  try {
    JsonlWriter w(p.string());
    FAIL() << "expected an error";
  } catch (const medr1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt.jsonl: line 2"), std::string::npos) << e.what();
  }
}

TEST(JsonlWriter, NoResumeTruncatesAndFsyncPolicy) {
  auto p = fresh_file("fresh.jsonl");
  std::ofstream(p, std::ios::binary) << "{\"index\":0}\n";
  JsonlWriterOptions o;
  o.resume = false;
  o.fsync_every = 3;
  JsonlWriter w(p.string(), o);
  EXPECT_TRUE(w.existing().empty());
  EXPECT_TRUE(w.write({{"index", 0}}));
  w.close();
  EXPECT_THROW(w.write({{"index", 1}}), medr1::Error);
  EXPECT_EQ(slurp(p), "{\"index\":0}\n");
  o.fsync_every = -1;
  EXPECT_THROW(JsonlWriter(p.string(), o), medr1::Error);
}

TEST(JsonlWriter, ConcurrentWritersProduceWholeLines) {
  auto p = fresh_file("threads.jsonl");
  {
    JsonlWriterOptions o;
    o.fsync_every = 0;
    JsonlWriter w(p.string(), o);
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&w, t] {
        for (int i = 0; i < 50; ++i)
          w.write({{"index", (i * 4 + t) % 100}, {"pad", std::string(200, 'a' + t)}});
      });
    for (auto& t : ts) t.join();
    EXPECT_EQ(w.size(), 100u);  // 200 attempts, 100 distinct indices
  }
  JsonlWriter r(p.string());
  EXPECT_EQ(r.truncated_bytes(), 0u);
  EXPECT_EQ(r.existing().size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(r.contains(i)) << i;
}
