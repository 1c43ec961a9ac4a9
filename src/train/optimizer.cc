#include "train/optimizer.h"

#include <cmath>

#include "common/torch_compat.h"

namespace ftune::train {

FlatAdamW::FlatAdamW(FlatParameters* params, const AdamWOptions& options, bool fused)
    : params_(params), options_(options), fused_(fused && compat::HasFusedAdamW()) {
  for (const auto& g : params_->groups()) {
    exp_avg_.push_back(torch::zeros_like(g.params));
    exp_avg_sq_.push_back(torch::zeros_like(g.params));
    if (fused_) steps_.push_back(torch::zeros({}, g.params.options().dtype(torch::kFloat)));
  }
}

int64_t FlatAdamW::step_count() const {
  if (fused_ && !steps_.empty()) return static_cast<int64_t>(steps_.front().item<double>());
  return step_;
}

void FlatAdamW::set_step_count(int64_t s) {
  step_ = s;
  for (auto& t : steps_) t.fill_(static_cast<double>(s));
}

void FlatAdamW::Step(double lr, const torch::Tensor& found_inf) {
  torch::NoGradGuard no_grad;
  auto& groups = params_->groups();
  if (fused_) {
    torch::Tensor skip = found_inf.defined() ? found_inf : torch::zeros({}, steps_.front().options());
    for (size_t i = 0; i < groups.size(); ++i) {
      compat::FusedAdamW(groups[i].params, groups[i].grads, exp_avg_[i], exp_avg_sq_[i], steps_[i], lr, options_.beta1,
                         options_.beta2, groups[i].weight_decay, options_.eps, skip);
    }
    return;
  }
  // Without the fused kernel the skip decision is taken on the host (free on CPU, where this path runs).
  if (found_inf.defined() && found_inf.item<double>() != 0.0) return;
  ++step_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double bias_correction1 = 1.0 - std::pow(b1, static_cast<double>(step_));
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(step_)));
  const double step_size = lr / bias_correction1;
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
  const double remaining =
      static_cast<double>(total_ - step) / static_cast<double>(std::max<int64_t>(1, total_ - warmup_));
  return base_ * std::max(0.0, remaining);
}

int64_t ResolveWarmupSteps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps) {
  if (warmup_steps > 0) return warmup_steps;
  return static_cast<int64_t>(std::ceil(warmup_ratio * static_cast<double>(total_steps)));
}

}  // namespace ftune::train
