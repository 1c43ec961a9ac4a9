// Which examples each rank trains on, step by step. Pure arithmetic, no I/O: every rank computes
// the same global order from (seed, epoch) and takes its own slice, so no coordination is needed
// and a resumed or re-sized job finds the same sample position.
//
//   global order   a permutation of [0, n) from (seed, epoch) (a portable Fisher-Yates on
//                  splitmix64, identical on every platform and standard library), or length-grouped
//                  like Hugging Face's LengthGroupedSampler;
//   global batches consecutive runs of global_batch = batch_size x world_size x accumulation_steps
//                  examples; the last may be shorter and is kept (HF's dataloader_drop_last=False);
//   micro-batches  each global batch split into world_size x accumulation_steps contiguous, balanced
//                  parts (sizes differ by at most one, none overlaps); rank r's k-th micro-batch is
//                  part r x accumulation_steps + k. The parts depend only on the product, so
//                  1 rank x 4 micro-batches, 2 x 2 and 4 x 1 train on the same examples per step.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "common/random.h"

namespace ftune::data {

// Permutation of [0, n) for (seed, epoch).
std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, int64_t epoch);

// HF's length grouping: permute, cut into mega-batches of 50 x global_batch, sort each by length
// (longest first), and move the batch holding the longest example to the front (so an
// out-of-memory shows at once). Padding per batch drops sharply for variable-length text.
std::vector<int64_t> LengthGroupedOrder(absl::Span<const int32_t> lengths, int64_t global_batch, uint64_t seed,
                                        int64_t epoch);

struct SamplerOptions {
  int64_t batch_size = 8;  // per rank and micro-batch
  int world_size = 1;
  int64_t accumulation_steps = 1;  // micro-batches per rank and optimizer step (HF gradient_accumulation_steps)
  uint64_t seed = 42;
  bool shuffle = true;
  bool group_by_length = false;
};

class EpochPlan {
 public:
  // `lengths` are needed only for group_by_length (may be empty otherwise).
  EpochPlan(int64_t num_examples, absl::Span<const int32_t> lengths, const SamplerOptions& options, int64_t epoch);

  int64_t num_steps() const { return static_cast<int64_t>(starts_.size()) - 1; }
  int64_t global_batch_size(int64_t step) const { return starts_[step + 1] - starts_[step]; }
  // The examples of `rank`'s micro-batch `micro` at `step` (possibly none in a short last batch).
  std::vector<int64_t> Slice(int64_t step, int rank, int64_t micro = 0) const;
  int64_t accumulation_steps() const { return accumulation_; }
  const std::vector<int64_t>& order() const { return order_; }

 private:
  std::vector<int64_t> order_;
  std::vector<int64_t> starts_;  // global batch boundaries into order_
  int world_size_;
  int64_t accumulation_;
};

// Examples per optimizer step over all ranks: batch_size x world_size x accumulation_steps.
inline int64_t GlobalBatchSize(const SamplerOptions& o) { return o.batch_size * o.world_size * o.accumulation_steps; }

// Steps per epoch for n examples at a global batch size (the last partial batch counts).
int64_t StepsPerEpoch(int64_t num_examples, int64_t global_batch);

// [begin, end) of the contiguous share of `n` items that `rank` of `world` owns (balanced).
std::pair<int64_t, int64_t> BalancedRange(int64_t n, int rank, int world);

}  // namespace ftune::data
