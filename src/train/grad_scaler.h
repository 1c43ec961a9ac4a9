// Dynamic loss scaling for --precision=fp16, as torch.cuda.amp.GradScaler does it (HF's fp16=True):
// the loss is multiplied by `scale` before backward so small fp16 gradients do not flush to zero;
// the summed gradients are divided by it again before clipping; a step whose gradients are not
// finite is skipped and the scale multiplied by backoff_factor; after growth_interval finite steps
// in a row it is multiplied by growth_factor. Everything stays on the device (no host sync per
// step); the state goes into checkpoints.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "nlohmann/json.hpp"
#include "train/flat_params.h"

namespace ftune::train {

struct GradScalerOptions {
  double init_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

// The scaler's state, as checkpoints store it (scale 0: no scaler).
struct GradScalerState {
  double scale = 0;
  int64_t growth_tracker = 0;  // finite steps in a row since the last change
  void ToJson(nlohmann::json* j) const;  // loss_scale, loss_scale_growth_tracker (when scale > 0)
  static GradScalerState FromJson(const nlohmann::json& j);
};

class GradScaler {
 public:
  GradScaler(const GradScalerOptions& options, const torch::Device& device);

  // loss * scale (keeps the loss's dtype).
  torch::Tensor Scale(const torch::Tensor& loss) const { return loss * scale_.to(loss.scalar_type()); }
  // Divides every gradient of `flat` by the scale (before the norm and the clip).
  void Unscale(FlatParameters& flat) const;
  // After the step: `found_inf` (float32 0-dim, 1 = the step had non-finite gradients and was skipped).
  void Update(const torch::Tensor& found_inf);

  // State for checkpoints (reads the device: call at a checkpoint, not per step).
  double scale() const { return scale_.item<double>(); }
  int64_t growth_tracker() const { return tracker_.item<int64_t>(); }
  GradScalerState state() const { return {scale(), growth_tracker()}; }
  void Restore(double scale, int64_t growth_tracker);
  void Restore(const GradScalerState& s) { Restore(s.scale, s.growth_tracker); }

 private:
  GradScalerOptions options_;
  torch::Tensor scale_;    // float32, 0-dim, on the device
  torch::Tensor tracker_;  // int64, 0-dim: finite steps in a row since the last change
};

}  // namespace ftune::train
