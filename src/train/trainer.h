// The training loop: Hugging Face Trainer's defaults and order of operations, spread over MPI ranks.
//
// Per optimizer step, on every rank:
//   zero the flat gradient buffers; forward + backward on each of this rank's
//   gradient_accumulation_steps micro-batches of the global batch, with loss = sum of per-unit
//   losses / units of the whole global batch (examples, or masked tokens: objective.h), so the
//   gradients accumulate, and their SUM over ranks is exactly the gradient of the global batch's
//   mean loss, however the batch is cut into ranks x micro-batches and even when the last batch
//   splits unevenly; sum the trainable gradients over ranks (GradientReducer, during the last
//   micro-batch's backward: only trainable gradients cross the wire); global-norm clip; AdamW;
//   advance the learning-rate schedule.
// Evaluation (after each epoch, or every eval_steps steps) scores every eval example exactly once
// across ranks and sums the counts, so the metrics do not depend on the number of ranks; it feeds
// metric_for_best_model (the best model, kept on the device for load_best_model_at_end) and early
// stopping, all in the checkpoints.
//
// Rooms: objective.h (model, loss, evaluation), run_state.h (position and sums), checkpoint.h
// (the on-disk format and when to save), gradient_reducer.h (communication), flat_params.h +
// optimizer.h (the update), inference.h (evaluation passes), metrics.h (the log). This file
// only sequences them.
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
#include "train/checkpoint.h"
#include "train/flat_params.h"
#include "train/grad_scaler.h"
#include "train/gradient_reducer.h"
#include "train/inference.h"
#include "train/metrics.h"
#include "train/objective.h"
#include "train/optimizer.h"
#include "train/run_state.h"

namespace ftune::train {

// When to evaluate (HF's eval_strategy): never, every eval_steps optimizer steps, or after each epoch.
enum class EvalStrategy { kNo, kSteps, kEpoch };

struct TrainOptions {
  int64_t epochs = 3;                       // num_train_epochs
  int64_t batch_size = 8;                   // per rank and micro-batch (per_device_train_batch_size)
  int64_t gradient_accumulation_steps = 1;  // micro-batches per rank and optimizer step
  int64_t eval_batch_size = 8;              // per rank
  double learning_rate = 5e-5;
  double weight_decay = 0.0;
  AdamWOptions adam;
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;
  LrScheduleOptions lr_schedule;  // lr_scheduler_type (+ lr_scheduler_kwargs)
  double max_grad_norm = 1.0;     // <= 0 disables clipping
  uint64_t seed = 42;
  bool group_by_length = false;
  int64_t logging_steps = 50;
  int64_t max_steps = -1;  // > 0 overrides epochs
  size_t bucket_bytes = 25u << 20;
  int prefetch = 4;
  EvalStrategy eval_strategy = EvalStrategy::kEpoch;
  int64_t eval_steps = 0;  // kSteps: evaluate when global_step % eval_steps == 0
  // The best model (HF's names): the eval metric that decides it ("" = none tracked; EvalStats::Metric
  // names), its direction, and whether the trained model becomes the best one at the end.
  std::string metric_for_best_model;
  bool greater_is_better = true;
  bool load_best_model_at_end = false;
  // HF's EarlyStoppingCallback: stop after `patience` evaluations in a row that do not beat the best
  // metric by more than `threshold` (0 = off; needs metric_for_best_model).
  int64_t early_stopping_patience = 0;
  double early_stopping_threshold = 0.0;
  int64_t pad_token_id = 0;
  // Round every batch's padded length up to a multiple of this (1 = off), never beyond the
  // model's max_position_embeddings: fewer distinct shapes and aligned lengths for GPU kernels.
  int64_t pad_to_multiple_of = 1;
  // head and last_k: compute the frozen bottom's output once (the [CLS] features, or the hidden
  // states entering the first trainable block; eval mode, so without its dropout noise) and train
  // on them; evaluation uses them too (exact).
  bool cache_frozen_features = false;
  // A step whose gradient norm is NaN/Inf never changes the parameters or optimizer state (the
  // update is skipped on the device). Such steps are counted and noticed at the next log line,
  // checkpoint or epoch end: false = the run then stops with an error; true = a warning, go on.
  bool skip_nonfinite = false;
  // Use torch's fused AdamW kernel where LibTorch has it (>= 2.4).
  bool fused_adamw = true;
  // Host-memory transports (MPI) with CPU gradients: start each gradient bucket's all-reduce
  // during the backward pass (GradientReducer), instead of all after it.
  bool overlap_comm = true;
  // --precision=fp16: dynamic loss scaling (GradScaler); a step skipped for overflow is then
  // routine (the scale backs off) and neither stops the run nor warns.
  bool loss_scaling = false;
  GradScalerOptions grad_scaler;
  // Synchronise the device at phase boundaries and time each phase (data, forward, backward,
  // comm, optimizer). Costs some speed on GPUs; for benchmarks.
  bool time_phases = false;

  // Logging cadence: a train record every `logging_steps` steps and on the last of an epoch/run.
  bool ShouldLog(int64_t global_step, bool epoch_or_run_ends) const {
    return global_step % logging_steps == 0 || epoch_or_run_ends;
  }
};

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

// How Fit ended: all epochs done, or stopped by a signal after writing a checkpoint.
enum class Outcome { kFinished, kPreempted };

struct FitResult {
  Outcome outcome = Outcome::kFinished;
  int stop_signal = 0;               // kPreempted: which signal
  std::string checkpoint;            // kPreempted: the checkpoint written
  RunState state;                    // the finished epochs, sums and times
  int64_t skipped_steps = 0;         // updates skipped for non-finite gradients (this session)
  PhaseSeconds phases;               // this rank; when TrainOptions::time_phases
  bool loaded_best = false;          // load_best_model_at_end replaced the final weights (state.best_step's)
  double feature_cache_seconds = 0;  // one-time encoding for --cache_frozen_features (not in train time)

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

  // One optimizer step on this rank's micro-batches (each possibly empty) of a global batch.
  absl::StatusOr<StepStats> Step(absl::Span<const data::HostBatch> micro);
  absl::StatusOr<StepStats> Step(const data::HostBatch& batch) { return Step(absl::MakeConstSpan(&batch, 1)); }

  // The objective's metrics over the whole eval set, identical on every rank.
  absl::StatusOr<EvalStats> Evaluate(const data::TokenDataset& eval);

  // The full run: epochs (or max_steps), logging, evaluation after each epoch; checkpoints per
  // `ckpt`, resuming from `resume_from` (a checkpoint directory) when not empty; stops early,
  // with a checkpoint, when a preemption signal arrives on any rank.
  absl::StatusOr<FitResult> Fit(const data::TokenDataset& train, const data::TokenDataset* eval, MetricsLog* log,
                                const CheckpointOptions& ckpt = {}, const std::string& resume_from = "");

  Objective& objective() { return *objective_; }
  FlatParameters& flat() { return *flat_; }
  FlatAdamW& optimizer() { return *optimizer_; }
  const GradientReducer& reducer() const { return *reducer_; }
  GradScaler* scaler() { return scaler_ ? &*scaler_ : nullptr; }
  const TrainOptions& options() const { return options_; }
  int64_t global_step() const { return global_step_; }

 private:
  class Run;  // the state of one Fit (trainer.cc)

  // True on every rank if any rank received a stop signal (one tiny all-reduce).
  absl::StatusOr<bool> AnyRankStopping();
  InferenceOptions InferenceOptionsForRun();

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
  std::optional<GradScaler> scaler_;  // TrainOptions::loss_scaling
  int64_t global_step_ = 0;
};

}  // namespace ftune::train
