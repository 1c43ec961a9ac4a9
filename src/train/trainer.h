// The training engine: Hugging Face Trainer's defaults and order of operations, spread over MPI ranks.
//
// Per optimizer step, on every rank (Trainer::Step):
//   zero the flat gradient buffers; forward + backward on each of this rank's
//   gradient_accumulation_steps micro-batches of the global batch, with loss = sum of per-unit
//   losses / units of the whole global batch (examples, or masked tokens: objective.h), so the
//   gradients accumulate, and their SUM over ranks is exactly the gradient of the global batch's
//   mean loss, however the batch is cut into ranks x micro-batches and even when the last batch
//   splits unevenly; sum the trainable gradients over ranks (GradientReducer, during the last
//   micro-batch's backward: only trainable gradients cross the wire); global-norm clip; AdamW at
//   the schedule's learning rate for that step.
// The run (Trainer::Fit, fit.cc) sequences the periodic concerns around the steps, each deciding
// for itself: logging (LoggingOptions::ShouldLog), evaluation (evaluator.h), the best model and
// early stopping (best_model.h), checkpoints (checkpoint.h), and stop signals (preemption.h).
//
// Rooms: objective.h (model, loss, evaluation), run_state.h (position and sums), checkpoint.h
// (the on-disk format and when to save), gradient_reducer.h (communication), flat_params.h +
// optimizer.h (the update), inference.h (evaluation passes), metrics.h (the log).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/types/span.h"

#include <torch/torch.h>

#include "common/status.h"
#include "data/batch_loader.h"
#include "data/token_dataset.h"
#include "distributed/communicator.h"
#include "model/sequence_classifier.h"
#include "train/best_model.h"
#include "train/checkpoint.h"
#include "train/flat_params.h"
#include "train/grad_scaler.h"
#include "train/gradient_reducer.h"
#include "train/inference.h"
#include "train/metrics.h"
#include "train/objective.h"
#include "train/optimizer.h"
#include "train/run_state.h"
#include "train/train_options.h"

namespace ftune::train {

// Seconds per phase, summed over steps (filled when TrainOptions::time_phases).
struct PhaseSeconds {
  double data = 0, forward = 0, backward = 0, comm = 0, optimizer = 0;
  int64_t steps = 0;
};

// What one step produced. The tensors stay on the device (0-dim) so that a step never waits for
// the device; the accessors read them (and wait).
struct StepStats {
  torch::Tensor loss_sum;   // float64: sum of this rank's per-unit losses
  torch::Tensor grad_norm;  // float32: global gradient norm, before clipping
  torch::Tensor skipped;    // float64: 1 if the gradients were non-finite and the update skipped
  Totals totals;            // this rank's examples, units and tokens (loss: see loss_sum)
  double lr = 0.0;          // learning rate used for this step

  double LossSum() const { return loss_sum.item<double>(); }
  double GradNorm() const { return grad_norm.item<double>(); }
  bool Skipped() const { return skipped.item<double>() != 0.0; }
};

// Why a run stopped training: it did not (all epochs or max_steps done), early stopping (the best
// model's decision), or a stop signal (then a checkpoint was written: resumable).
enum class StopReason { kNone, kEarlyStopping, kSignal };

struct FitResult {
  StopReason stop = StopReason::kNone;
  int stop_signal = 0;               // kSignal: which signal
  std::string checkpoint;            // kSignal: the checkpoint written
  RunState state;                    // the finished epochs, sums and times
  BestModelState best;               // metric_for_best_model: the best step and value
  int64_t skipped_steps = 0;         // updates skipped for non-finite gradients (this session)
  PhaseSeconds phases;               // this rank; when LoggingOptions::time_phases
  bool loaded_best = false;          // load_best_model_at_end replaced the final weights (best.best_step's)
  double feature_cache_seconds = 0;  // one-time encoding for --cache_frozen_features (not in train time)

  bool preempted() const { return stop == StopReason::kSignal; }

  int64_t steps() const { return state.global_step; }
  double samples_per_second() const { return state.run_totals.examples / std::max(state.train_seconds, 1e-9); }
  double tokens_per_second() const { return state.run_totals.tokens / std::max(state.train_seconds, 1e-9); }
};

class Trainer {
 public:
  // `host_comm` (MPI, host memory) carries the scalars: metric sums, stop flags, agreement.
  // `gradient_comm` carries the gradients (NCCL or MPI); nullptr: a single rank, nothing is sent.
  Trainer(std::unique_ptr<Objective> objective, TrainOptions options, dist::Communicator* host_comm,
          dist::Communicator* gradient_comm, torch::Device device);
  // Sequence classification (ClassificationObjective).
  Trainer(model::SequenceClassifier model, TrainOptions options, dist::Communicator* host_comm,
          dist::Communicator* gradient_comm, torch::Device device);
  ~Trainer();

  // Builds the flat buffers (after the trainable set is chosen), makes every rank start from rank
  // 0's trainable values, and creates AdamW and the schedule for `total_steps`.
  absl::Status Prepare(int64_t total_steps);

  // Optimizer step `step` (0-based: it picks the learning rate and seeds dropout, so a resumed run
  // repeats it exactly) on this rank's micro-batches (each possibly empty) of a global batch.
  absl::StatusOr<StepStats> Step(absl::Span<const data::HostBatch> micro, int64_t step);
  absl::StatusOr<StepStats> Step(const data::HostBatch& batch, int64_t step) {
    return Step(absl::MakeConstSpan(&batch, 1), step);
  }

  // The full run: epochs (or max_steps), logging, evaluation, the best model; checkpoints per
  // `ckpt`, resuming from `resume_from` (a checkpoint directory) when not empty; stops early, with
  // a checkpoint, when a preemption signal arrives on any rank. `data_fingerprint` identifies the
  // training data in checkpoints (a resume on other data is refused).
  absl::StatusOr<FitResult> Fit(const data::TokenDataset& train, const data::TokenDataset* eval, MetricsLog* log,
                                const CheckpointOptions& ckpt = {}, const std::string& resume_from = "",
                                const std::string& data_fingerprint = "");

  // Batch size, padding and device for an inference pass (no stop check).
  InferenceOptions InferenceOptionsForRun() const;
  // True on every rank if any rank received a stop signal (one tiny all-reduce).
  absl::StatusOr<bool> AnyRankStopping();

  Objective& objective() { return *objective_; }
  FlatParameters& flat() { return *flat_; }
  const FlatParameters& flat() const { return *flat_; }
  FlatAdamW& optimizer() { return *optimizer_; }
  const GradientReducer& reducer() const { return *reducer_; }
  GradScaler* scaler() { return scaler_ ? &*scaler_ : nullptr; }
  const TrainOptions& options() const { return options_; }
  dist::Communicator& host_comm() { return *host_comm_; }
  // The communicator that carries tensors between ranks (gradients, the feature cache).
  dist::Communicator& tensor_comm() { return gradient_comm_ != nullptr ? *gradient_comm_ : *host_comm_; }
  bool sends_gradients() const { return gradient_comm_ != nullptr; }
  const torch::Device& device() const { return device_; }
  const PhaseSeconds& phases() const { return phases_; }
  PhaseSeconds& phases() { return phases_; }

 private:

  std::unique_ptr<Objective> objective_;
  TrainOptions options_;
  dist::Communicator* host_comm_;
  dist::Communicator* gradient_comm_;
  torch::Device device_;
  PhaseSeconds phases_;
  std::optional<FlatParameters> flat_;
  std::optional<GradientReducer> reducer_;
  std::unique_ptr<FlatAdamW> optimizer_;
  std::optional<LrSchedule> schedule_;
  std::optional<GradScaler> scaler_;  // OptimizerOptions::loss_scaling
};

}  // namespace ftune::train
