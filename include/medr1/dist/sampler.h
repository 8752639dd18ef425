// Shards dataset indices across data-parallel ranks like torch.utils.data.DistributedSampler
// (drop_last=False): one permutation per (seed, epoch), identical on every rank, padded by
// wrapping to a multiple of world_size, rank r takes positions r, r+W, r+2W, ... The shuffle is
// our own Fisher-Yates over std::mt19937_64 (whose output the standard fixes), so the order is
// the same on every platform; it is NOT torch's randperm order. No torch dependency.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace medr1::dist {

// Resume point: the epoch and how many of this rank's indices were already handed out.
struct SamplerState {
  int64_t epoch = 0;
  int64_t position = 0;
  bool operator==(const SamplerState&) const = default;
};

// A permutation of [0, n) from mt19937_64(seed + epoch), or the identity when !shuffle.
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch, bool shuffle = true);

class DistributedSampler {
 public:
  DistributedSampler(int64_t dataset_size, int rank, int world_size, uint64_t seed = 0,
                     bool shuffle = true);

  // Starts `epoch` from its beginning (position 0).
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return state_.epoch; }

  int64_t num_samples() const { return num_samples_; }  // per rank: ceil(n / W)
  int64_t total_size() const { return num_samples_ * world_size_; }
  int64_t remaining() const { return num_samples_ - state_.position; }

  // This rank's indices for the current epoch (all num_samples of them, ignoring position).
  const std::vector<int64_t>& indices() const { return indices_; }

  // Next index of this epoch, or nullopt once the epoch's shard is exhausted.
  std::optional<int64_t> next();
  // Up to `n` next indices (fewer at the end of the epoch, empty after it).
  std::vector<int64_t> next_batch(int64_t n);

  SamplerState state() const { return state_; }
  // Restores a saved state (validated against this sampler's size).
  void load_state(const SamplerState& state);

 private:
  void rebuild();

  int64_t dataset_size_;
  int rank_;
  int world_size_;
  uint64_t seed_;
  bool shuffle_;
  int64_t num_samples_;
  SamplerState state_;
  std::vector<int64_t> indices_;
};

}  // namespace medr1::dist
