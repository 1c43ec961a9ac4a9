// What a training run is told, as typed option structs grouped like `ftune train --help` (and
// Hugging Face's TrainingArguments, whose names the fields and flags keep). Each struct validates
// itself (Validate: InvalidArgument naming the flag to change) and dumps itself (ToJson: the
// resolved run in run_config.json). The CLI fills them from flags; library code never reads flags.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "train/grad_scaler.h"
#include "train/optimizer.h"

namespace ftune::train {

// HF's eval_strategy (and save_strategy): never, every N optimizer steps, or after each epoch.
enum class IntervalStrategy { kNo, kSteps, kEpoch };
const char* IntervalStrategyName(IntervalStrategy s);  // "no" | "steps" | "epoch"
// Abseil flag marshalling (ADL): --eval_strategy=steps.
bool AbslParseFlag(absl::string_view text, IntervalStrategy* out, std::string* error);
std::string AbslUnparseFlag(IntervalStrategy s);
bool AbslParseFlag(absl::string_view text, LrSchedulerType* out, std::string* error);
std::string AbslUnparseFlag(LrSchedulerType t);

// Where the loop stands, as every periodic concern (logging, evaluation, checkpoints) sees it:
// right after optimizer step `global_step` (kStep), or at the end of an epoch, after its last
// step and before the next epoch (kEpochEnd). `ends`: after a step, that step is the last of its
// epoch or of the run; at an epoch's end, the run ends there (its last step, or stopped early).
struct LoopPoint {
  enum class At { kStep, kEpochEnd };
  At at = At::kStep;
  int64_t global_step = 0;
  bool ends = false;
};

// The global batch and how long: HF's num_train_epochs, max_steps, per_device_train_batch_size,
// gradient_accumulation_steps, group_by_length, seed.
struct DataOptions {
  int64_t epochs = 3;
  int64_t max_steps = -1;                   // > 0 overrides epochs
  int64_t batch_size = 8;                   // per rank and micro-batch
  int64_t gradient_accumulation_steps = 1;  // micro-batches per rank and optimizer step
  uint64_t seed = 42;                       // initialisation, data order and dropout
  bool group_by_length = false;
  // Round every batch's padded length up to a multiple of this (1 = off), never beyond the
  // model's max_position_embeddings: fewer distinct shapes and aligned lengths for GPU kernels.
  int64_t pad_to_multiple_of = 1;
  int64_t pad_token_id = 0;  // the model's (not a flag)
  int prefetch = 4;          // batches read ahead per rank

  absl::Status Validate() const;
  nlohmann::json ToJson() const;
};

// AdamW, its schedule, clipping and loss scaling.
struct OptimizerOptions {
  double learning_rate = 5e-5;
  double weight_decay = 0.0;
  AdamWOptions adam;
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;
  LrScheduleOptions lr_schedule;  // lr_scheduler_type (+ lr_scheduler_kwargs)
  double max_grad_norm = 1.0;     // 0 disables clipping
  bool fused_adamw = true;        // LibTorch's fused kernel where it has one (>= 2.4)
  // A step whose gradient norm is NaN/Inf never changes the parameters or optimizer state (the
  // update is skipped on the device). Such steps are counted and noticed at the next log line,
  // checkpoint or epoch end: false = the run then stops with an error; true = a warning, go on.
  bool skip_nonfinite = false;
  // --precision=fp16: dynamic loss scaling (GradScaler); a step skipped for overflow is then
  // routine (the scale backs off) and neither stops the run nor warns.
  bool loss_scaling = false;
  GradScalerOptions grad_scaler;

  absl::Status Validate() const;
  nlohmann::json ToJson() const;
};

// The eval metric that decides the best model (HF's metric_for_best_model; "eval_" optional):
// classification accuracy, macro_f1; regression mse, pearson, spearmanr; either the loss.
enum class EvalMetric { kAccuracy, kLoss, kMacroF1, kMse, kPearson, kSpearmanr };
const char* EvalMetricName(EvalMetric m);  // "accuracy" | "loss" | "macro_f1" | "mse" | "pearson" | "spearmanr"
// HF's default direction: lower is better for the loss and the MSE.
bool GreaterIsBetter(EvalMetric m);
bool AbslParseFlag(absl::string_view text, EvalMetric* out, std::string* error);
std::string AbslUnparseFlag(EvalMetric m);

// When and how to evaluate, and the best model (HF's names).
struct EvalOptions {
  IntervalStrategy strategy = IntervalStrategy::kEpoch;
  int64_t steps = 0;  // kSteps: evaluate when global_step % steps == 0 (resolved: > 0)
  int64_t batch_size = 8;
  // The best model: tracked when `metric` is set; HF's default direction (greater, but lower for a
  // loss) unless greater_is_better says otherwise.
  std::optional<EvalMetric> metric;
  bool greater_is_better = true;
  bool load_best_model_at_end = false;
  // HF's EarlyStoppingCallback: stop after `patience` evaluations in a row that do not beat the
  // best metric by more than `threshold` (0 = off; needs a metric).
  int64_t early_stopping_patience = 0;
  double early_stopping_threshold = 0.0;

  // `has_eval_data`: an eval set was given (evaluation and the best model need one).
  absl::Status Validate(bool has_eval_data) const;
  nlohmann::json ToJson() const;
};

struct LoggingOptions {
  int64_t logging_steps = 50;
  // Synchronise the device at phase boundaries and time each phase (data, forward, backward,
  // comm, optimizer). Costs some speed on GPUs; for benchmarks.
  bool time_phases = false;

  // After every logging_steps-th step and after the last step of an epoch or of the run.
  bool ShouldLog(const LoopPoint& p) const {
    return p.at == LoopPoint::At::kStep && (p.global_step % logging_steps == 0 || p.ends);
  }
  absl::Status Validate() const;
  nlohmann::json ToJson() const;
};

// Gradient communication.
struct CommOptions {
  size_t bucket_bytes = 25u << 20;
  // Host-memory transports (MPI) with CPU gradients: start each gradient bucket's all-reduce
  // during the backward pass (GradientReducer), instead of all after it.
  bool overlap_comm = true;

  absl::Status Validate() const;
  nlohmann::json ToJson() const;
};

struct TrainOptions {
  DataOptions data;
  OptimizerOptions optimizer;
  EvalOptions eval;
  LoggingOptions logging;
  CommOptions comm;
  // head and last_k: compute the frozen bottom's output once (the head's input features, or the
  // hidden states entering the first trainable block; eval mode, so without its dropout noise) and
  // train on them; evaluation uses them too (exact).
  bool cache_frozen_features = false;

  int64_t global_batch(int world_size) const {
    return data.batch_size * world_size * data.gradient_accumulation_steps;
  }
  absl::Status Validate(bool has_eval_data) const;
  nlohmann::json ToJson() const;
};

}  // namespace ftune::train
