// The training loop: Hugging Face Trainer's defaults and order of operations, spread over MPI ranks.
//
// Per optimizer step, on every rank:
//   zero the flat gradient buffers; forward + backward on this rank's slice of the global batch
//   with loss = sum of cross-entropies / global batch size (so the SUM over ranks of the gradients
//   is exactly the gradient of the global batch's mean loss, even when the last batch splits
//   unevenly); all-reduce the trainable gradients (only they cross the wire); global-norm clip;
//   AdamW; advance the linear schedule.
// After each epoch every eval example is scored exactly once across ranks and the counts are
// summed, so accuracy does not depend on the number of ranks.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/status.h"
#include "data/batch_loader.h"
#include "data/token_dataset.h"
#include "distributed/communicator.h"
#include "model/distilbert.h"
#include "train/flat_params.h"
#include "train/inference.h"
#include "train/metrics.h"
#include "train/optimizer.h"

namespace ftune::train {

struct CheckpointOptions;  // checkpoint.h

struct TrainOptions {
  int64_t epochs = 3;            // num_train_epochs
  int64_t batch_size = 8;        // per rank (per_device_train_batch_size)
  int64_t eval_batch_size = 8;   // per rank
  double learning_rate = 5e-5;
  double weight_decay = 0.0;
  AdamWOptions adam;
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;
  double max_grad_norm = 1.0;    // <= 0 disables clipping
  uint64_t seed = 42;
  bool group_by_length = false;
  int64_t logging_steps = 50;
  int64_t max_steps = -1;        // > 0 overrides epochs
  size_t bucket_bytes = 25u << 20;
  int prefetch = 4;
  bool eval_each_epoch = true;
  int64_t pad_token_id = 0;
  // Round every batch's padded length up to a multiple of this (1 = off), never beyond the
  // model's max_position_embeddings: fewer distinct shapes and aligned lengths for GPU kernels.
  int64_t pad_to_multiple_of = 1;
  // head only: compute the frozen encoder's [CLS] features once (eval mode, so without the
  // encoder's dropout noise) and train the head on them; evaluation uses them too (exact).
  bool cache_frozen_features = false;
  // A step whose gradient norm is NaN/Inf never changes the parameters or optimizer state (the
  // update is skipped on the device). Such steps are counted and noticed at the next log line,
  // checkpoint or epoch end: false = the run then stops with an error; true = a warning, go on.
  bool skip_nonfinite = false;
  // Use torch's fused AdamW kernel where LibTorch has it (>= 2.4).
  bool fused_adamw = true;
  // CPU ranks over MPI: start each gradient bucket's all-reduce during the backward pass, as soon
  // as its gradients are in (FlatParameters::EnableOverlap), instead of all after it.
  bool overlap_comm = true;
  // Synchronise the device at phase boundaries and time each phase (data, forward, backward,
  // comm, optimizer). Costs some speed on GPUs; for benchmarks.
  bool time_phases = false;
};

// Seconds per phase, summed over steps (filled when TrainOptions::time_phases).
struct PhaseSeconds {
  double data = 0, forward = 0, backward = 0, comm = 0, optimizer = 0;
  int64_t steps = 0;
};

// What one step produced. The tensors stay on the device (0-dim) so that a step never waits for
// the device; the accessors read them (and wait).
struct StepStats {
  torch::Tensor loss_sum;   // float64: sum of this rank's per-example losses
  torch::Tensor grad_norm;  // float32: global gradient norm, before clipping
  torch::Tensor skipped;    // float64: 1 if the gradients were non-finite and the update skipped
  int64_t examples = 0;     // this rank's examples
  int64_t tokens = 0;       // this rank's real (non-padding) tokens
  int64_t padded_tokens = 0;  // this rank's tokens including padding (rows x padded length)
  double lr = 0.0;          // learning rate used for this step
  double comm_seconds = 0.0;
  uint64_t comm_bytes = 0;

  double LossSum() const { return loss_sum.item<double>(); }
  double GradNorm() const { return grad_norm.item<double>(); }
  bool Skipped() const { return skipped.item<double>() != 0.0; }
};

struct EpochRecord {
  int64_t epoch = 0;       // 1-based
  int64_t step = 0;        // global step at the end of the epoch
  double train_loss = 0;   // mean over the epoch's examples
  double seconds = 0;      // training time (eval excluded)
  double samples_per_second = 0;
  double tokens_per_second = 0;
  double tokens = 0;            // real tokens, all ranks
  double padded_tokens = 0;     // tokens fed to the model (padding included), all ranks
  double padding_fraction() const { return padded_tokens > 0 ? 1.0 - tokens / padded_tokens : 0.0; }
  std::optional<EvalStats> eval;
};

// Where a run stands: all a checkpoint needs besides the weights and optimizer moments.
struct RunState {
  int64_t global_step = 0;
  int64_t epoch = 0;          // 0-based epoch in progress
  int64_t step_in_epoch = 0;  // steps of `epoch` already taken
  bool eval_pending = false;  // `epoch`'s training is done but its evaluation is not
  // Sums over all ranks: this epoch's loss/examples/tokens, and loss/examples since the last log.
  double epoch_loss = 0, epoch_examples = 0, epoch_tokens = 0, epoch_padded_tokens = 0;
  double window_loss = 0, window_examples = 0;
  double epoch_seconds = 0;   // training time of `epoch` so far
  double train_seconds = 0, comm_seconds = 0;
  double examples_total = 0, tokens_total = 0;
  std::vector<EpochRecord> epochs;  // finished epochs
};

struct FitResult {
  bool preempted = false;  // stopped by a signal after writing a checkpoint
  int stop_signal = 0;
  std::string checkpoint;  // the checkpoint written when preempted
  std::vector<EpochRecord> epochs;
  int64_t steps = 0;
  double train_seconds = 0;          // excluding evaluation
  double samples_per_second = 0;
  double tokens_per_second = 0;
  uint64_t comm_bytes_per_step = 0;  // gradient bytes all-reduced per step, per rank
  double comm_seconds = 0;           // time in gradient all-reduce, this rank
  int64_t trainable_parameters = 0;
  int64_t skipped_steps = 0;         // updates skipped for non-finite gradients (this session)
  double padding_fraction = 0;       // over all epochs of this session
  PhaseSeconds phases;               // this rank; when TrainOptions::time_phases
  double feature_cache_seconds = 0;  // one-time encoding for --cache_frozen_features (not in train_seconds)
};

class Trainer {
 public:
  // `comm` carries the gradients (NCCL or MPI); `host_comm` (MPI, host memory) the scalars: metrics,
  // stop flags, agreement. nullptr: `comm` does both (MPI runs).
  Trainer(model::DistilBertForSequenceClassification model, TrainOptions options, dist::Communicator* comm,
          torch::Device device, dist::Communicator* host_comm = nullptr);

  // Builds the flat buffers (after the trainable set is chosen), makes every rank start from rank
  // 0's trainable values, and creates AdamW and the schedule for `total_steps`.
  absl::Status Prepare(int64_t total_steps);

  // One optimizer step on this rank's slice (possibly empty) of a global batch.
  absl::StatusOr<StepStats> Step(const data::HostBatch& batch);

  // Accuracy and mean loss over the whole eval set, identical on every rank.
  absl::StatusOr<EvalStats> Evaluate(const data::TokenDataset& eval);

  // The full run: epochs (or max_steps), logging, evaluation after each epoch; checkpoints per
  // `ckpt`, resuming from `resume_from` (a checkpoint directory) when not empty; stops early,
  // with a checkpoint, when a preemption signal arrives on any rank.
  absl::StatusOr<FitResult> Fit(const data::TokenDataset& train, const data::TokenDataset* eval, MetricsLog* log,
                                const CheckpointOptions* ckpt = nullptr, const std::string& resume_from = "");

  // Fingerprint of the frozen parameters (to refuse resuming onto different weights).
  uint64_t FrozenFingerprint();
  FlatAdamW& optimizer() { return *optimizer_; }
  void set_global_step(int64_t s) { global_step_ = s; }
  int rank() const { return comm_->rank(); }
  const PhaseSeconds& phases() const { return phases_; }

  FlatParameters& flat() { return *flat_; }
  int64_t global_step() const { return global_step_; }
  const TrainOptions& options() const { return options_; }
  model::DistilBertForSequenceClassification& model() { return model_; }

 private:
  torch::Tensor Forward(const torch::Tensor& ids, const torch::Tensor& mask);
  torch::Tensor ToDevice(const std::vector<int64_t>& host, std::vector<int64_t> shape) const;
  absl::Status SumOverRanks(double* values, int n);
  // True on every rank if any rank received a stop signal (one tiny all-reduce).
  absl::StatusOr<bool> AnyRankStopping();
  absl::StatusOr<std::string> Checkpoint(RunState& state, const CheckpointOptions& ckpt);

  model::DistilBertForSequenceClassification model_;
  TrainOptions options_;
  dist::Communicator* comm_;
  dist::Communicator* host_comm_;
  torch::Device device_;
  PhaseSeconds phases_;
  bool encoder_frozen_ = false;
  std::optional<FlatParameters> flat_;
  std::unique_ptr<FlatAdamW> optimizer_;
  std::unique_ptr<LinearSchedule> schedule_;
  int64_t global_step_ = 0;
  std::optional<uint64_t> frozen_fingerprint_;
  torch::Tensor train_features_, eval_features_;  // feature cache (head), [N, dim]
  const data::TokenDataset* eval_features_of_ = nullptr;
};

}  // namespace ftune::train
