// medr1's one exception type and the MEDR1_CHECK macro for user-facing conditions.
// Messages name the file, field, index and expected vs actual; the library throws,
// apps catch at main. TORCH_CHECK stays for internal tensor invariants.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace medr1 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
template <typename... Args>
std::string cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// Throws medr1::Error with the concatenated arguments.
template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(detail::cat(std::forward<Args>(args)...));
}

}  // namespace medr1

#define MEDR1_CHECK(cond, ...)                 \
  do {                                         \
    if (!(cond)) ::medr1::fail(__VA_ARGS__);   \
  } while (0)
