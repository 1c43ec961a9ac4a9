// AdamW and the learning-rate schedules, as Hugging Face's Trainer uses them (torch.optim.AdamW +
// get_scheduler(lr_scheduler_type)), applied to FlatParameters groups: a few
// fused tensor operations per group and step, whatever the number of parameters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/status.h"
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
  // same arithmetic in one pass of ftune's host kernel (train/adamw_kernel.h) for float32 buffers
  // on the CPU, as a few tensor operations per group elsewhere.
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

// Hugging Face's learning-rate schedules (transformers.optimization, the lr_lambda of each
// get_*_schedule_with_warmup), by their --lr_scheduler_type names. With w warmup steps and T
// steps in all, the factor at step s (optimizer steps already taken), after warmup's s / max(1, w):
//   linear                max(0, (T - s) / max(1, T - w))
//   cosine                max(0, (1 + cos(pi * 2 * num_cycles * p)) / 2),  p = (s - w) / max(1, T - w)
//   cosine_with_restarts  0 once p >= 1, else max(0, (1 + cos(pi * ((num_cycles * p) mod 1))) / 2)
//   constant              1 (no warmup)
//   constant_with_warmup  1
//   polynomial            lr_end / lr past T, else ((lr - lr_end) * (1 - (s - w) / (T - w))^power + lr_end) / lr
enum class LrSchedulerType { kLinear, kCosine, kCosineWithRestarts, kConstant, kConstantWithWarmup, kPolynomial };

absl::StatusOr<LrSchedulerType> ParseLrSchedulerType(const std::string& name);
const char* LrSchedulerName(LrSchedulerType type);

// HF's lr_scheduler_kwargs; unset ones take HF's defaults (num_cycles 0.5 for cosine, 1 for
// cosine_with_restarts; power 1; lr_end 1e-7).
struct LrScheduleOptions {
  LrSchedulerType type = LrSchedulerType::kLinear;
  std::optional<double> num_cycles;
  double power = 1.0;
  double lr_end = 1e-7;
};

// HF's lr_scheduler_kwargs (a JSON object) for the schedule `type`: an argument the schedule does
// not take (power with cosine), an unknown one or a non-number is an InvalidArgument naming
// --lr_scheduler_kwargs. "" is no arguments.
absl::StatusOr<LrScheduleOptions> ParseLrSchedulerKwargs(LrSchedulerType type, const std::string& json_text);

class LrSchedule {
 public:
  // InvalidArgument: polynomial with base_lr <= lr_end (HF refuses it too).
  static absl::StatusOr<LrSchedule> Create(double base_lr, int64_t warmup_steps, int64_t total_steps,
                                           const LrScheduleOptions& options = {});
  double LearningRate(int64_t step) const { return base_ * Factor(step); }
  double Factor(int64_t step) const;
  int64_t total_steps() const { return total_; }
  int64_t warmup_steps() const { return warmup_; }

 private:
  LrSchedule(double base_lr, int64_t warmup, int64_t total, LrScheduleOptions o)
      : base_(base_lr), warmup_(warmup), total_(total), options_(o) {}
  double base_;
  int64_t warmup_, total_;
  LrScheduleOptions options_;
};

// HF's warmup resolution: warmup_steps if > 0, else ceil(warmup_ratio * total_steps).
int64_t ResolveWarmupSteps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps);

}  // namespace ftune::train
