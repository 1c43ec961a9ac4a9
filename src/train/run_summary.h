// results.json: what a finished training run reports, as one type. `ftune train` writes it (and as
// the last record of metrics.jsonl); `ftune report` and `ftune report --bench` read it. FromJson
// also reads the results of earlier ftune versions (the model's shape under DistilBERT's names).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "nlohmann/json.hpp"
#include "train/run_state.h"

namespace ftune::train {

struct RunSummary {
  std::string objective = "classification";  // classification | mlm
  std::string method = "full";
  uint64_t seed = 42;
  bool seed_recorded = true;  // false: results of an older ftune, which kept the seed in run_config.json
  int64_t trainable_parameters = 0, all_parameters = 0;
  struct Model {
    std::string model_type;
    int64_t hidden_size = 768, num_hidden_layers = 6, intermediate_size = 3072, num_attention_heads = 12;
  } model;
  int world_size = 1;
  std::string device = "cpu", precision = "fp32", torch;
  int64_t steps = 0;
  double train_seconds = 0, samples_per_second = 0, tokens_per_second = 0, padding_fraction = 0;
  // Gradient communication.
  uint64_t comm_bytes_per_step = 0;
  std::string gradient_comm;
  bool overlap_comm = false;
  int64_t gradient_buckets = 0;
  double buckets_started_in_backward = 0;  // per step
  double comm_seconds = 0, comm_share = 0;
  bool feature_cache = false;
  double feature_cache_seconds = 0;
  bool fused_adamw = false;
  int64_t skipped_steps = 0;
  int64_t gradient_accumulation_steps = 1, global_batch = 0;
  std::string lr_scheduler_type = "linear";
  bool stopped_early = false;
  int64_t peak_memory_bytes = 0;
  std::string peak_memory_kind = "rss";  // rss (CPU) | cuda
  // --time_phases: mean seconds per step of each phase.
  struct Phases {
    double data = 0, forward = 0, backward = 0, comm = 0, optimizer = 0;
    int64_t steps = 0;
  };
  std::optional<Phases> step_seconds;
  std::vector<EpochRecord> epochs;
  // metric_for_best_model: the best evaluation, and which weights model/ holds (the best step's
  // with load_best_model_at_end, else the last step's).
  std::optional<std::string> metric_for_best_model;
  std::optional<double> best_metric;
  int64_t best_step = 0, model_step = 0;

  // The last epoch's eval accuracy (-1 without an evaluation).
  double final_eval_accuracy() const;

  nlohmann::json ToJson() const;
  // DataLoss naming `source` when it is not an ftune results file.
  static absl::StatusOr<RunSummary> FromJson(const nlohmann::json& j, const std::string& source);
  static absl::StatusOr<RunSummary> Read(const std::string& path);
};

}  // namespace ftune::train
