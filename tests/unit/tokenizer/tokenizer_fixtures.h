// Shared helpers for the tokenizer tests: fixture folders (tests/data/tokenizer/<name>, whose
// tokenizer.json comes from scripts/tokenizer_fixtures.sh), one loaded Tokenizer per fixture and
// process, and a JSONL reader for the vendored goldens.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "medr1/tokenizer/tokenizer.h"

namespace medr1::tokenizer::test {

inline std::string data_path(const std::string& rel) {
  std::string p(MEDR1_TEST_DATA);  // appended step by step: GCC 12 warns (falsely) on a + "/" + b here
  p.push_back('/');
  p.append(rel);
  return p;
}

inline std::string fixture_dir(const std::string& name) {
  std::string rel("tokenizer/");
  rel.append(name);
  return data_path(rel);
}

// Empty when the fixture is present, else the message telling how to make it.
inline std::string fixture_missing(const std::string& name) {
  std::string f = fixture_dir(name);
  f.append("/tokenizer.json");
  if (std::filesystem::exists(f)) return {};
  return f.append(" is missing: run bash scripts/tokenizer_fixtures.sh (unpacks qwen3/tokenizer.json.xz) first");
}

#define MEDR1_REQUIRE_TOKENIZER_FIXTURE(name)                                         \
  do {                                                                                \
    const std::string medr1_missing_ = ::medr1::tokenizer::test::fixture_missing(name); \
    ASSERT_TRUE(medr1_missing_.empty()) << medr1_missing_;                            \
  } while (0)

// Loaded once per process (gtest_discover_tests runs each test in its own process anyway).
inline const Tokenizer& fixture(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[name];
  if (!slot) slot = std::make_unique<Tokenizer>(Tokenizer::from_dir(fixture_dir(name)));
  return *slot;
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << "cannot open " << path;
  std::vector<nlohmann::json> rows;
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  }
  return rows;
}

}  // namespace medr1::tokenizer::test
