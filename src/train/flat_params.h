// The trainable parameters of a model, re-homed into a few contiguous buffers, with their
// gradients as views into matching flat gradient buffers (DDP's gradient_as_bucket_view).
//
// Why: each step then needs a handful of fused operations instead of one kernel per parameter:
// zeroing the gradients, all-reducing them (bucket by bucket, only trainable bytes: frozen
// parameters are never in a buffer), the global norm, the clip, and the AdamW update. Built once,
// after the model is on its device and its trainable set is decided; parameters keep their names
// and shapes (they become views into the buffers), so saving and printing are unaffected.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "common/status.h"
#include "distributed/communicator.h"

namespace ftune::train {

struct ParamGroup {
  double weight_decay = 0.0;
  torch::Tensor params;  // flat, 1-D
  torch::Tensor grads;   // flat, 1-D, same size; every parameter's .grad is a view into it
  std::vector<std::string> names;
  std::vector<torch::Tensor> variables;  // the parameters themselves (views into `params`)
  std::vector<int64_t> offsets;          // where each starts in the flat buffers
};

// Gradient buckets in the order the backward pass fills them (last parameters first), and the
// per-step bookkeeping that starts each bucket's all-reduce as soon as its last gradient lands.
struct OverlapState;

class FlatParameters {
 public:
  // Groups trainable parameters like Hugging Face's Trainer: weight decay on everything except
  // biases and LayerNorm weights. With weight_decay == 0 there is a single group.
  static absl::StatusOr<FlatParameters> Build(torch::nn::Module& model, double weight_decay);

  std::vector<ParamGroup>& groups() { return groups_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  int64_t numel() const;
  int64_t bytes() const;

  void ZeroGrad();
  // Sums gradients over ranks in place, in buckets of at most `bucket_bytes`.
  absl::Status AllReduceGrads(dist::Communicator* comm, size_t bucket_bytes, void* stream = nullptr);

  // Overlap of communication with the backward pass (DDP's reducer, for the MPI transport):
  // gradients are cut into buckets of whole parameters, last parameters first, and a hook on every
  // parameter's gradient accumulator starts a bucket's all-reduce (StartAllReduce) once all its
  // gradients are in. Buckets start strictly in order, so every rank issues the same sequence
  // whatever its batch (a rank with no examples starts them all in FinishOverlapped). Hooks that
  // run on another thread than this one (CUDA's autograd threads) only count; their buckets start
  // in FinishOverlapped. Call after Build, once; the hooks live as long as this object.
  void EnableOverlap(dist::Communicator* comm, size_t bucket_bytes);
  bool overlap_enabled() const { return overlap_ != nullptr; }
  int64_t num_buckets() const;
  // Buckets whose all-reduce a hook started inside a backward pass, summed over steps.
  int64_t buckets_started_in_backward() const;
  // Before the backward pass of a step.
  void BeginOverlappedStep();
  // After it: starts the buckets not started yet (in order) and waits for all. Fails if a
  // parameter's gradient arrived twice in one backward (a parameter used twice per forward): such
  // a model needs --overlap_comm=false.
  absl::Status FinishOverlapped();
  // L2 norm of all gradients (what clip_grad_norm_ returns): a 0-dim float32 tensor on the
  // gradients' device (nothing waits for the device).
  torch::Tensor GradNorm() const;
  // clip_grad_norm_(max_norm) given that norm: scales gradients by min(1, max_norm / (norm + 1e-6)),
  // computed on the device.
  void ClipGradNorm(const torch::Tensor& norm, double max_norm);
  // Broadcasts every trainable parameter from `root` so all ranks start identical.
  absl::Status BroadcastParams(dist::Communicator* comm, int root, void* stream = nullptr);

 private:
  std::vector<ParamGroup> groups_;
  std::shared_ptr<OverlapState> overlap_;  // shared with the hooks (a hook outliving it does nothing)
};

}  // namespace ftune::train
