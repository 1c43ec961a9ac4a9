// Checkpoints for exact resume: everything needed to continue a run as if it had never stopped.
//
// <run>/checkpoints/step-<N>/
//   state.json          the RunState (position, sums, finished epochs), world size and global
//                       batch it was written with, trainable layout, a fingerprint of the frozen
//                       weights, the run's resolved configuration
//   trainer.safetensors flat trainable parameters and AdamW moments per group (fp32), and the best
//                       model's parameters when metric_for_best_model found it at an earlier step
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
#include "nlohmann/json.hpp"
#include "train/flat_params.h"
#include "train/optimizer.h"
#include "train/run_state.h"

namespace ftune::train {

struct CheckpointOptions {
  std::string dir;           // <run>/checkpoints; empty = checkpoints off
  int64_t every_steps = 0;   // 0 = never by step count (HF save_strategy=steps, save_steps)
  bool every_epoch = false;  // HF save_strategy=epoch
  // Complete checkpoints kept (older ones deleted; 0 = keep all), HF's save_total_limit; the one
  // at the best model's step is never deleted.
  int total_limit = 2;
  nlohmann::json run_config;  // stored for humans and for consistency checks
};

// What a checkpoint must agree on with the run that resumes it, besides the trainable layout.
struct CheckpointIdentity {
  int world_size = 1;
  int64_t global_batch = 0;  // batch_size x ranks x gradient_accumulation_steps
  uint64_t seed = 0;
  uint64_t frozen_fingerprint = 0;  // FrozenFingerprint() of the model
};

// When checkpoints are written: every `every_steps` steps (not on an epoch's last step, where the
// epoch-end checkpoint, if any, follows the evaluation) and after each epoch's evaluation.
bool ShouldSave(const CheckpointOptions& o, int64_t global_step, bool epoch_or_run_ends);
bool ShouldSaveAtEpochEnd(const CheckpointOptions& o, bool run_ends);

// Writes a checkpoint of `state` (global sums), `flat`/`optimizer` and, when not empty, `best`
// (the best model's flat parameters, one per group) (call on rank 0 only). Refuses non-finite
// weights. Returns the checkpoint's directory.
absl::StatusOr<std::string> WriteCheckpoint(const FlatParameters& flat, const FlatAdamW& optimizer,
                                            const RunState& state, const CheckpointIdentity& id,
                                            const CheckpointOptions& options,
                                            const std::vector<torch::Tensor>& best = {});

// "auto": the newest complete checkpoint under `checkpoints_dir`, or "" when there is none.
// Otherwise `spec` itself (a step-<N> directory), which must exist.
absl::StatusOr<std::string> ResolveResume(const std::string& spec, const std::string& checkpoints_dir);

// Loads a checkpoint into `flat` and `optimizer` (built for this run), and its best-model
// parameters into `best` (left empty when it has none), and returns the position to continue
// from. Fails clearly when the trainable layout, frozen weights, seed or global batch differ from `id`.
absl::StatusOr<RunState> ReadCheckpoint(const std::string& path, const CheckpointIdentity& id, FlatParameters& flat,
                                        FlatAdamW& optimizer, std::vector<torch::Tensor>* best = nullptr);

// The global batch (examples per optimizer step) a checkpoint was written with.
absl::StatusOr<int64_t> CheckpointGlobalBatch(const std::string& path);

// Drops the metrics.jsonl records written after the step of `checkpoint` (a killed run may have
// logged past it), so a resumed run's log reads as if it had never stopped.
absl::Status TruncateMetricsForResume(const std::string& metrics_path, const std::string& checkpoint);

// Fingerprint of the frozen (requires_grad = false) parameters' names and bytes: resuming onto
// other frozen weights is refused. Reads every frozen byte (~270 MB for distilbert-base).
uint64_t FrozenFingerprint(torch::nn::Module& model);

}  // namespace ftune::train
