// Shared by the trainer tests and the live HF tests: the process's MPI context
// (train_test_main.cc) and a host batch built from reference tensors.
#pragma once
#include <torch/torch.h>

#include "data/batch_loader.h"
#include "distributed/dist_context.h"
namespace ftune::train::testing {
const dist::DistContext& Context();

// A HostBatch of (ids, mask, labels), as the batch loader would hand it to Trainer::Step.
inline data::HostBatch BatchFrom(const torch::Tensor& ids, const torch::Tensor& mask, const torch::Tensor& labels) {
  data::HostBatch b;
  b.rows = ids.size(0);
  b.seq_len = ids.size(1);
  b.global_examples = b.rows;
  torch::Tensor i = ids.to(torch::kLong).contiguous(), m = mask.to(torch::kLong).contiguous(),
                l = labels.to(torch::kLong).contiguous();
  b.input_ids.assign(i.data_ptr<int64_t>(), i.data_ptr<int64_t>() + i.numel());
  b.attention_mask.assign(m.data_ptr<int64_t>(), m.data_ptr<int64_t>() + m.numel());
  b.labels.assign(l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel());
  b.real_tokens = m.sum().item<int64_t>();
  return b;
}
}  // namespace ftune::train::testing
