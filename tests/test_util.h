// Helpers shared by the unit tests: a fresh temp folder per test process, the message of what a
// call throws.
#pragma once

#include <unistd.h>

#include <exception>
#include <filesystem>
#include <functional>
#include <string>

namespace medr1::test {

// $TMPDIR/medr1_<tag>_<pid>, emptied and created.
inline std::filesystem::path make_temp_dir(const std::string& tag) {
  std::filesystem::path p =
      std::filesystem::temp_directory_path() / ("medr1_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

// e.what() of the std::exception f throws; "" when it throws nothing.
inline std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace medr1::test
