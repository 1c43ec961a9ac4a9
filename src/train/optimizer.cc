#include "train/optimizer.h"

#include <cmath>

namespace ftune::train {

FlatAdamW::FlatAdamW(FlatParameters* params, const AdamWOptions& options) : params_(params), options_(options) {
  for (const auto& g : params_->groups()) {
    exp_avg_.push_back(torch::zeros_like(g.params));
    exp_avg_sq_.push_back(torch::zeros_like(g.params));
  }
}

void FlatAdamW::Step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double bias_correction1 = 1.0 - std::pow(b1, static_cast<double>(step_));
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(step_)));
  const double step_size = lr / bias_correction1;
  auto& groups = params_->groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    torch::Tensor& p = groups[i].params;
    const torch::Tensor& g = groups[i].grads;
    if (groups[i].weight_decay != 0.0) p.mul_(1.0 - lr * groups[i].weight_decay);
    exp_avg_[i].mul_(b1).add_(g, 1.0 - b1);
    exp_avg_sq_[i].mul_(b2).addcmul_(g, g, 1.0 - b2);
    torch::Tensor denom = (exp_avg_sq_[i].sqrt() / bias_correction2_sqrt).add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -step_size);
  }
}

double LinearSchedule::LearningRate(int64_t step) const {
  if (step < warmup_) return base_ * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_));
  const double remaining = static_cast<double>(total_ - step) / static_cast<double>(std::max<int64_t>(1, total_ - warmup_));
  return base_ * std::max(0.0, remaining);
}

int64_t ResolveWarmupSteps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps) {
  if (warmup_steps > 0) return warmup_steps;
  return static_cast<int64_t>(std::ceil(warmup_ratio * static_cast<double>(total_steps)));
}

}  // namespace ftune::train
