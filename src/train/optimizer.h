// AdamW and the linear learning-rate schedule, as Hugging Face's Trainer uses them by default
// (torch.optim.AdamW + get_linear_schedule_with_warmup), applied to FlatParameters groups: a few
// fused tensor operations per group and step, whatever the number of parameters.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "train/flat_params.h"

namespace ftune::train {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

class FlatAdamW {
 public:
  // `fused`: use torch's fused AdamW kernel where this LibTorch has it (>= 2.4): one kernel per
  // group and step, and a skipped step needs no host round-trip. Otherwise (or with false) the
  // same arithmetic as a few tensor operations per group.
  FlatAdamW(FlatParameters* params, const AdamWOptions& options, bool fused = true);
  // One update with learning rate `lr` (torch.optim.AdamW's arithmetic, in its order), skipped
  // entirely (parameters, moments and step count unchanged) where `found_inf`, a float32 scalar on
  // the parameters' device, is non-zero. Undefined `found_inf`: never skipped.
  void Step(double lr, const torch::Tensor& found_inf = {});
  // Updates applied so far (reads the device counter on the fused path: waits for the device).
  int64_t step_count() const;
  bool fused() const { return fused_; }

  // State for checkpoints: exp_avg and exp_avg_sq per group, and the step count.
  std::vector<torch::Tensor>& exp_avg() { return exp_avg_; }
  std::vector<torch::Tensor>& exp_avg_sq() { return exp_avg_sq_; }
  const std::vector<torch::Tensor>& exp_avg() const { return exp_avg_; }
  const std::vector<torch::Tensor>& exp_avg_sq() const { return exp_avg_sq_; }
  void set_step_count(int64_t s);

 private:
  FlatParameters* params_;
  AdamWOptions options_;
  bool fused_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  std::vector<torch::Tensor> steps_;  // fused: one float32 step counter per group, on the device
  int64_t step_ = 0;                  // unfused: host step counter
};

// get_linear_schedule_with_warmup: lr(step) = base * step / warmup during warmup, then decays
// linearly to 0 at total_steps. `step` is the number of optimizer steps already taken.
class LinearSchedule {
 public:
  LinearSchedule(double base_lr, int64_t warmup_steps, int64_t total_steps)
      : base_(base_lr), warmup_(warmup_steps), total_(total_steps) {}
  double LearningRate(int64_t step) const;
  int64_t total_steps() const { return total_; }
  int64_t warmup_steps() const { return warmup_; }

 private:
  double base_;
  int64_t warmup_, total_;
};

// HF's warmup resolution: warmup_steps if > 0, else ceil(warmup_ratio * total_steps).
int64_t ResolveWarmupSteps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps);

}  // namespace ftune::train
