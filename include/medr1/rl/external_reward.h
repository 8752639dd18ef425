// A reward function computed by another process (Python reward code such as math_verify), spoken
// to over JSON lines on its stdin / stdout. The command runs once under /bin/sh -c in its own
// process group, stderr inherited; each call writes one line
//   {"completions": [...], "solutions": [...], "prompt_mode": "think" | "nothink"}
// and reads one line back
//   {"rewards": [number | null, ...]}      (one entry per completion; null = not scored, NaN)
// or {"error": "message"} to fail the step with that message. Anything else the process prints
// on stdout breaks the protocol: log to stderr. In reward_funcs a name "external:<command>"
// resolves to make_external_reward(<command>) (rewards.h, RewardRegistry::get).
#pragma once

#include <string>
#include <string_view>

#include "medr1/rl/rewards.h"

namespace medr1::rl {

// The reward_funcs prefix that names an external reward: "external:<command>".
inline constexpr std::string_view kExternalRewardPrefix = "external:";

// True for "external:<command>" with a non-empty command.
bool is_external_reward_name(std::string_view name);

// Starts `command` now and returns a function that scores through it, one call at a time (calls
// from several threads are serialised). Every failure throws medr1::Error naming the command:
// the process exited (its status), a reply that is not the JSON above (its first 200 bytes),
// the wrong number of rewards, an entry that is neither a number nor null, or no reply within
// timeout_s seconds. After a failure the process is killed and the next call starts it again.
// SIGPIPE from a dead process never reaches the caller. The process is terminated (stdin
// closed, then SIGTERM, then SIGKILL) and reaped when the last copy of the function goes away.
RewardFunc make_external_reward(const std::string& command, double timeout_s = 300.0);

}  // namespace medr1::rl
