// Group-relative advantages of GRPO, as TRL's GRPOTrainer computes them from the summed rewards:
// A = (r - mean_group) / (std + 1e-4), std unbiased (N-1). Med-R1 (TRL 0.14) is scale_rewards
// "group" without NaN rewards; the NaN rules follow recent TRL (nanmean / nanstd baseline, NaN
// advantages -> 0). Groups are the G consecutive completions of one prompt (local, not gathered).
// Letters: N = B*G completions, G = num_generations.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string_view>
#include <vector>

namespace medr1::rl {

// TRL GRPOConfig.scale_rewards: divide by the group std, by the std of the whole batch, or not
// at all (Dr. GRPO). The baseline mean is per group in every mode.
enum class ScaleRewards { group, batch, none };

ScaleRewards scale_rewards_from_string(std::string_view s);  // "group" | "batch" | "none"
const char* to_string(ScaleRewards s);

struct Advantages {
  at::Tensor advantages;  // [N] NaN-free; a NaN reward gets 0
  at::Tensor mean;        // [N] baseline of each completion's group (nanmean)
  at::Tensor std;         // [N] the std used for scaling (group or batch nanstd; for "none" the
                          //     group std, for logging); NaN when fewer than 2 valid rewards
};

// rewards: [N] floating (fp32 as in TRL, or fp64), N divisible by num_generations, groups
// contiguous. NaN rewards are excluded from means and stds (TRL nanmean / nanstd, unbiased over
// the valid entries; a group with a single valid reward has std NaN, so its advantages are 0).
// A zero-std group gives exactly 0 (r - mean == 0). Computed in the rewards' dtype.
Advantages compute_advantages(const at::Tensor& rewards, int64_t num_generations,
                              ScaleRewards scale_rewards = ScaleRewards::group,
                              double std_eps = 1e-4);

// DAPO dynamic sampling's test (verl filter_groups with metric seq_reward): for each of the
// rewards.size() / G groups, whether its rewards differ (std > 0), NaN rewards ignored; a group
// with fewer than 2 valid rewards has no spread. A group without spread has advantage 0 for every
// completion, so its policy-gradient term is 0.
std::vector<bool> groups_with_reward_spread(const std::vector<double>& rewards, int64_t num_generations);

}  // namespace medr1::rl
