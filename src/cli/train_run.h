// What `ftune train` is asked to do, typed and validated (train_command.cc makes it from the
// flags), and the run itself (train_run.cc): model and method, data checks, resume, the Trainer,
// the saved model and results.json. The request is also run_config.json.
#pragma once

#include <string>
#include <vector>

#include "cli/run_setup.h"
#include "model/methods.h"
#include "nlohmann/json.hpp"
#include "train/checkpoint.h"
#include "train/objective.h"
#include "train/train_options.h"

namespace ftune::cli {

enum class ReportTo { kNone, kTensorBoard };
bool AbslParseFlag(absl::string_view text, ReportTo* out, std::string* error);
std::string AbslUnparseFlag(ReportTo r);

struct TrainRequest {
  train::ObjectiveKind objective = train::ObjectiveKind::kClassification;
  model::Method method = model::Method::kFull;
  std::string train_data, eval_data, output_dir;
  train::TrainOptions train;
  train::CheckpointOptions checkpoints;  // dir: <output_dir>/checkpoints
  std::string resume;                    // "", "auto" or a checkpoint directory
  bool overwrite = false, save_model = true, merge = false;
  ReportTo report_to = ReportTo::kNone;
  train::ClassificationLoss loss;  // classification
  double mlm_probability = 0.15;   // mlm

  // Cross-field checks that need no file (each names the flags to change).
  absl::Status Validate() const;
  // run_config.json: every resolved setting, flat, under its flag's name (the model and method
  // flags, the runtime and derived values are added by the run).
  nlohmann::json ToJson() const;
};

// Runs `request` on every rank of `run`.
absl::StatusOr<Outcome> RunTrain(RunContext& run, TrainRequest request);

}  // namespace ftune::cli
