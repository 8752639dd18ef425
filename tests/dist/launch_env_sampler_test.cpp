// Launch-env parsing and DistributedSampler properties (single process, no collectives).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "medr1/core/error.h"
#include "medr1/dist/launch_env.h"
#include "medr1/dist/sampler.h"

namespace medr1::dist {
namespace {

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string error_of(const std::map<std::string, std::string>& vars) {
  try {
    parse_launch_env(env_of(vars));
  } catch (const medr1::Error& e) {
    return e.what();
  }
  return "";
}

TEST(LaunchEnv, DefaultsToSingleProcess) {
  const auto e = parse_launch_env(env_of({}));
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.world_size, 1);
  EXPECT_EQ(e.local_rank, 0);
  EXPECT_EQ(e.local_world_size, 1);
  EXPECT_EQ(e.group_rank, 0);
  EXPECT_FALSE(e.is_distributed());
}

TEST(LaunchEnv, ReadsTorchrunVariables) {
  const auto e = parse_launch_env(env_of({{"RANK", "5"},
                                          {"WORLD_SIZE", "8"},
                                          {"LOCAL_RANK", "1"},
                                          {"LOCAL_WORLD_SIZE", "4"},
                                          {"GROUP_RANK", "1"},
                                          {"MASTER_ADDR", "node0"},
                                          {"MASTER_PORT", "29511"}}));
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.local_world_size, 4);
  EXPECT_EQ(e.group_rank, 1);
  EXPECT_EQ(e.master_addr, "node0");
  EXPECT_EQ(e.master_port, 29511);
  EXPECT_TRUE(e.is_distributed());
  EXPECT_FALSE(e.is_main());
}

TEST(LaunchEnv, ErrorsNameTheVariable) {
  EXPECT_NE(error_of({{"RANK", "x"}}).find("RANK must be an integer"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}})
                .find("RANK=2 must be < WORLD_SIZE=2"),
            std::string::npos);
  EXPECT_NE(error_of({{"WORLD_SIZE", "0"}}).find("WORLD_SIZE=0 out of range"), std::string::npos);
  EXPECT_NE(error_of({{"WORLD_SIZE", "2"}, {"MASTER_PORT", "1234"}}).find("MASTER_ADDR must be set"),
            std::string::npos);
  EXPECT_NE(error_of({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}).find("MASTER_PORT must be set"),
            std::string::npos);
  EXPECT_NE(error_of({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}})
                .find("MASTER_PORT=70000 out of range"),
            std::string::npos);
  EXPECT_NE(error_of({{"WORLD_SIZE", "4"}, {"LOCAL_WORLD_SIZE", "2"}, {"LOCAL_RANK", "2"},
                      {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}})
                .find("LOCAL_RANK=2 must be < LOCAL_WORLD_SIZE=2"),
            std::string::npos);
}

TEST(DistributedSampler, ShardsCoverEveryIndexWithWrapPadding) {
  // n=10, W=4: torch pads to 12 by repeating the first 2 permuted indices, 3 per rank.
  const int64_t n = 10;
  const int w = 4;
  const auto perm = epoch_permutation(n, 123, 0);
  std::multiset<int64_t> all;
  for (int r = 0; r < w; ++r) {
    DistributedSampler s(n, r, w, 123);
    ASSERT_EQ(s.num_samples(), 3);
    ASSERT_EQ(s.total_size(), 12);
    for (int64_t i = 0; i < 3; ++i) {
      // Rank r takes positions r, r+W, r+2W of the padded permutation.
      EXPECT_EQ(s.indices()[static_cast<size_t>(i)], perm[static_cast<size_t>((r + i * w) % n)]);
    }
    all.insert(s.indices().begin(), s.indices().end());
  }
  ASSERT_EQ(all.size(), 12u);
  for (int64_t i = 0; i < n; ++i) EXPECT_GE(all.count(i), 1u) << i;
  // The two padded positions repeat perm[0] and perm[1].
  EXPECT_EQ(all.count(perm[0]), 2u);
  EXPECT_EQ(all.count(perm[1]), 2u);
}

TEST(DistributedSampler, PermutationIsDeterministicPerSeedAndEpoch) {
  const auto a = epoch_permutation(1000, 7, 3);
  EXPECT_EQ(a, epoch_permutation(1000, 7, 3));
  EXPECT_NE(a, epoch_permutation(1000, 7, 4));
  EXPECT_NE(a, epoch_permutation(1000, 8, 3));
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[static_cast<size_t>(i)], i);
  // Actually shuffled, and the identity without shuffle.
  int64_t fixed = 0;
  for (int64_t i = 0; i < 1000; ++i) fixed += a[static_cast<size_t>(i)] == i ? 1 : 0;
  EXPECT_LT(fixed, 20);
  const auto id = epoch_permutation(5, 7, 3, /*shuffle=*/false);
  EXPECT_EQ(id, (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

TEST(DistributedSampler, TinyDatasetRepeatsWhenWorldIsLarger) {
  // n=2, W=5: padded list perm[0], perm[1], perm[0], perm[1], perm[0] (torch repeats the list).
  const auto perm = epoch_permutation(2, 0, 0);
  for (int r = 0; r < 5; ++r) {
    DistributedSampler s(2, r, 5, 0);
    ASSERT_EQ(s.num_samples(), 1);
    EXPECT_EQ(s.indices()[0], perm[static_cast<size_t>(r % 2)]);
  }
}

TEST(DistributedSampler, StateRoundTripsForResume) {
  DistributedSampler a(37, 1, 3, 99);
  a.set_epoch(2);
  const auto first = a.next_batch(4);
  ASSERT_EQ(first.size(), 4u);
  const SamplerState saved = a.state();
  EXPECT_EQ(saved, (SamplerState{2, 4}));
  const auto rest = a.next_batch(100);
  EXPECT_EQ(rest.size(), static_cast<size_t>(a.num_samples() - 4));
  EXPECT_FALSE(a.next().has_value());

  DistributedSampler b(37, 1, 3, 99);  // a fresh process after restart
  b.load_state(saved);
  EXPECT_EQ(b.next_batch(100), rest);
  EXPECT_THROW(b.load_state(SamplerState{0, 14}), medr1::Error);  // 13 samples per rank
  // A new epoch starts from position 0 with a different order.
  b.set_epoch(3);
  EXPECT_EQ(b.state(), (SamplerState{3, 0}));
  EXPECT_NE(b.indices(), a.indices());
}

}  // namespace
}  // namespace medr1::dist
