// Masked-language-model inputs, as Hugging Face's DataCollatorForLanguageModeling makes them
// (mlm_probability 0.15, then 80% [MASK] / 10% a random token / 10% unchanged; the loss only on the
// chosen positions, label -100 elsewhere), except for where the randomness comes from: each
// example's choices are drawn from (seed, epoch, dataset index) alone, so they do not depend on
// the number of ranks, the batch an example lands in, or on resuming.
//
// Positions that are never chosen: padding and the special tokens of `never_mask` ([CLS], [SEP],
// [PAD]: what run_mlm.py's special_tokens_mask marks).
#pragma once

#include <cstdint>
#include <vector>

namespace ftune::data {

struct HostBatch;  // batch_loader.h

inline constexpr int64_t kIgnoreIndex = -100;  // torch's CrossEntropyLoss ignore_index (HF's label)

struct MaskingOptions {
  double probability = 0.15;    // mlm_probability
  double mask_replace = 0.8;    // of the chosen: replaced by [MASK]
  double random_replace = 0.1;  // of the chosen: replaced by a uniform random token id
  int32_t mask_id = -1;         // the [MASK] token id
  int64_t vocab_size = 0;       // random tokens are drawn from [0, vocab_size)
  std::vector<int32_t> never_mask;
  uint64_t seed = 0;
};

// The `epoch` used for evaluation masks: the same positions at every evaluation.
inline constexpr int64_t kEvalMaskEpoch = -1;

// Masks `b` in place: rewrites b->input_ids at the chosen positions, fills b->mlm_labels
// (rows x seq_len: the original id where chosen, kIgnoreIndex elsewhere) and b->masked_tokens.
// Rows are identified by b->indices (dataset positions).
void MaskTokens(const MaskingOptions& options, int64_t epoch, HostBatch* b);

}  // namespace ftune::data
