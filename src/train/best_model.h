// The best model and early stopping, as Hugging Face's Trainer keeps them (TrainerState's
// best_metric / best_global_step, load_best_model_at_end, EarlyStoppingCallback): one decision
// after each evaluation, and its state, which checkpoints carry so a resumed run decides as the
// uninterrupted one would. Early stopping is this tracker's decision (Verdict::stop); the loop only
// acts on it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <torch/torch.h>

#include "common/status.h"
#include "nlohmann/json.hpp"
#include "train/flat_params.h"
#include "train/inference.h"
#include "train/train_options.h"

namespace ftune::train {

struct BestModelState {
  std::optional<double> best_metric;  // the best value seen, and the step it was seen at
  int64_t best_step = 0;
  int64_t patience_counter = 0;  // evaluations in a row without enough improvement
  bool stopped = false;          // early stopping ended the run

  // Its fields of state.json (best_metric, best_step, early_stopping_patience_counter, stopped_early).
  void ToJson(nlohmann::json* j) const;
  static BestModelState FromJson(const nlohmann::json& j);
};

class BestModel {
 public:
  explicit BestModel(const EvalOptions& options) : options_(options) {}
  bool enabled() const { return options_.metric.has_value(); }

  struct Verdict {
    bool improved = false;  // this evaluation is the new best (its weights were kept when asked)
    bool stop = false;      // early stopping: no more training
  };
  // After the evaluation `e` at `step`, with `params` the model's trainable weights at that step.
  // HF's order: early stopping compares with the best before this evaluation (it must beat it by
  // more than the threshold), then the best moves on any strict improvement.
  absl::StatusOr<Verdict> Observe(const EvalStats& e, int64_t step, const FlatParameters& params);

  const BestModelState& state() const { return state_; }
  // Restores a checkpoint's state and its copy of the best weights (empty: the checkpoint kept
  // none, so the best model must be its own weights, `params` at `step`; FailedPrecondition naming
  // `source` when load_best_model_at_end needs weights the checkpoint lacks).
  absl::Status Restore(const BestModelState& s, std::vector<torch::Tensor> weights, const FlatParameters& params,
                       int64_t step, const std::string& source);
  // The best step's trainable weights, one per group, when kept (load_best_model_at_end) and they
  // differ from the current ones (the best step is not `current_step`); else empty.
  std::vector<torch::Tensor> WeightsToSave(int64_t current_step) const;
  // load_best_model_at_end: copies the best weights into `params` when a better step than
  // `final_step` exists. Returns whether it did.
  absl::StatusOr<bool> LoadInto(FlatParameters& params, int64_t final_step) const;

 private:
  void Keep(const FlatParameters& params);

  EvalOptions options_;
  BestModelState state_;
  std::vector<torch::Tensor> weights_;  // the best step's flat parameters (load_best_model_at_end)
};

}  // namespace ftune::train
