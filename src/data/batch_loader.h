// Rank-local batches for one epoch, read and padded on a background thread so the next batches
// are ready when the trainer asks. Each batch holds only this rank's slice of the global batch
// (see sampler.h), read with one hyperslab read, padded to its own longest example (dynamic
// padding). Torch-free: the trainer wraps the buffers as tensors without copying.
//
// Threading: the loader thread is the only user of the TokenDataset while an epoch runs; the
// thread is idle between epochs, so the caller may use HDF5 (evaluation) then.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/status.h"
#include "data/masking.h"
#include "data/sampler.h"
#include "data/token_dataset.h"

namespace ftune::data {

struct HostBatch {
  int64_t epoch = 0;
  int64_t step = 0;                     // within the epoch
  int64_t micro = 0;                    // which of the step's micro-batches (0 .. accumulation_steps-1)
  int64_t global_examples = 0;          // examples in the whole global batch (all ranks, all micro-batches)
  int64_t rows = 0;                     // examples in this micro-batch (may be 0 in a short last batch)
  int64_t seq_len = 0;                  // padded length
  int64_t real_tokens = 0;              // non-padding tokens on this rank
  std::vector<int64_t> input_ids;       // rows x seq_len, right-padded with pad_id
  std::vector<int64_t> attention_mask;  // rows x seq_len, 1 = token
  std::vector<int64_t> labels;          // rows (-1 in a regression dataset)
  // Sentence pairs: the token_type_ids (rows x seq_len, padding 0); empty when the dataset has none.
  std::vector<int64_t> token_type_ids;
  // Regression datasets: the float labels (rows); empty otherwise.
  std::vector<float> targets;
  std::vector<int64_t> indices;         // dataset indices, rows
  // Masked-LM batches only (data/masking.h): the target id where a position is scored, -100
  // elsewhere (rows x seq_len), and how many positions are scored.
  std::vector<int64_t> mlm_labels;
  int64_t masked_tokens = 0;
};

// Pads `examples` into a HostBatch (also used for evaluation batches): to the longest example,
// rounded up to a multiple of `pad_to_multiple_of` (1 = no rounding; GPU kernels prefer aligned
// lengths and fewer distinct shapes) but never beyond `max_length` (0 = no cap; the model's
// max_position_embeddings), and never below the longest example.
HostBatch Collate(const std::vector<Example>& examples, int64_t pad_id, int64_t pad_to_multiple_of = 1,
                  int64_t max_length = 0);
// Collate's padded length for a batch whose longest example has `longest` tokens.
int64_t PaddedLength(int64_t longest, int64_t pad_to_multiple_of, int64_t max_length);
// A batch without token ids (training or scoring on cached encoder outputs): rows, indices and
// labels, and seq_len / real_tokens as Collate would have made them from the examples' lengths.
HostBatch IndicesOnly(const TokenDataset& ds, const std::vector<int64_t>& indices, int64_t pad_to_multiple_of,
                      int64_t max_length);

class BatchLoader {
 public:
  // `read_tokens` false: batches carry indices and labels only (training on cached features).
  BatchLoader(const TokenDataset* dataset, const SamplerOptions& options, int rank, int64_t pad_id, int prefetch = 4,
              bool read_tokens = true);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // Collate's rounding for the batches of the next epoch (see Collate).
  void set_padding(int64_t pad_to_multiple_of, int64_t max_length) {
    pad_multiple_ = pad_to_multiple_of;
    pad_cap_ = max_length;
  }
  // Masked-LM batches: each batch is masked (data/masking.h) for its epoch before it is queued.
  void set_masking(const MaskingOptions& options) { masking_ = options; }
  // Begins producing `epoch`'s batches from `start_step` (resume), stopping any epoch in flight.
  void StartEpoch(int64_t epoch, int64_t start_step = 0);
  // The next micro-batch (a step's accumulation_steps micro-batches come in order), std::nullopt
  // after the epoch's last one, or the read error.
  absl::StatusOr<std::optional<HostBatch>> Next();

  const EpochPlan* plan() const { return plan_.get(); }
  int64_t steps_per_epoch() const;

 private:
  void Run(int64_t epoch, int64_t start_step);
  void Stop();

  const TokenDataset* dataset_;
  SamplerOptions options_;
  int rank_;
  int64_t pad_id_;
  int64_t pad_multiple_ = 1, pad_cap_ = 0;
  std::optional<MaskingOptions> masking_;
  size_t prefetch_;
  bool read_tokens_;
  std::vector<int32_t> lengths_;
  std::unique_ptr<EpochPlan> plan_;

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<HostBatch> queue_;
  absl::Status error_;
  bool done_ = true;
  bool stop_ = false;
};

}  // namespace ftune::data
