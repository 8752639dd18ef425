// medr1-bench-tokenizer: single-thread encode throughput (MB/s) of medr1::tokenizer::Tokenizer, and
// the ratio to Hugging Face's Rust tokenizers measured on the same text by
// scripts/bench_tokenizer_hf.py (run here with $MEDR1_PYTHON, else the project's .venv python, when it
// has PyPI's `tokenizers`, pinned in scripts/requirements.txt).
// Text: --text FILE, else a built corpus (English licence texts, C++/Python/JS sources, OmniMedVQA
// prompts) repeated to --mb. Chunks: cut after the first '\n' at or past every 4096 bytes.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "medr1/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    const unsigned char c = p[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

void collect(const fs::path& dir, const std::vector<std::string>& exts, std::vector<fs::path>& out) {
  if (!fs::exists(dir)) return;
  for (const auto& e : fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied)) {
    if (!e.is_regular_file() || e.file_size() > (1u << 20)) continue;
    const std::string name = e.path().filename().string();
    if (std::any_of(exts.begin(), exts.end(), [&](const std::string& x) {
          return name.size() >= x.size() && name.compare(name.size() - x.size(), x.size(), x) == 0;
        })) {
      out.push_back(e.path());
    }
  }
}

std::string build_corpus(double mb) {
  const fs::path root(MEDR1_SOURCE_DIR);
  std::vector<fs::path> files;
  collect("/usr/share/common-licenses", {"GPL-3", "GPL-2", "LGPL-3", "Apache-2.0", "MPL-2.0", "Artistic"}, files);
  for (const char* d : {"src", "include", "apps", "tests/unit", "tests/bench", "scripts", "docs"}) {
    collect(root / d, {".cpp", ".h", ".md", ".py", ".js", ".sh"}, files);
  }
  collect("/usr/include/c++/12/bits", {".h", ".tcc"}, files);
  std::sort(files.begin(), files.end());
  std::vector<std::string> parts;
  for (const auto& f : files) {
    std::string t = read_all(f);
    if (!t.empty() && valid_utf8(t)) parts.push_back(std::move(t));
  }
  std::string prompts;
  const fs::path splits = root / "tests/data/omnimedvqa/Splits";
  std::vector<fs::path> jsons;
  collect(splits, {".json"}, jsons);
  std::sort(jsons.begin(), jsons.end());
  for (const auto& f : jsons) {
    for (const auto& r : nlohmann::json::parse(read_all(f))) {
      if (r.contains("problem")) prompts += r["problem"].get<std::string>() + "\n";
      if (r.contains("solution")) prompts += r["solution"].get<std::string>() + "\n";
    }
  }
  parts.push_back(prompts);
  std::string text;
  const size_t target = static_cast<size_t>(mb * 1e6);
  while (text.size() < target && !parts.empty()) {
    for (const auto& p : parts) {
      text += p;
      if (text.back() != '\n') text += '\n';
      if (text.size() >= target) break;
    }
  }
  return text;
}

std::vector<std::string_view> chunks(const std::string& text) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = std::min(text.size(), start + 4096);
    if (end < text.size()) {
      const size_t nl = text.find('\n', end - 1);
      end = nl == std::string::npos ? text.size() : nl + 1;
    }
    out.emplace_back(text.data() + start, end - start);
    start = end;
  }
  return out;
}

std::map<std::string, double> run_hf(const std::string& text_file, const std::string& tok_dir) {
  std::map<std::string, double> r;
  const fs::path script = fs::path(MEDR1_SOURCE_DIR) / "scripts/bench_tokenizer_hf.py";
  const char* env_py = std::getenv("MEDR1_PYTHON");
  const std::string py = env_py != nullptr && *env_py != '\0'
                             ? std::string(env_py)
                             : (fs::path(MEDR1_SOURCE_DIR) / ".venv/bin/python").string();
  if (!fs::exists(script) || !fs::exists(py) ||
      std::system(("'" + py + "' -c 'import tokenizers' > /dev/null 2>&1").c_str()) != 0) {
    std::cout << "hf: skipped (" << py << " missing or without PyPI's tokenizers: run bash scripts/setup.sh)\n";
    return r;
  }
  const std::string cmd =
      "'" + py + "' '" + script.string() + "' --text '" + text_file + "' --tokenizer '" + tok_dir + "'";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char line[512];
  while (fgets(line, sizeof(line), p)) {
    std::istringstream ls(line);
    std::string key;
    double v = 0;
    if (ls >> key >> v) r[key] = v;
    std::cout << "  " << line;
  }
  pclose(p);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"medr1-bench-tokenizer: encode MB/s, one thread, vs Hugging Face's Rust tokenizers"};
  std::string tok_dir = std::string(MEDR1_SOURCE_DIR) + "/tests/data/tokenizer/qwen2vl";
  std::string text_file, dump;
  double mb = 16;
  int passes = 3;
  bool no_hf = false;
  app.add_option("--tokenizer", tok_dir, "tokenizer folder");
  app.add_option("--text", text_file, "UTF-8 text to encode (default: built corpus)");
  app.add_option("--mb", mb, "size of the built corpus in MB");
  app.add_option("--passes", passes, "timed passes (the first runs with an empty word cache)");
  app.add_option("--dump-text", dump, "write the text used to this file");
  app.add_flag("--no-hf", no_hf, "do not run scripts/bench_tokenizer_hf.py");
  CLI11_PARSE(app, argc, argv);

  try {
    const std::string text = text_file.empty() ? build_corpus(mb) : read_all(text_file);
    const auto docs = chunks(text);
    const double text_mb = static_cast<double>(text.size()) / 1e6;
    std::cout << "text: " << text_mb << " MB in " << docs.size() << " chunks"
              << (text_file.empty() ? " (built corpus)" : " (" + text_file + ")") << "\n";

    auto t0 = std::chrono::steady_clock::now();
    const auto tok = medr1::tokenizer::Tokenizer::from_dir(tok_dir);
    std::cout << "load: " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";

    double best = 0, first = 0;
    size_t n_ids = 0;
    for (int p = 0; p < passes; ++p) {
      n_ids = 0;
      t0 = std::chrono::steady_clock::now();
      for (const auto& d : docs) n_ids += tok.encode(d).size();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (p == 0) first = text_mb / s;
      best = std::max(best, text_mb / s);
    }
    std::cout << "medr1_first_pass_mbps " << first << "\nmedr1_mbps " << best << "\nmedr1_ids " << n_ids << "\n";

    std::string tmp = dump;
    if (tmp.empty() && !no_hf) tmp = (fs::temp_directory_path() / "medr1_bench_tokenizer.txt").string();
    if (!tmp.empty() && (text_file.empty() || !dump.empty())) {
      std::ofstream(tmp, std::ios::binary) << text;
    } else if (!text_file.empty()) {
      tmp = text_file;
    }
    if (!no_hf) {
      auto hf = run_hf(tmp, tok_dir);
      if (hf.count("hf_mbps") && hf["hf_mbps"] > 0) {
        std::cout << "ratio medr1/hf (warm, per-chunk encode): " << best / hf["hf_mbps"] << "\n";
        std::cout << "ratio medr1/hf (first pass): " << first / hf["hf_first_pass_mbps"] << "\n";
        if (hf["hf_batch_mbps"] > 0) {
          std::cout << "ratio medr1/hf (hf encodeBatch, 1 thread): " << best / hf["hf_batch_mbps"] << "\n";
        }
        if (static_cast<size_t>(hf["hf_ids"]) != n_ids) {
          std::cout << "WARNING: id counts differ: medr1 " << n_ids << " hf " << static_cast<size_t>(hf["hf_ids"])
                    << "\n";
        }
      }
      if (dump.empty() && text_file.empty()) fs::remove(tmp);
    }
  } catch (const std::exception& e) {
    std::cerr << "medr1-bench-tokenizer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
