#include "train/best_model.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "common/log.h"

namespace ftune::train {

void BestModelState::ToJson(nlohmann::json* j) const {
  (*j)["best_metric"] = best_metric ? nlohmann::json(*best_metric) : nlohmann::json(nullptr);
  (*j)["best_step"] = best_step;
  (*j)["early_stopping_patience_counter"] = patience_counter;
  (*j)["stopped_early"] = stopped;
}

BestModelState BestModelState::FromJson(const nlohmann::json& j) {
  BestModelState s;
  if (j.contains("best_metric") && j["best_metric"].is_number()) s.best_metric = j["best_metric"].get<double>();
  s.best_step = j.value("best_step", int64_t{0});
  s.patience_counter = j.value("early_stopping_patience_counter", int64_t{0});
  s.stopped = j.value("stopped_early", false);
  return s;
}

absl::StatusOr<BestModel::Verdict> BestModel::Observe(const EvalStats& e, int64_t step, const FlatParameters& params) {
  Verdict v;
  if (!enabled()) return v;
  FTUNE_ASSIGN_OR_RETURN(const double value, e.Metric(EvalMetricName(*options_.metric)));
  auto better = [&](double a, double b) { return options_.greater_is_better ? a > b : a < b; };
  const std::optional<double> before = state_.best_metric;
  if (options_.early_stopping_patience > 0) {
    if (!before || (better(value, *before) && std::abs(value - *before) > options_.early_stopping_threshold)) {
      state_.patience_counter = 0;
    } else if (++state_.patience_counter >= options_.early_stopping_patience) {
      state_.stopped = v.stop = true;
      LogInfo("early stopping at step %d: %s has not improved on %.6g (step %d) by more than %g for %d evaluations",
              step, EvalMetricName(*options_.metric), *before, state_.best_step, options_.early_stopping_threshold,
              state_.patience_counter);
    }
  }
  if (!before || better(value, *before)) {
    v.improved = true;
    state_.best_metric = value;
    state_.best_step = step;
    if (options_.load_best_model_at_end) Keep(params);
  }
  return v;
}

void BestModel::Keep(const FlatParameters& params) {
  torch::NoGradGuard no_grad;
  const auto& groups = params.groups();
  if (weights_.size() != groups.size()) {
    weights_.clear();
    for (const auto& g : groups) weights_.push_back(torch::empty_like(g.params));
  }
  for (size_t i = 0; i < groups.size(); ++i) weights_[i].copy_(groups[i].params);
}

absl::Status BestModel::Restore(const BestModelState& s, std::vector<torch::Tensor> weights,
                                const FlatParameters& params, int64_t step, const std::string& source) {
  state_ = s;
  weights_ = std::move(weights);
  if (!options_.load_best_model_at_end || !state_.best_metric || !weights_.empty()) return absl::OkStatus();
  if (state_.best_step != step) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s holds no best-model weights (written without --load_best_model_at_end), so the best model of step %d "
        "cannot be restored; resume without --load_best_model_at_end",
        source, state_.best_step));
  }
  Keep(params);  // the best model is the checkpoint's own weights
  return absl::OkStatus();
}

std::vector<torch::Tensor> BestModel::WeightsToSave(int64_t current_step) const {
  if (!state_.best_metric || state_.best_step == current_step) return {};
  return weights_;
}

absl::StatusOr<bool> BestModel::LoadInto(FlatParameters& params, int64_t final_step) const {
  if (!options_.load_best_model_at_end || !state_.best_metric || state_.best_step == final_step) return false;
  auto& groups = params.groups();
  if (weights_.size() != groups.size()) return absl::InternalError("the best model's weights were not kept");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < weights_.size(); ++i) groups[i].params.copy_(weights_[i]);
  LogInfo("loaded the best model: step %d, %s %.6g (load_best_model_at_end)", state_.best_step,
          EvalMetricName(*options_.metric), *state_.best_metric);
  return true;
}

}  // namespace ftune::train
