// The sample order and batch assembly every rank computes on its own: permutations per (seed,
// epoch), Hugging Face's length grouping, balanced rank slices of each global batch, and padding.
#include "data/sampler.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "data/batch_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::data {
namespace {

bool IsPermutation(std::vector<int64_t> v, int64_t n) {
  std::sort(v.begin(), v.end());
  std::vector<int64_t> iota(n);
  std::iota(iota.begin(), iota.end(), 0);
  return v == iota;
}

// Review-like lengths: mostly 100-300 tokens, some up to 512.
std::vector<int32_t> Lengths(int64_t n) {
  std::vector<int32_t> l(n);
  SplitMix64 rng(5);
  for (auto& x : l) x = static_cast<int32_t>(40 + rng.Below(rng.Below(4) == 0 ? 472 : 260));
  return l;
}

// Padded tokens / all tokens when consecutive runs of `batch` in `order` are padded to their longest.
double PaddingFraction(const std::vector<int64_t>& order, const std::vector<int32_t>& len, int64_t batch) {
  double real = 0, padded = 0;
  for (size_t s = 0; s < order.size(); s += batch) {
    int32_t longest = 0;
    const size_t e = std::min(order.size(), s + batch);
    for (size_t i = s; i < e; ++i) longest = std::max(longest, len[order[i]]), real += len[order[i]];
    padded += static_cast<double>(longest) * (e - s);
  }
  return 1.0 - real / padded;
}

TEST(EpochPermutation, IsAPermutationFixedBySeedAndEpoch) {
  auto a = EpochPermutation(1000, 42, 0);
  EXPECT_TRUE(IsPermutation(a, 1000));
  EXPECT_EQ(a, EpochPermutation(1000, 42, 0));
  EXPECT_NE(a, EpochPermutation(1000, 42, 1));
  EXPECT_NE(a, EpochPermutation(1000, 43, 0));
  // Portable by construction (splitmix64 + Fisher-Yates, no std::shuffle): pinned, because a
  // checkpoint resumes at a position in this order, possibly built by another ftune version.
  EXPECT_EQ(EpochPermutation(10, 1, 0), (std::vector<int64_t>{6, 7, 0, 4, 1, 9, 3, 2, 8, 5}));
}

TEST(LengthGroupedOrder, LongestBatchFirstAndFarLessPaddingThanRandom) {
  const int64_t n = 2000, batch = 8;
  auto len = Lengths(n);
  auto order = LengthGroupedOrder(len, batch, 42, 0);
  ASSERT_TRUE(IsPermutation(order, n));
  const int32_t longest = *std::max_element(len.begin(), len.end());
  bool in_first = false;
  for (int i = 0; i < batch; ++i) in_first = in_first || len[order[i]] == longest;
  EXPECT_TRUE(in_first) << "the batch with the longest example comes first (an OOM shows at once)";
  const double grouped = PaddingFraction(order, len, batch);
  const double random = PaddingFraction(EpochPermutation(n, 42, 0), len, batch);
  EXPECT_LT(grouped, 0.05);
  EXPECT_GT(random, 4 * grouped);
  EXPECT_NE(order, LengthGroupedOrder(len, batch, 42, 1)) << "still shuffled from epoch to epoch";
}

TEST(EpochPlan, RankSlicesPartitionEveryGlobalBatchInBalancedParts) {
  SamplerOptions o;
  o.batch_size = 4;
  o.world_size = 3;
  const int64_t n = 50;  // global batch 12: four full batches and a last one of 2
  EpochPlan plan(n, {}, o, 0);
  ASSERT_EQ(plan.num_steps(), StepsPerEpoch(n, 12));
  ASSERT_EQ(plan.num_steps(), 5);
  std::vector<int64_t> seen;
  for (int64_t s = 0; s < plan.num_steps(); ++s) {
    int64_t total = 0;
    size_t smallest = SIZE_MAX, largest = 0;
    for (int r = 0; r < 3; ++r) {
      auto slice = plan.Slice(s, r);
      total += static_cast<int64_t>(slice.size());
      smallest = std::min(smallest, slice.size());
      largest = std::max(largest, slice.size());
      seen.insert(seen.end(), slice.begin(), slice.end());
    }
    EXPECT_EQ(total, plan.global_batch_size(s));
    EXPECT_LE(largest - smallest, 1u) << "step " << s;
  }
  EXPECT_EQ(plan.global_batch_size(4), 2);  // the short last batch is kept (dataloader_drop_last=False)
  EXPECT_TRUE(IsPermutation(seen, n)) << "every example exactly once per epoch";
  EXPECT_EQ(BalancedRange(10, 0, 3), (std::pair<int64_t, int64_t>(0, 4)));
  EXPECT_EQ(BalancedRange(10, 2, 3), (std::pair<int64_t, int64_t>(7, 10)));
}

// Gradient accumulation: the same global batch (4 x ranks x micro-batches = 16) cut the same way
// whether it is 1 rank x 4 micro-batches, 2 x 2 or 4 x 1, so the runs see the same examples per
// step and, summed, the same gradients.
TEST(EpochPlan, MicroBatchesDependOnlyOnRanksTimesAccumulationSteps) {
  const int64_t n = 70;  // four steps of 16 and a short last one of 6
  auto parts = [&](int world, int64_t k) {
    SamplerOptions o;
    o.batch_size = 4;
    o.world_size = world;
    o.accumulation_steps = k;
    EXPECT_EQ(GlobalBatchSize(o), 16);
    EpochPlan plan(n, {}, o, 3);
    EXPECT_EQ(plan.num_steps(), 5);
    std::vector<std::vector<int64_t>> out;  // per step, the 4 parts in order
    for (int64_t s = 0; s < plan.num_steps(); ++s) {
      for (int r = 0; r < world; ++r) {
        for (int64_t m = 0; m < k; ++m) out.push_back(plan.Slice(s, r, m));
      }
    }
    return out;
  };
  const auto one = parts(1, 4), two = parts(2, 2), four = parts(4, 1);
  EXPECT_EQ(one, two);
  EXPECT_EQ(one, four);
  // The short last step: 6 examples over 4 parts, balanced (2, 2, 1, 1).
  ASSERT_EQ(one.size(), 20u);
  EXPECT_EQ(one[16].size(), 2u);
  EXPECT_EQ(one[19].size(), 1u);
}

std::vector<Example> Examples(std::vector<int> lengths) {
  std::vector<Example> out;
  for (size_t i = 0; i < lengths.size(); ++i) {
    Example e;
    e.index = static_cast<int64_t>(10 + i);
    e.label = static_cast<int64_t>(i % 2);
    for (int t = 0; t < lengths[i]; ++t) e.ids.push_back(100 + t);
    out.push_back(e);
  }
  return out;
}

TEST(Collate, PadsToTheLongestOrToAMultipleCappedAtTheModelLength) {
  HostBatch b = Collate(Examples({3, 5}), /*pad_id=*/0);
  EXPECT_EQ(b.seq_len, 5);
  EXPECT_EQ(b.real_tokens, 8);
  EXPECT_EQ(b.input_ids, (std::vector<int64_t>{100, 101, 102, 0, 0, 100, 101, 102, 103, 104}));
  EXPECT_EQ(b.attention_mask, (std::vector<int64_t>{1, 1, 1, 0, 0, 1, 1, 1, 1, 1}));
  EXPECT_EQ(b.labels, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(b.indices, (std::vector<int64_t>{10, 11}));

  b = Collate(Examples({3, 5}), 0, /*pad_to_multiple_of=*/8);
  EXPECT_EQ(b.seq_len, 8);
  EXPECT_EQ(b.real_tokens, 8);
  EXPECT_EQ(std::count(b.attention_mask.begin(), b.attention_mask.end(), 1), 8);
  EXPECT_EQ(b.input_ids[8 + 5], 0);
  // Capped at the model's length, but never below the longest example.
  EXPECT_EQ(Collate(Examples({20}), 0, 16, /*max_length=*/24).seq_len, 24);
  EXPECT_EQ(Collate(Examples({30}), 0, 16, /*max_length=*/24).seq_len, 30);
  EXPECT_EQ(Collate(Examples({16}), 0, 16, 512).seq_len, 16);
}

}  // namespace
}  // namespace ftune::data
