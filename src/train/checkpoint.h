// Checkpoints for exact resume: everything needed to continue a run as if it had never stopped.
//
// <run>/checkpoints/step-<N>/
//   state.json          the RunState (position, sums, finished epochs, the best model's state), the
//                       world size and global batch it was written with, trainable layout, a
//                       fingerprint of the frozen weights and of the training data, the run's
//                       resolved configuration
//   trainer.safetensors flat trainable parameters and AdamW moments per group (fp32), and the best
//                       model's parameters when metric_for_best_model found it at an earlier step
//   checksums.sha256    SHA-256 of both files (`sha256sum -c` reads it), verified before a resume
// <run>/checkpoints/latest   the name of the newest complete checkpoint ("step-<N>")
//
// Rank 0 writes into a temp directory and renames it into place only when complete, then updates
// `latest` atomically, so a kill at any moment leaves the previous checkpoint intact. Dropout
// randomness is re-seeded from (seed, rank, step) every step, so no RNG state needs saving and a
// resumed CPU run is bit-identical to an uninterrupted one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "distributed/communicator.h"
#include "nlohmann/json.hpp"
#include "train/best_model.h"
#include "train/flat_params.h"
#include "train/grad_scaler.h"
#include "train/optimizer.h"
#include "train/run_state.h"
#include "train/train_options.h"

namespace ftune::train {

struct CheckpointOptions {
  std::string dir;  // <run>/checkpoints; empty = checkpoints off (preemption cannot save either)
  // HF's save_strategy / save_steps: besides preemption (always), every `steps` optimizer steps,
  // or after each epoch's evaluation, and at the end of training (Checkpointer::ShouldSave).
  IntervalStrategy strategy = IntervalStrategy::kNo;
  int64_t steps = 500;
  // Complete checkpoints kept (older ones deleted; 0 = keep all), HF's save_total_limit; the one
  // at the best model's step is never deleted.
  int total_limit = 2;
  nlohmann::json run_config;  // stored for humans and for consistency checks

  absl::Status Validate() const;
  nlohmann::json ToJson() const;  // save_strategy, save_steps, save_total_limit
};

// What a checkpoint must agree on with the run that resumes it, besides the trainable layout.
struct CheckpointIdentity {
  int world_size = 1;
  int64_t global_batch = 0;  // batch_size x ranks x gradient_accumulation_steps
  uint64_t seed = 0;
  uint64_t frozen_fingerprint = 0;  // FrozenFingerprint() of the model
  std::string data_fingerprint;     // the training data's ("" = not checked)
};

// What a checkpoint holds besides the trainable weights and the optimizer's moments.
struct CheckpointState {
  RunState run;                             // position and (global) sums
  BestModelState best;                      // the best model and early stopping
  std::vector<torch::Tensor> best_weights;  // the best step's flat parameters, when not the current ones
  GradScalerState scaler;                   // --precision=fp16
};

// When checkpoints are written, and the collective write itself.
class Checkpointer {
 public:
  explicit Checkpointer(CheckpointOptions options) : options_(std::move(options)) {}
  bool enabled() const { return !options_.dir.empty(); }
  const CheckpointOptions& options() const { return options_; }

  // steps: after every save_steps-th step (at the epoch's end, after its evaluation, when that
  // step ends the epoch); epoch: at each epoch's end. Both also at the end of training, as HF's
  // DefaultFlowCallback does, so the trained weights are on disk before the final save. (Preemption
  // saves regardless.)
  bool ShouldSave(const LoopPoint& p) const;

  // Collective: the sums of every rank go into `state`, rank 0 writes the checkpoint, and every
  // rank learns whether it managed (a failed write never leaves peers training on). Returns the
  // checkpoint's directory.
  absl::StatusOr<std::string> Save(dist::Communicator& host, const RunState& state, const FlatParameters& flat,
                                   const FlatAdamW& optimizer, const GradScaler* scaler, const BestModel& best,
                                   const CheckpointIdentity& id) const;
  // After a resume: reads `path` into the run's parts (ReadCheckpoint) and restores the best model
  // and the scaler; rank 0 keeps the global sums, the other ranks restart theirs from zero.
  absl::StatusOr<RunState> Restore(dist::Communicator& host, const std::string& path, const CheckpointIdentity& id,
                                   FlatParameters& flat, FlatAdamW& optimizer, GradScaler* scaler,
                                   BestModel& best) const;

 private:
  CheckpointOptions options_;
};

// Writes a checkpoint of `state` (global sums) and `flat`/`optimizer` (call on rank 0 only).
// Refuses non-finite weights. Returns the checkpoint's directory.
absl::StatusOr<std::string> WriteCheckpoint(const FlatParameters& flat, const FlatAdamW& optimizer,
                                            const CheckpointState& state, const CheckpointIdentity& id,
                                            const CheckpointOptions& options);

// Checks a checkpoint's files against its checksums.sha256: DataLoss naming the damaged file.
// Checkpoints written before checksums existed pass (with `*unverified` set when given).
absl::Status VerifyCheckpoint(const std::string& path, bool* unverified = nullptr);

// "auto": the newest complete, undamaged checkpoint under `checkpoints_dir` ("" when there is
// none: start fresh); a damaged or incomplete newer one is skipped with a warning that says so.
// Otherwise `spec` itself (a step-<N> directory), which must exist and be undamaged.
absl::StatusOr<std::string> ResolveResume(const std::string& spec, const std::string& checkpoints_dir);

// Loads a checkpoint into `flat` and `optimizer` (built for this run) and returns the rest of
// it (best_weights on the parameters' device, empty when it has none). Fails clearly when the
// trainable layout, frozen weights, training data, seed or global batch differ from `id`.
absl::StatusOr<CheckpointState> ReadCheckpoint(const std::string& path, const CheckpointIdentity& id,
                                               FlatParameters& flat, FlatAdamW& optimizer);

// The global batch (examples per optimizer step) a checkpoint was written with.
absl::StatusOr<int64_t> CheckpointGlobalBatch(const std::string& path);

// Drops the metrics.jsonl records written after the step of `checkpoint` (a killed run may have
// logged past it), so a resumed run's log reads as if it had never stopped.
absl::Status TruncateMetricsForResume(const std::string& metrics_path, const std::string& checkpoint);

// Fingerprint of the frozen (requires_grad = false) parameters' names and bytes: resuming onto
// other frozen weights is refused. Reads every frozen byte (~270 MB for distilbert-base).
uint64_t FrozenFingerprint(torch::nn::Module& model);

}  // namespace ftune::train
