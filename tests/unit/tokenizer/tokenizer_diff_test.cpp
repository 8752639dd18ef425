// Differential test against Hugging Face's Rust tokenizers (npm @anush008/tokenizers): runs
// `node scripts/tokenizer_diff.js --quick` (~200 KB of varied generated text, encode and decode,
// Qwen2-VL tokenizer) on the built medr1-tokenize. Skipped when node, node_modules or the
// medr1-tokenize binary are absent; the full >= 5 MB run is `node scripts/tokenizer_diff.js`.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <unistd.h>

#include "tokenizer_fixtures.h"

namespace medr1::tokenizer::test {
namespace {

TEST(TokenizerDiff, QuickAgainstRustTokenizers) {
  namespace fs = std::filesystem;
  const fs::path src(MEDR1_SOURCE_DIR);
  if (!fs::exists(src / "node_modules/@anush008/tokenizers/package.json")) {
    GTEST_SKIP() << "node_modules/@anush008/tokenizers missing: run scripts/fetch_tokenizers.sh";
  }
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node not found";
  const fs::path bin = fs::path(MEDR1_BINARY_DIR) / "medr1-tokenize";
  if (!fs::exists(bin)) GTEST_SKIP() << bin << " not built (cmake --build <dir> --target medr1-tokenize)";
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen2vl");

  const fs::path log = fs::temp_directory_path() / ("medr1_tokenizer_diff_" + std::to_string(::getpid()) + ".log");
  const std::string cmd = "node '" + (src / "scripts/tokenizer_diff.js").string() + "' --quick --bin '" +
                          bin.string() + "' > '" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream f(log);
  std::stringstream out;
  out << f.rdbuf();
  fs::remove(log);
  EXPECT_EQ(rc, 0) << out.str();
  EXPECT_NE(out.str().find("PASS (0 mismatches)"), std::string::npos) << out.str();
}

}  // namespace
}  // namespace medr1::tokenizer::test
