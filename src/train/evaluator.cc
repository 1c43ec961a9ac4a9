#include "train/evaluator.h"

namespace ftune::train {

bool Evaluator::ShouldEvaluate(const LoopPoint& p) const {
  if (!enabled()) return false;
  switch (options_.strategy) {
    case IntervalStrategy::kSteps: return p.at == LoopPoint::At::kStep && p.global_step % options_.steps == 0;
    case IntervalStrategy::kEpoch: return p.at == LoopPoint::At::kEpochEnd;
    case IntervalStrategy::kNo: return false;
  }
  return false;
}

absl::StatusOr<std::optional<EvalStats>> Evaluator::Run(Objective& objective, dist::Communicator& host,
                                                        const InferenceOptions& options) const {
  absl::StatusOr<EvalStats> e = objective.Evaluate(*eval_, host, options);
  if (absl::IsCancelled(e.status())) return std::optional<EvalStats>();
  FTUNE_RETURN_IF_ERROR(e.status());
  return std::optional<EvalStats>(*e);
}

}  // namespace ftune::train
