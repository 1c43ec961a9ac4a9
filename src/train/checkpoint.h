// Checkpoints for exact resume: everything needed to continue a run as if it had never stopped.
//
// <run>/checkpoints/step-<N>/
//   state.json          position (epoch, step in epoch, global step), metric accumulators, world
//                       size and global batch it was written with, trainable layout, a fingerprint
//                       of the frozen weights, the run's resolved configuration
//   trainer.safetensors flat trainable parameters and AdamW moments per group (fp32)
// <run>/checkpoints/latest   the name of the newest complete checkpoint ("step-<N>")
//
// Rank 0 writes into a temp directory and renames it into place only when complete, then updates
// `latest` atomically, so a kill at any moment leaves the previous checkpoint intact. Dropout
// randomness is re-seeded from (seed, rank, step) every step, so no RNG state needs saving and a
// resumed CPU run is bit-identical to an uninterrupted one.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "nlohmann/json.hpp"
#include "train/trainer.h"

namespace ftune::train {

struct CheckpointOptions {
  std::string dir;               // <run>/checkpoints; empty = checkpoints off
  int64_t every_steps = 0;       // 0 = never by step count
  bool every_epoch = false;
  int keep_last = 2;             // complete checkpoints kept (older ones deleted); 0 = keep all
  nlohmann::json run_config;     // stored for humans and for consistency checks
};

// Writes a checkpoint of `trainer` at `state` (call on rank 0 only). Returns its directory.
absl::StatusOr<std::string> WriteCheckpoint(Trainer& trainer, const RunState& state, const CheckpointOptions& options,
                                            int world_size);

// "auto": the newest complete checkpoint under `checkpoints_dir`, or "" when there is none.
// Otherwise `spec` itself (a step-<N> directory), which must exist.
absl::StatusOr<std::string> ResolveResume(const std::string& spec, const std::string& checkpoints_dir);

// Loads a checkpoint into a Prepare()d trainer and returns the position to continue from.
// Fails clearly when the trainable layout, frozen weights or global batch differ.
absl::StatusOr<RunState> ReadCheckpoint(Trainer& trainer, const std::string& path, int world_size);

}  // namespace ftune::train
