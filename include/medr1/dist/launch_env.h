// The process's place in a data-parallel job, read from the environment variables torchrun sets
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT).
// Unset variables mean a single process (world 1). Mirrors torch.distributed's env:// rendezvous;
// no torch dependency.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace medr1::dist {

struct LaunchEnv {
  int rank = 0;              // RANK: global rank in [0, world_size)
  int world_size = 1;        // WORLD_SIZE
  int local_rank = 0;        // LOCAL_RANK: rank on this node (device index)
  int local_world_size = 1;  // LOCAL_WORLD_SIZE: ranks on this node
  int group_rank = 0;        // GROUP_RANK: node index
  std::string master_addr = "127.0.0.1";  // MASTER_ADDR: host of rank 0's TCPStore
  int master_port = 29500;                // MASTER_PORT

  bool is_distributed() const { return world_size > 1; }
  bool is_main() const { return rank == 0; }
};

// Looks a variable up; std::nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// Parses and validates; throws medr1::Error naming the variable, e.g.
// "launch env: RANK=3 must be < WORLD_SIZE=2". MASTER_ADDR/MASTER_PORT are required when WORLD_SIZE>1.
LaunchEnv parse_launch_env(const EnvLookup& lookup);

// parse_launch_env over the process environment (getenv).
LaunchEnv read_launch_env();

}  // namespace medr1::dist
