// torchrun environment parsing (see include/medr1/dist/launch_env.h).
#include "medr1/dist/launch_env.h"

#include <cerrno>
#include <cstdlib>
#include <limits>

#include "medr1/core/error.h"

namespace medr1::dist {
namespace {

// Strict decimal integer: the whole string, no sign unless negative values are allowed.
int parse_int(const std::string& name, const std::string& text, int min_value, int max_value) {
  MEDR1_CHECK(!text.empty(), "launch env: ", name, " is set but empty");
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  MEDR1_CHECK(errno == 0 && end != nullptr && *end == '\0', "launch env: ", name,
              " must be an integer, got '", text, "'");
  MEDR1_CHECK(v >= min_value && v <= max_value, "launch env: ", name, "=", v, " out of range [",
              min_value, ", ", max_value, "]");
  return static_cast<int>(v);
}

}  // namespace

LaunchEnv parse_launch_env(const EnvLookup& lookup) {
  LaunchEnv env;
  constexpr int kMax = std::numeric_limits<int>::max();
  auto get_int = [&](const char* name, int fallback, int min_value, int max_value) {
    const auto v = lookup(name);
    return v ? parse_int(name, *v, min_value, max_value) : fallback;
  };
  env.world_size = get_int("WORLD_SIZE", 1, 1, kMax);
  env.rank = get_int("RANK", 0, 0, kMax);
  MEDR1_CHECK(env.rank < env.world_size, "launch env: RANK=", env.rank, " must be < WORLD_SIZE=",
              env.world_size);
  env.local_world_size = get_int("LOCAL_WORLD_SIZE", env.world_size == 1 ? 1 : env.world_size, 1,
                                 kMax);
  env.local_rank = get_int("LOCAL_RANK", env.rank % env.local_world_size, 0, kMax);
  MEDR1_CHECK(env.local_rank < env.local_world_size, "launch env: LOCAL_RANK=", env.local_rank,
              " must be < LOCAL_WORLD_SIZE=", env.local_world_size);
  MEDR1_CHECK(env.local_world_size <= env.world_size, "launch env: LOCAL_WORLD_SIZE=",
              env.local_world_size, " must be <= WORLD_SIZE=", env.world_size);
  env.group_rank = get_int("GROUP_RANK", env.rank / env.local_world_size, 0, kMax);
  MEDR1_CHECK(env.group_rank * env.local_world_size < env.world_size, "launch env: GROUP_RANK=",
              env.group_rank, " inconsistent with LOCAL_WORLD_SIZE=", env.local_world_size,
              " and WORLD_SIZE=", env.world_size);

  const auto addr = lookup("MASTER_ADDR");
  const auto port = lookup("MASTER_PORT");
  if (env.world_size > 1) {
    MEDR1_CHECK(addr.has_value(), "launch env: MASTER_ADDR must be set when WORLD_SIZE=",
                env.world_size, " > 1");
    MEDR1_CHECK(port.has_value(), "launch env: MASTER_PORT must be set when WORLD_SIZE=",
                env.world_size, " > 1");
  }
  if (addr) {
    MEDR1_CHECK(!addr->empty(), "launch env: MASTER_ADDR is set but empty");
    env.master_addr = *addr;
  }
  if (port) env.master_port = parse_int("MASTER_PORT", *port, 1, 65535);
  return env;
}

LaunchEnv read_launch_env() {
  return parse_launch_env([](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  });
}

}  // namespace medr1::dist
