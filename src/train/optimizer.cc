#include "train/optimizer.h"

#include <cmath>
#include <initializer_list>

#include <ATen/Parallel.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/torch_compat.h"
#include "nlohmann/json.hpp"
#include "train/adamw_kernel.h"

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

namespace {
// Elements per task of the host kernel: large enough that a task's overhead is noise, small
// enough to balance over a few threads (a 592k-element head group still splits).
constexpr int64_t kAdamWGrain = 1 << 16;

bool OnHostFloats(std::initializer_list<torch::Tensor> ts) {
  for (const auto& t : ts) {
    if (!t.device().is_cpu() || t.scalar_type() != torch::kFloat || !t.is_contiguous()) return false;
  }
  return true;
}
}  // namespace

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
    if (OnHostFloats({p, g, exp_avg_[i], exp_avg_sq_[i]})) {
      // One pass over the four buffers, split over the intra-op threads.
      const AdamWScalars s{static_cast<float>(1.0 - lr * groups[i].weight_decay),
                           static_cast<float>(b1),
                           static_cast<float>(1.0 - b1),
                           static_cast<float>(b2),
                           static_cast<float>(1.0 - b2),
                           static_cast<float>(bias_correction2_sqrt),
                           static_cast<float>(options_.eps),
                           static_cast<float>(-step_size)};
      float *pp = p.data_ptr<float>(), *mp = exp_avg_[i].data_ptr<float>(), *vp = exp_avg_sq_[i].data_ptr<float>();
      const float* gp = g.data_ptr<float>();
      at::parallel_for(0, p.numel(), kAdamWGrain, [&](int64_t begin, int64_t end) {
        AdamWUpdate(pp + begin, gp + begin, mp + begin, vp + begin, end - begin, s);
      });
      continue;
    }
    if (groups[i].weight_decay != 0.0) p.mul_(1.0 - lr * groups[i].weight_decay);
    exp_avg_[i].mul_(b1).add_(g, 1.0 - b1);
    exp_avg_sq_[i].mul_(b2).addcmul_(g, g, 1.0 - b2);
    torch::Tensor denom = (exp_avg_sq_[i].sqrt() / bias_correction2_sqrt).add_(options_.eps);
    p.addcdiv_(exp_avg_[i], denom, -step_size);
  }
}

namespace {
constexpr struct {
  LrSchedulerType type;
  const char* name;
} kSchedulers[] = {{LrSchedulerType::kLinear, "linear"},
                   {LrSchedulerType::kCosine, "cosine"},
                   {LrSchedulerType::kCosineWithRestarts, "cosine_with_restarts"},
                   {LrSchedulerType::kConstant, "constant"},
                   {LrSchedulerType::kConstantWithWarmup, "constant_with_warmup"},
                   {LrSchedulerType::kPolynomial, "polynomial"}};
}  // namespace

absl::StatusOr<LrSchedulerType> ParseLrSchedulerType(const std::string& name) {
  std::string names;
  for (const auto& s : kSchedulers) {
    if (name == s.name) return s.type;
    absl::StrAppend(&names, names.empty() ? "" : ", ", s.name);
  }
  return absl::InvalidArgumentError(absl::StrFormat("--lr_scheduler_type \"%s\" is not one of %s", name, names));
}

const char* LrSchedulerName(LrSchedulerType type) {
  for (const auto& s : kSchedulers) {
    if (s.type == type) return s.name;
  }
  return "?";
}

absl::StatusOr<LrScheduleOptions> ParseLrSchedulerKwargs(LrSchedulerType type, const std::string& text) {
  LrScheduleOptions o;
  o.type = type;
  if (text.empty()) return o;
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrFormat("--lr_scheduler_kwargs is not a JSON object: %s", text));
  }
  const bool cosine = type == LrSchedulerType::kCosine || type == LrSchedulerType::kCosineWithRestarts;
  const bool polynomial = type == LrSchedulerType::kPolynomial;
  for (const auto& [key, value] : j.items()) {
    if (key != "num_cycles" && key != "power" && key != "lr_end") {
      return absl::InvalidArgumentError(
          absl::StrFormat("--lr_scheduler_kwargs: unknown argument \"%s\" (num_cycles, power, lr_end)", key));
    }
    if ((key == "num_cycles" && !cosine) || (key != "num_cycles" && !polynomial)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--lr_scheduler_kwargs: \"%s\" is not an argument of the %s schedule (num_cycles: cosine, "
          "cosine_with_restarts; power, lr_end: polynomial)",
          key, LrSchedulerName(type)));
    }
    if (!value.is_number()) {
      return absl::InvalidArgumentError(absl::StrFormat("--lr_scheduler_kwargs: %s must be a number", key));
    }
    const double v = value.get<double>();
    if (key == "num_cycles") {
      if (!(v > 0)) return absl::InvalidArgumentError("--lr_scheduler_kwargs: num_cycles must be > 0");
      o.num_cycles = v;
    } else if (key == "power") {
      if (!(v > 0)) return absl::InvalidArgumentError("--lr_scheduler_kwargs: power must be > 0");
      o.power = v;
    } else {
      if (!(v >= 0)) return absl::InvalidArgumentError("--lr_scheduler_kwargs: lr_end must be >= 0");
      o.lr_end = v;
    }
  }
  return o;
}

absl::StatusOr<LrSchedule> LrSchedule::Create(double base_lr, int64_t warmup_steps, int64_t total_steps,
                                              const LrScheduleOptions& options) {
  LrScheduleOptions o = options;
  if (!o.num_cycles) o.num_cycles = o.type == LrSchedulerType::kCosineWithRestarts ? 1.0 : 0.5;
  if (o.type == LrSchedulerType::kPolynomial && !(base_lr > o.lr_end)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "polynomial schedule: lr_end (%g) must be smaller than the learning rate (%g)", o.lr_end, base_lr));
  }
  // HF's constant schedule has no warmup; every other one warms up linearly.
  if (o.type == LrSchedulerType::kConstant) warmup_steps = 0;
  return LrSchedule(base_lr, warmup_steps, total_steps, o);
}

double LrSchedule::Factor(int64_t step) const {
  const double s = static_cast<double>(step), w = static_cast<double>(warmup_), t = static_cast<double>(total_);
  if (step < warmup_) return s / std::max(1.0, w);
  const double progress = (s - w) / std::max(1.0, t - w);
  const double cycles = *options_.num_cycles;
  switch (options_.type) {
    case LrSchedulerType::kLinear: return std::max(0.0, (t - s) / std::max(1.0, t - w));
    case LrSchedulerType::kCosine: return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * cycles * 2.0 * progress)));
    case LrSchedulerType::kCosineWithRestarts:
      if (progress >= 1.0) return 0.0;
      return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * std::fmod(cycles * progress, 1.0))));
    case LrSchedulerType::kConstant:
    case LrSchedulerType::kConstantWithWarmup: return 1.0;
    case LrSchedulerType::kPolynomial: {
      if (step > total_) return options_.lr_end / base_;
      const double remaining = 1.0 - (s - w) / (t - w);
      return ((base_ - options_.lr_end) * std::pow(remaining, options_.power) + options_.lr_end) / base_;
    }
  }
  return 1.0;
}

int64_t ResolveWarmupSteps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps) {
  if (warmup_steps > 0) return warmup_steps;
  return static_cast<int64_t>(std::ceil(warmup_ratio * static_cast<double>(total_steps)));
}

}  // namespace ftune::train
