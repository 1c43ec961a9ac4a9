// Evaluation during training: when (HF's eval_strategy / eval_steps), and one pass over the eval
// set that every rank takes part in and any rank's stop signal can interrupt between batches.
// The best model and early stopping are BestModel's decision (best_model.h).
#pragma once

#include <optional>

#include "common/status.h"
#include "data/token_dataset.h"
#include "distributed/communicator.h"
#include "train/inference.h"
#include "train/objective.h"
#include "train/train_options.h"

namespace ftune::train {

class Evaluator {
 public:
  // `eval` may be null (no evaluation at all).
  Evaluator(const EvalOptions& options, const data::TokenDataset* eval) : options_(options), eval_(eval) {}
  bool enabled() const { return eval_ != nullptr && options_.strategy != IntervalStrategy::kNo; }
  const data::TokenDataset* dataset() const { return eval_; }

  // kSteps: after every eval_steps-th step; kEpoch: at each epoch's end.
  bool ShouldEvaluate(const LoopPoint& p) const;

  // The objective's metrics over the whole eval set, identical on every rank (collective).
  // std::nullopt: abandoned at a batch boundary because options.should_stop said so on some rank.
  absl::StatusOr<std::optional<EvalStats>> Run(Objective& objective, dist::Communicator& host,
                                               const InferenceOptions& options) const;

 private:
  EvalOptions options_;
  const data::TokenDataset* eval_;
};

}  // namespace ftune::train
