// Logging set-up shared by the apps.
#include "medr1/core/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>

namespace medr1 {

void init_logging(const char* default_level) {
  auto logger = spdlog::stderr_color_mt("medr1");
  spdlog::set_default_logger(logger);
  const char* env = std::getenv("MEDR1_LOG");
  spdlog::set_level(spdlog::level::from_str(env ? env : default_level));
}

}  // namespace medr1
