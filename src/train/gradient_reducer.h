// GradientReducer: the one place that sums a step's trainable gradients over ranks. It owns the
// choices the training loop should not see:
//   * world size 1 (no communicator): nothing crosses, every call is free ("none");
//   * overlap (DDP's reducer, for host-memory transports with CPU gradients): buckets of whole
//     parameters, last parameters first, and a hook on each parameter's gradient accumulator
//     starts a bucket's all-reduce as soon as its last gradient lands, during the backward pass.
//     Buckets start strictly in order, so every rank issues the same sequence whatever its batch
//     (a rank with no examples starts them all in FinishStep). Hooks on other threads than the
//     constructing one (CUDA's autograd threads) only count; their buckets start in FinishStep;
//   * otherwise one all-reduce per bucket after the backward pass: on the device for a device
//     transport (NCCL, asynchronous on the current stream), through host copies for MPI.
// Only trainable gradients are ever sent: the FlatParameters buffers hold nothing else.
#pragma once

#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "common/status.h"
#include "distributed/communicator.h"
#include "train/flat_params.h"

namespace ftune::train {

struct OverlapState;  // gradient_reducer.cc

class GradientReducer {
 public:
  struct Options {
    size_t bucket_bytes = 25u << 20;  // most bytes per all-reduce call
    bool overlap = true;              // start buckets during the backward pass where it can
  };

  // `comm` nullptr: a single rank, nothing is communicated. `flat` must outlive the reducer; its
  // gradients live on `device`. With overlap, the hooks are installed here, once.
  GradientReducer(FlatParameters* flat, dist::Communicator* comm, const torch::Device& device, Options options);
  ~GradientReducer();
  GradientReducer(GradientReducer&&) noexcept;
  GradientReducer& operator=(GradientReducer&&) noexcept;

  // Makes every rank's trainable parameters equal to `root`'s.
  absl::Status BroadcastParameters(int root);
  // Before a step's backward pass.
  void BeginStep();
  // After it: every rank holds the sum of all ranks' gradients. Fails if a parameter received its
  // gradient twice in one backward pass while overlapping (the bucket went out early): such a
  // model needs Options::overlap = false.
  absl::Status FinishStep();

  const char* transport() const { return comm_ == nullptr ? "none" : comm_->name(); }
  bool overlapped() const { return overlap_ != nullptr; }
  int64_t num_buckets() const;
  // Buckets whose all-reduce a hook started inside a backward pass, summed over steps.
  int64_t buckets_started_in_backward() const;
  // Gradient bytes each rank contributes to one step's all-reduce (trainable parameters x dtype
  // size): what crosses the wire per rank and step; with one rank nothing is sent.
  uint64_t bytes_per_step() const { return static_cast<uint64_t>(flat_->bytes()); }
  // Seconds this rank has spent blocked in gradient communication.
  double seconds() const { return seconds_; }

 private:
  FlatParameters* flat_;
  dist::Communicator* comm_;
  torch::Device device_;
  Options options_;
  std::shared_ptr<OverlapState> overlap_;  // shared with the hooks (a hook outliving it does nothing)
  double seconds_ = 0, step_start_seconds_ = 0;

  absl::Status AllReduceBuckets();  // after the backward pass, bucket by bucket
};

}  // namespace ftune::train
