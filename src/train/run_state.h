// Where a run stands, and the sums it reports, with its JSON (part of the checkpoint's state.json,
// results.json's epochs). The best model's state and the loss scaler's are theirs (best_model.h,
// grad_scaler.h); the checkpoint stores all three.
//
// Sums are kept per rank while training (each rank adds its own examples) and made global by
// Totals::SumOverRanks when a number is reported or a checkpoint written. A checkpoint stores
// global sums; after a resume rank 0 carries them and the other ranks start again from zero, so
// the next global sum is right.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/status.h"
#include "distributed/communicator.h"
#include "nlohmann/json.hpp"
#include "train/inference.h"

namespace ftune::train {

// Sums over the examples of a span of training (an epoch, a logging window, the whole run).
struct Totals {
  double loss = 0;  // sum of per-unit losses
  double examples = 0;
  double tokens = 0;         // real tokens
  double padded_tokens = 0;  // tokens fed to the model, padding included
  double units = 0;          // what the loss is averaged over: examples, or masked tokens (MLM)

  Totals& operator+=(const Totals& o);
  double MeanLoss() const { return units > 0 ? loss / units : 0.0; }
  double PaddingFraction() const { return padded_tokens > 0 ? 1.0 - tokens / padded_tokens : 0.0; }
  // The sums of every rank's Totals (collective; identical on every rank).
  absl::StatusOr<Totals> SumOverRanks(dist::Communicator& comm) const;
  // As JSON fields "<prefix>loss", "<prefix>examples", "<prefix>tokens", "<prefix>padded_tokens",
  // "<prefix>units".
  void ToJson(const char* prefix, nlohmann::json* j) const;
  static Totals FromJson(const char* prefix, const nlohmann::json& j);
};

// A finished epoch: its training sums (over all ranks), time, and evaluation when there was one.
struct EpochRecord {
  int64_t epoch = 0;  // 1-based
  int64_t step = 0;   // global step at the end of the epoch
  Totals totals;
  double seconds = 0;  // training time (evaluation excluded)
  std::optional<EvalStats> eval;

  double train_loss() const { return totals.MeanLoss(); }
  double samples_per_second() const { return totals.examples / std::max(seconds, 1e-9); }
  double tokens_per_second() const { return totals.tokens / std::max(seconds, 1e-9); }
  // epoch, step, train_loss, seconds, samples/tokens per second, padding, and the eval_* fields.
  nlohmann::json ToJson() const;
  static absl::StatusOr<EpochRecord> FromJson(const nlohmann::json& j);
};

struct RunState {
  // Position: the next step to take is `step_in_epoch` of 0-based `epoch`.
  int64_t global_step = 0;
  int64_t epoch = 0;
  int64_t step_in_epoch = 0;
  bool eval_pending = false;  // `epoch`'s training is done but its evaluation is not
  // This rank's sums (see the file comment): of `epoch` so far, and since the last log line.
  Totals epoch_totals, window;
  double epoch_seconds = 0;  // training time of `epoch` so far
  // The whole run (finished epochs): global sums and times.
  Totals run_totals;
  double train_seconds = 0;
  double comm_seconds = 0;  // this rank's time blocked in gradient communication
  std::vector<EpochRecord> epochs;

  // Ends the epoch in progress: records it (with `global` = the epoch's sums over all ranks) and
  // moves the position to the start of the next epoch.
  EpochRecord& CloseEpoch(const Totals& global, std::optional<EvalStats> eval);
  double PaddingFraction() const { return run_totals.PaddingFraction(); }

  nlohmann::json ToJson() const;
  static absl::StatusOr<RunState> FromJson(const nlohmann::json& j);
};

}  // namespace ftune::train
