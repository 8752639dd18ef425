// Differential test against Hugging Face's Rust tokenizers (PyPI's `tokenizers`, pinned in
// scripts/requirements.txt): runs `<python> scripts/tokenizer_diff.py --quick` (~200 KB of varied
// generated text, encode and decode, Qwen2-VL tokenizer) on the built medr1-tokenize. <python> is
// $MEDR1_PYTHON (ctest sets it to the project's .venv python), else MEDR1_SOURCE_DIR/.venv/bin/python.
// Skipped when that python, its `tokenizers` or the medr1-tokenize binary are absent; the full >= 5 MB
// run is `.venv/bin/python scripts/tokenizer_diff.py`.
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
  const char* env_py = std::getenv("MEDR1_PYTHON");
  const std::string py =
      env_py != nullptr && *env_py != '\0' ? std::string(env_py) : (src / ".venv/bin/python").string();
  if (!fs::exists(py)) {
    GTEST_SKIP() << "python " << py << " not found (the project's .venv with PyPI's tokenizers): "
                 << "run bash scripts/setup.sh";
  }
  if (std::system(("'" + py + "' -c 'import tokenizers' > /dev/null 2>&1").c_str()) != 0) {
    GTEST_SKIP() << "PyPI's tokenizers not importable by " << py << ": run bash scripts/setup.sh";
  }
  const fs::path bin = fs::path(MEDR1_BINARY_DIR) / "medr1-tokenize";
  if (!fs::exists(bin)) GTEST_SKIP() << bin << " not built (cmake --build <dir> --target medr1-tokenize)";
  MEDR1_REQUIRE_TOKENIZER_FIXTURE("qwen2vl");

  const fs::path log = fs::temp_directory_path() / ("medr1_tokenizer_diff_" + std::to_string(::getpid()) + ".log");
  const std::string cmd = "'" + py + "' '" + (src / "scripts/tokenizer_diff.py").string() + "' --quick --bin '" +
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
