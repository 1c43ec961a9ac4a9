#include "train/grad_scaler.h"

namespace ftune::train {

void GradScalerState::ToJson(nlohmann::json* j) const {
  if (scale <= 0) return;
  (*j)["loss_scale"] = scale;
  (*j)["loss_scale_growth_tracker"] = growth_tracker;
}

GradScalerState GradScalerState::FromJson(const nlohmann::json& j) {
  return {j.value("loss_scale", 0.0), j.value("loss_scale_growth_tracker", int64_t{0})};
}

GradScaler::GradScaler(const GradScalerOptions& options, const torch::Device& device)
    : options_(options),
      scale_(torch::full({}, options.init_scale, torch::TensorOptions().dtype(torch::kFloat).device(device))),
      tracker_(torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(device))) {}

void GradScaler::Unscale(FlatParameters& flat) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor inv = scale_.reciprocal();
  for (auto& g : flat.groups()) g.grads.mul_(inv.to(g.grads.scalar_type()));
}

void GradScaler::Update(const torch::Tensor& found_inf) {
  // torch's _amp_update_scale_, in tensor operations.
  torch::NoGradGuard no_grad;
  const torch::Tensor found = found_inf.to(scale_.device()).ne(0);
  const torch::Tensor successful = torch::where(found, torch::zeros_like(tracker_), tracker_ + 1);
  const torch::Tensor grow = successful.ge(options_.growth_interval);
  scale_.copy_(torch::where(found, scale_ * options_.backoff_factor,
                            torch::where(grow, scale_ * options_.growth_factor, scale_)));
  tracker_.copy_(torch::where(grow, torch::zeros_like(successful), successful));
}

void GradScaler::Restore(double scale, int64_t growth_tracker) {
  scale_.fill_(scale);
  tracker_.fill_(growth_tracker);
}

}  // namespace ftune::train
