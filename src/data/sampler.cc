#include "data/sampler.h"

#include <algorithm>
#include <numeric>

namespace ftune::data {

namespace {
uint64_t EpochSeed(uint64_t seed, int64_t epoch) {
  SplitMix64 mix(seed ^ (0x632be59bd9b4e019ULL * static_cast<uint64_t>(epoch + 1)));
  return mix.Next();
}
}  // namespace

std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  SplitMix64 rng(EpochSeed(seed, epoch));
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(i + 1)));
    std::swap(p[i], p[j]);
  }
  return p;
}

std::vector<int64_t> LengthGroupedOrder(absl::Span<const int32_t> lengths, int64_t global_batch, uint64_t seed,
                                        int64_t epoch) {
  const int64_t n = static_cast<int64_t>(lengths.size());
  std::vector<int64_t> p = EpochPermutation(n, seed, epoch);
  const int64_t mega = std::max<int64_t>(1, 50 * global_batch);
  for (int64_t s = 0; s < n; s += mega) {
    auto b = p.begin() + s, e = p.begin() + std::min(n, s + mega);
    std::stable_sort(b, e, [&](int64_t x, int64_t y) { return lengths[x] > lengths[y]; });
  }
  // Longest example's global batch first (within mega-batches it already leads its mega-batch).
  int64_t longest = 0;
  for (int64_t s = 0; s < n; s += mega) {
    if (lengths[p[s]] > lengths[p[longest]]) longest = s;
  }
  if (longest != 0) {
    const int64_t len = std::min(global_batch, n - longest);
    if (len == std::min(global_batch, n)) {
      std::swap_ranges(p.begin(), p.begin() + len, p.begin() + longest);
    }
  }
  return p;
}

int64_t StepsPerEpoch(int64_t num_examples, int64_t global_batch) {
  return global_batch <= 0 ? 0 : (num_examples + global_batch - 1) / global_batch;
}

std::pair<int64_t, int64_t> BalancedRange(int64_t n, int rank, int world) {
  const int64_t base = n / world, extra = n % world;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

EpochPlan::EpochPlan(int64_t n, absl::Span<const int32_t> lengths, const SamplerOptions& o, int64_t epoch)
    : world_size_(o.world_size), accumulation_(std::max<int64_t>(1, o.accumulation_steps)) {
  const int64_t global = GlobalBatchSize(o);
  if (!o.shuffle) {
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), 0);
  } else if (o.group_by_length && static_cast<int64_t>(lengths.size()) == n) {
    order_ = LengthGroupedOrder(lengths, global, o.seed, epoch);
  } else {
    order_ = EpochPermutation(n, o.seed, epoch);
  }
  for (int64_t s = 0; s < n; s += global) starts_.push_back(s);
  starts_.push_back(n);
}

std::vector<int64_t> EpochPlan::Slice(int64_t step, int rank, int64_t micro) const {
  auto [b, e] = BalancedRange(global_batch_size(step), static_cast<int>(rank * accumulation_ + micro),
                              static_cast<int>(world_size_ * accumulation_));
  return std::vector<int64_t>(order_.begin() + starts_[step] + b, order_.begin() + starts_[step] + e);
}

}  // namespace ftune::data
