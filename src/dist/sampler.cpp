// Distributed sampler (see include/medr1/dist/sampler.h).
#include "medr1/dist/sampler.h"

#include <random>
#include <utility>

#include "medr1/core/error.h"

namespace medr1::dist {
namespace {

// Uniform integer in [0, bound] from raw mt19937_64 draws by rejection, so the sequence does not
// depend on the standard library's uniform_int_distribution (implementation-defined).
uint64_t uniform_upto(std::mt19937_64& rng, uint64_t bound) {
  if (bound == 0) return 0;
  const uint64_t range = bound + 1;  // bound < 2^63 here, no overflow
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % range);
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return x % range;
}

}  // namespace

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  MEDR1_CHECK(n >= 0, "epoch_permutation: n must be >= 0, got ", n);
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  if (!shuffle) return p;
  std::mt19937_64 rng(seed + static_cast<uint64_t>(epoch));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(uniform_upto(rng, static_cast<uint64_t>(i)));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

DistributedSampler::DistributedSampler(int64_t dataset_size, int rank, int world_size, uint64_t seed,
                                       bool shuffle)
    : dataset_size_(dataset_size),
      rank_(rank),
      world_size_(world_size),
      seed_(seed),
      shuffle_(shuffle) {
  MEDR1_CHECK(dataset_size > 0, "DistributedSampler: dataset_size must be > 0, got ", dataset_size);
  MEDR1_CHECK(world_size >= 1, "DistributedSampler: world_size must be >= 1, got ", world_size);
  MEDR1_CHECK(rank >= 0 && rank < world_size, "DistributedSampler: rank ", rank, " not in [0, ",
              world_size, ")");
  num_samples_ = (dataset_size + world_size - 1) / world_size;
  rebuild();
}

void DistributedSampler::rebuild() {
  const auto perm = epoch_permutation(dataset_size_, seed_, state_.epoch, shuffle_);
  indices_.resize(static_cast<size_t>(num_samples_));
  // Position k of the padded list is perm[k mod n] (wrapping, repeated if W > n, as torch does).
  for (int64_t i = 0; i < num_samples_; ++i) {
    const int64_t k = rank_ + i * world_size_;
    indices_[static_cast<size_t>(i)] = perm[static_cast<size_t>(k % dataset_size_)];
  }
}

void DistributedSampler::set_epoch(int64_t epoch) {
  MEDR1_CHECK(epoch >= 0, "DistributedSampler: epoch must be >= 0, got ", epoch);
  state_ = SamplerState{epoch, 0};
  rebuild();
}

std::optional<int64_t> DistributedSampler::next() {
  if (state_.position >= num_samples_) return std::nullopt;
  return indices_[static_cast<size_t>(state_.position++)];
}

std::vector<int64_t> DistributedSampler::next_batch(int64_t n) {
  MEDR1_CHECK(n >= 0, "DistributedSampler: batch size must be >= 0, got ", n);
  std::vector<int64_t> out;
  while (static_cast<int64_t>(out.size()) < n) {
    const auto i = next();
    if (!i) break;
    out.push_back(*i);
  }
  return out;
}

void DistributedSampler::load_state(const SamplerState& state) {
  MEDR1_CHECK(state.epoch >= 0, "DistributedSampler: state epoch must be >= 0, got ", state.epoch);
  MEDR1_CHECK(state.position >= 0 && state.position <= num_samples_,
              "DistributedSampler: state position ", state.position, " not in [0, ", num_samples_,
              "] (dataset_size ", dataset_size_, ", world_size ", world_size_, ")");
  const bool new_epoch = state.epoch != state_.epoch;
  state_ = state;
  if (new_epoch) rebuild();
}

}  // namespace medr1::dist
