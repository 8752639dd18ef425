// Logging for medr1: spdlog to stderr (the library never prints to stdout).
#pragma once

#include <spdlog/spdlog.h>

namespace medr1 {
// Sets the level from MEDR1_LOG (trace|debug|info|warn|error) or the given default.
void init_logging(const char* default_level = "info");
}  // namespace medr1
