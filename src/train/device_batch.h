// A rank's batch on the compute device: the one way host batches reach a model. Everything the
// batch carries (token ids, attention mask, token type ids, labels, dataset indices, masked-LM
// targets) travels in ONE copy: packed into one int64 buffer (page-locked for a CUDA device, so
// the copy is asynchronous to the host and does not wait for the previous step's kernels), then
// viewed apart on the device; regression targets (float) in a second.
#pragma once

#include <torch/torch.h>

#include "data/batch_loader.h"
#include "model/sequence_classifier.h"

namespace ftune::train {

struct DeviceBatch {
  torch::Tensor input_ids;       // [rows, seq_len] int64; undefined for an indices-only batch
  torch::Tensor attention_mask;  // [rows, seq_len] int64, 1 = token; undefined likewise
  torch::Tensor labels;          // [rows] int64; undefined when the batch has no labels
  torch::Tensor indices;         // [rows] int64 dataset indices; undefined when absent
  torch::Tensor mlm_labels;      // [rows, seq_len] int64 masked-LM targets (-100 = not scored); MLM only
  torch::Tensor token_type_ids;  // [rows, seq_len] int64; undefined when the dataset has none (single texts)
  torch::Tensor targets;         // [rows] float32 regression labels; undefined for classification
  int64_t seq_len = 0;           // the padded length (also for an indices-only batch: data::IndicesOnly)

  // What a model's forward pass reads.
  model::EncoderInputs inputs() const { return {input_ids, attention_mask, token_type_ids}; }
};

// `b`'s contents on `device` (owning copies: `b` may be discarded afterwards).
DeviceBatch ToDevice(const data::HostBatch& b, const torch::Device& device);

}  // namespace ftune::train
