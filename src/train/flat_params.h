// The trainable parameters of a model, re-homed into a few contiguous buffers, with their
// gradients as views into matching flat gradient buffers (DDP's gradient_as_bucket_view).
//
// Why: each step then needs a handful of fused operations instead of one kernel per parameter:
// zeroing the gradients, all-reducing them (GradientReducer; only trainable bytes: frozen
// parameters are never in a buffer), the global norm, the clip, and the AdamW update. Built once,
// after the model is on its device and its trainable set is decided; parameters keep their names
// and shapes (they become views into the buffers), so saving and printing are unaffected.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/status.h"

namespace ftune::train {

struct ParamGroup {
  double weight_decay = 0.0;
  torch::Tensor params;  // flat, 1-D
  torch::Tensor grads;   // flat, 1-D, same size; every parameter's .grad is a view into it
  std::vector<std::string> names;
  std::vector<torch::Tensor> variables;  // the parameters themselves (views into `params`)
  std::vector<int64_t> offsets;          // where each starts in the flat buffers
};

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
  // L2 norm of all gradients (what clip_grad_norm_ returns): a 0-dim float32 tensor on the
  // gradients' device (nothing waits for the device).
  torch::Tensor GradNorm() const;
  // clip_grad_norm_(max_norm) given that norm: scales gradients by min(1, max_norm / (norm + 1e-6)),
  // computed on the device.
  void ClipGradNorm(const torch::Tensor& norm, double max_norm);
  // The groups' weight decay and parameter names in order: equal layouts mean equal buffers.
  std::string Layout() const;

 private:
  std::vector<ParamGroup> groups_;
};

}  // namespace ftune::train
