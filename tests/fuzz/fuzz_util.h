// Helpers shared by the libFuzzer targets: a per-process scratch file for parsers that take a path.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace medr1::fuzz {

// Writes the input to <tmp>/medr1-fuzz-<pid>/<name> (overwritten per input; folders in `name` are made)
// and returns its path.
inline std::string write_scratch(const uint8_t* data, size_t size, const std::string& name) {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("medr1-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  const auto p = dir / name;
  if (name.find('/') != std::string::npos) std::filesystem::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return p.string();
}

}  // namespace medr1::fuzz
