#include "data/masking.h"

#include <algorithm>

#include "common/random.h"
#include "data/batch_loader.h"

namespace ftune::data {
namespace {

// A uniform double in [0, 1) from the top 53 bits.
double Uniform(SplitMix64& rng) { return static_cast<double>(rng.Next() >> 11) * 0x1.0p-53; }

constexpr uint64_t kMaskingSalt = 0x6d6c6d2d6d61736bULL;  // "mlm-mask": its own streams

}  // namespace

void MaskTokens(const MaskingOptions& o, int64_t epoch, HostBatch* b) {
  b->mlm_labels.assign(b->input_ids.size(), kIgnoreIndex);
  b->masked_tokens = 0;
  // HF draws the random replacement among the chosen-but-not-[MASK] ones with probability
  // random_replace / (1 - mask_replace).
  const double random_given_not_masked = o.mask_replace < 1.0 ? o.random_replace / (1.0 - o.mask_replace) : 0.0;
  for (int64_t r = 0; r < b->rows; ++r) {
    SplitMix64 rng(MixSeed(o.seed ^ kMaskingSalt, static_cast<uint64_t>(epoch), static_cast<uint64_t>(b->indices[r])));
    for (int64_t t = 0; t < b->seq_len; ++t) {
      const size_t k = static_cast<size_t>(r * b->seq_len + t);
      if (b->attention_mask[k] == 0) continue;
      const int32_t id = static_cast<int32_t>(b->input_ids[k]);
      if (std::find(o.never_mask.begin(), o.never_mask.end(), id) != o.never_mask.end()) continue;
      // Three draws per eligible position, whatever the outcome, so a position's fate depends
      // only on (seed, epoch, example, position).
      const double chosen = Uniform(rng), how = Uniform(rng), which = Uniform(rng);
      const uint64_t random_token = rng.Below(static_cast<uint64_t>(std::max<int64_t>(1, o.vocab_size)));
      if (chosen >= o.probability) continue;
      b->mlm_labels[k] = id;
      ++b->masked_tokens;
      if (how < o.mask_replace) {
        b->input_ids[k] = o.mask_id;
      } else if (which < random_given_not_masked) {
        b->input_ids[k] = static_cast<int64_t>(random_token);
      }
    }
  }
}

}  // namespace ftune::data
