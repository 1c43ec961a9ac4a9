// Masked-LM masking: HF DataCollatorForLanguageModeling's distribution (15% of eligible tokens;
// 80% [MASK], 10% random, 10% kept), never special tokens or padding, labels only where chosen,
// and choices fixed by (seed, epoch, example) alone, whatever the batch they land in.
#include "data/masking.h"

#include <cmath>

#include "data/batch_loader.h"
#include "gtest/gtest.h"

namespace ftune::data {
namespace {

constexpr int32_t kPad = 0, kCls = 101, kSep = 102, kMask = 103;

MaskingOptions Options(uint64_t seed = 42) {
  MaskingOptions o;
  o.mask_id = kMask;
  o.vocab_size = 30522;
  o.never_mask = {kCls, kSep, kPad};
  o.seed = seed;
  return o;
}

// Example i: [CLS] 1000+i*7+t ... [SEP], of length 20 + (i % 30) tokens.
Example Make(int64_t index) {
  Example e;
  e.index = index;
  const int n = 20 + static_cast<int>(index % 30);
  e.ids.push_back(kCls);
  for (int t = 0; t < n - 2; ++t) e.ids.push_back(1000 + static_cast<int32_t>((index * 7 + t) % 20000));
  e.ids.push_back(kSep);
  return e;
}

HostBatch Batch(std::vector<int64_t> indices) {
  std::vector<Example> ex;
  for (int64_t i : indices) ex.push_back(Make(i));
  return Collate(ex, kPad);
}

TEST(MaskTokens, FollowsHuggingFaceProportions) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < 2000; ++i) idx.push_back(i);
  HostBatch original = Batch(idx), b = original;
  MaskTokens(Options(), /*epoch=*/0, &b);
  int64_t eligible = 0, chosen = 0, masked = 0, random = 0, kept = 0;
  for (size_t k = 0; k < b.input_ids.size(); ++k) {
    const int64_t id = original.input_ids[k];
    const bool special = id == kCls || id == kSep || original.attention_mask[k] == 0;
    if (special) {
      EXPECT_EQ(b.mlm_labels[k], kIgnoreIndex);
      EXPECT_EQ(b.input_ids[k], id);
      continue;
    }
    ++eligible;
    if (b.mlm_labels[k] == kIgnoreIndex) {
      EXPECT_EQ(b.input_ids[k], id);  // not chosen: untouched
      continue;
    }
    ++chosen;
    EXPECT_EQ(b.mlm_labels[k], id);  // the label is the original token
    if (b.input_ids[k] == kMask) {
      ++masked;
    } else if (b.input_ids[k] != id) {
      ++random;
      EXPECT_GE(b.input_ids[k], 0);
      EXPECT_LT(b.input_ids[k], 30522);
    } else {
      ++kept;
    }
  }
  EXPECT_EQ(b.masked_tokens, chosen);
  // ~85,000 eligible tokens: the binomial standard deviations are ~0.1% (15%) and ~0.3-0.4% (80/10/10).
  const double p = static_cast<double>(chosen) / eligible;
  EXPECT_NEAR(p, 0.15, 0.005) << eligible << " eligible";
  EXPECT_NEAR(static_cast<double>(masked) / chosen, 0.8, 0.015);
  EXPECT_NEAR(static_cast<double>(random) / chosen, 0.1, 0.012);
  EXPECT_NEAR(static_cast<double>(kept) / chosen, 0.1, 0.012);
}

TEST(MaskTokens, ChoicesDependOnSeedEpochAndExampleOnly) {
  HostBatch pair = Batch({7, 42}), alone = Batch({42});
  MaskTokens(Options(), 3, &pair);
  MaskTokens(Options(), 3, &alone);
  // Example 42's row is the same whether it shares the batch (and its padding) or not.
  const int64_t n = static_cast<int64_t>(Make(42).ids.size());
  for (int64_t t = 0; t < n; ++t) {
    EXPECT_EQ(pair.input_ids[pair.seq_len + t], alone.input_ids[t]) << t;
    EXPECT_EQ(pair.mlm_labels[pair.seq_len + t], alone.mlm_labels[t]) << t;
  }
  HostBatch other_epoch = Batch({42}), other_seed = Batch({42});
  MaskTokens(Options(), 4, &other_epoch);
  MaskTokens(Options(7), 3, &other_seed);
  EXPECT_NE(other_epoch.mlm_labels, alone.mlm_labels);
  EXPECT_NE(other_seed.mlm_labels, alone.mlm_labels);
  HostBatch again = Batch({42});
  MaskTokens(Options(), 3, &again);
  EXPECT_EQ(again.input_ids, alone.input_ids);
}

TEST(MaskTokens, ProbabilityIsHonoured) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < 500; ++i) idx.push_back(i);
  HostBatch b = Batch(idx);
  MaskingOptions o = Options();
  o.probability = 0.4;
  MaskTokens(o, 0, &b);
  int64_t eligible = 0;
  for (size_t k = 0; k < b.input_ids.size(); ++k) eligible += b.attention_mask[k] != 0;
  eligible -= 2 * 500;  // [CLS] and [SEP]
  EXPECT_NEAR(static_cast<double>(b.masked_tokens) / eligible, 0.4, 0.01);
}

}  // namespace
}  // namespace ftune::data
