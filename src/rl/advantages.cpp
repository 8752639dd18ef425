// Group-relative advantages with TRL's nanmean / nanstd semantics (advantages.h).
// Letters: B = prompts, G = num_generations, N = B*G.
#include "medr1/rl/advantages.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "medr1/core/error.h"

namespace medr1::rl {
namespace {

// TRL nanstd: sqrt(nanmean((x - nanmean(x))^2) * n / (n - 1)) over dim (or all), n = #valid.
// n == 1 gives 0 * inf = NaN, like TRL; n == 0 gives NaN.
at::Tensor nanstd(const at::Tensor& x, std::optional<int64_t> dim) {
  at::Tensor valid = x.isnan().logical_not().to(x.scalar_type());
  at::Tensor mean, var, count;
  if (dim) {
    mean = at::nanmean(x, *dim, /*keepdim=*/true);
    var = at::nanmean((x - mean).pow(2), *dim, /*keepdim=*/true);
    count = valid.sum(*dim, /*keepdim=*/true);
  } else {
    mean = at::nanmean(x);
    var = at::nanmean((x - mean).pow(2));
    count = valid.sum();
  }
  return (var * count / (count - 1)).sqrt();
}

}  // namespace

ScaleRewards scale_rewards_from_string(std::string_view s) {
  if (s == "group") return ScaleRewards::group;
  if (s == "batch") return ScaleRewards::batch;
  if (s == "none") return ScaleRewards::none;
  fail("scale_rewards: expected \"group\", \"batch\" or \"none\", got \"", s, "\"");
}

const char* to_string(ScaleRewards s) {
  switch (s) {
    case ScaleRewards::group: return "group";
    case ScaleRewards::batch: return "batch";
    case ScaleRewards::none: return "none";
  }
  return "?";
}

Advantages compute_advantages(const at::Tensor& rewards, int64_t num_generations,
                              ScaleRewards scale_rewards, double std_eps) {
  MEDR1_CHECK(rewards.dim() == 1, "compute_advantages: rewards must be [N], got ",
              rewards.sizes());
  MEDR1_CHECK(rewards.is_floating_point(), "compute_advantages: rewards must be floating, got ",
              rewards.scalar_type());
  MEDR1_CHECK(num_generations >= 1, "compute_advantages: num_generations must be >= 1, got ",
              num_generations);
  const int64_t n = rewards.size(0);
  MEDR1_CHECK(n % num_generations == 0, "compute_advantages: ", n,
              " rewards not divisible by num_generations ", num_generations);
  const int64_t g = num_generations;
  at::Tensor grouped = rewards.view({n / g, g});  // [B, G]
  Advantages out;
  out.mean = at::nanmean(grouped, 1).repeat_interleave(g);  // [N]
  at::Tensor std_group = g > 1 ? nanstd(grouped, 1).view({-1}).repeat_interleave(g)
                               : at::zeros_like(rewards);  // [N]
  if (scale_rewards == ScaleRewards::batch) {
    out.std = n > 1 ? nanstd(rewards, std::nullopt).expand_as(rewards).contiguous()
                    : at::zeros_like(rewards);  // [N]
  } else {
    out.std = std_group;
  }
  at::Tensor adv = rewards - out.mean;  // [N]
  if (scale_rewards != ScaleRewards::none) adv = adv / (out.std + std_eps);
  // NaN rewards (and groups without a usable std) carry no signal: advantage 0.
  out.advantages = at::nan_to_num(adv, 0.0);
  return out;
}

std::vector<bool> groups_with_reward_spread(const std::vector<double>& rewards, int64_t num_generations) {
  MEDR1_CHECK(num_generations > 0 && rewards.size() % static_cast<size_t>(num_generations) == 0,
              "groups_with_reward_spread: ", rewards.size(), " rewards do not split into groups of ",
              num_generations);
  const size_t G = static_cast<size_t>(num_generations);
  std::vector<bool> out;
  for (size_t g0 = 0; g0 < rewards.size(); g0 += G) {
    double lo = 0, hi = 0;
    size_t valid = 0;
    for (size_t i = g0; i < g0 + G; ++i) {
      const double v = rewards[i];
      if (std::isnan(v)) continue;
      lo = valid == 0 ? v : std::min(lo, v);
      hi = valid == 0 ? v : std::max(hi, v);
      ++valid;
    }
    out.push_back(valid >= 2 && hi > lo);
  }
  return out;
}

}  // namespace medr1::rl
