#include "train/train_options.h"

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace ftune::train {
namespace {

absl::Status Bad(const std::string& message) { return absl::InvalidArgumentError(message); }

}  // namespace

const char* IntervalStrategyName(IntervalStrategy s) {
  switch (s) {
    case IntervalStrategy::kNo: return "no";
    case IntervalStrategy::kSteps: return "steps";
    case IntervalStrategy::kEpoch: return "epoch";
  }
  return "?";
}

bool AbslParseFlag(absl::string_view text, IntervalStrategy* out, std::string* error) {
  for (IntervalStrategy s : {IntervalStrategy::kNo, IntervalStrategy::kSteps, IntervalStrategy::kEpoch}) {
    if (text == IntervalStrategyName(s)) {
      *out = s;
      return true;
    }
  }
  *error = "not one of no, steps, epoch";
  return false;
}

std::string AbslUnparseFlag(IntervalStrategy s) { return IntervalStrategyName(s); }

bool AbslParseFlag(absl::string_view text, LrSchedulerType* out, std::string* error) {
  auto t = ParseLrSchedulerType(std::string(text));
  if (!t.ok()) {
    *error = std::string(t.status().message());
    const size_t at = error->find("is not one of");
    if (at != std::string::npos) *error = error->substr(at);
    return false;
  }
  *out = *t;
  return true;
}

std::string AbslUnparseFlag(LrSchedulerType t) { return LrSchedulerName(t); }

const char* EvalMetricName(EvalMetric m) {
  switch (m) {
    case EvalMetric::kAccuracy: return "accuracy";
    case EvalMetric::kLoss: return "loss";
    case EvalMetric::kMacroF1: return "macro_f1";
    case EvalMetric::kMse: return "mse";
    case EvalMetric::kPearson: return "pearson";
    case EvalMetric::kSpearmanr: return "spearmanr";
  }
  return "?";
}

bool GreaterIsBetter(EvalMetric m) { return m != EvalMetric::kLoss && m != EvalMetric::kMse; }

bool AbslParseFlag(absl::string_view text, EvalMetric* out, std::string* error) {
  absl::string_view name = text;
  absl::ConsumePrefix(&name, "eval_");
  for (EvalMetric m : {EvalMetric::kAccuracy, EvalMetric::kLoss, EvalMetric::kMacroF1, EvalMetric::kMse,
                       EvalMetric::kPearson, EvalMetric::kSpearmanr}) {
    if (name == EvalMetricName(m)) {
      *out = m;
      return true;
    }
  }
  *error = "not one of accuracy, loss, macro_f1, mse, pearson, spearmanr (with or without the eval_ prefix)";
  return false;
}

std::string AbslUnparseFlag(EvalMetric m) { return EvalMetricName(m); }

absl::Status DataOptions::Validate() const {
  if (batch_size <= 0) return Bad(absl::StrFormat("--batch_size must be > 0 (got %d)", batch_size));
  if (epochs <= 0 && max_steps <= 0) return Bad("--epochs must be > 0 (or set --max_steps)");
  if (max_steps == 0 || max_steps < -1) {
    return Bad(absl::StrFormat("--max_steps must be > 0, or -1 for --epochs (got %d)", max_steps));
  }
  if (gradient_accumulation_steps <= 0) {
    return Bad(absl::StrFormat("--gradient_accumulation_steps must be > 0 (got %d)", gradient_accumulation_steps));
  }
  if (pad_to_multiple_of < 1 || pad_to_multiple_of > 512) {
    return Bad(absl::StrFormat("--pad_to_multiple_of must be in [1, 512] (got %d)", pad_to_multiple_of));
  }
  return absl::OkStatus();
}

nlohmann::json DataOptions::ToJson() const {
  return {{"epochs", epochs},
          {"max_steps", max_steps},
          {"batch_size", batch_size},
          {"gradient_accumulation_steps", gradient_accumulation_steps},
          {"seed", seed},
          {"group_by_length", group_by_length},
          {"pad_to_multiple_of", pad_to_multiple_of}};
}

absl::Status OptimizerOptions::Validate() const {
  if (!(learning_rate > 0) || !std::isfinite(learning_rate)) {
    return Bad(absl::StrFormat("--learning_rate must be > 0 (got %g)", learning_rate));
  }
  if (!(weight_decay >= 0)) return Bad(absl::StrFormat("--weight_decay must be >= 0 (got %g)", weight_decay));
  if (!(adam.beta1 >= 0 && adam.beta1 < 1)) return Bad(absl::StrFormat("--adam_beta1 must be in [0, 1) (got %g)", adam.beta1));
  if (!(adam.beta2 >= 0 && adam.beta2 < 1)) return Bad(absl::StrFormat("--adam_beta2 must be in [0, 1) (got %g)", adam.beta2));
  if (!(adam.eps > 0)) return Bad(absl::StrFormat("--adam_epsilon must be > 0 (got %g)", adam.eps));
  if (warmup_steps < 0) return Bad(absl::StrFormat("--warmup_steps must be >= 0 (got %d)", warmup_steps));
  if (!(warmup_ratio >= 0 && warmup_ratio < 1)) {
    return Bad(absl::StrFormat("--warmup_ratio must be in [0, 1) (got %g)", warmup_ratio));
  }
  if (!(max_grad_norm >= 0) || !std::isfinite(max_grad_norm)) {
    return Bad(absl::StrFormat("--max_grad_norm must be >= 0 (0 = no clipping; got %g)", max_grad_norm));
  }
  return absl::OkStatus();
}

nlohmann::json OptimizerOptions::ToJson() const {
  nlohmann::json kwargs = nlohmann::json::object();
  if (lr_schedule.num_cycles) kwargs["num_cycles"] = *lr_schedule.num_cycles;
  if (lr_schedule.type == LrSchedulerType::kPolynomial) {
    kwargs["power"] = lr_schedule.power;
    kwargs["lr_end"] = lr_schedule.lr_end;
  }
  return {{"learning_rate", learning_rate},
          {"weight_decay", weight_decay},
          {"adam_beta1", adam.beta1},
          {"adam_beta2", adam.beta2},
          {"adam_epsilon", adam.eps},
          {"warmup_steps", warmup_steps},
          {"warmup_ratio", warmup_ratio},
          {"lr_scheduler_type", LrSchedulerName(lr_schedule.type)},
          {"lr_scheduler_kwargs", kwargs},
          {"max_grad_norm", max_grad_norm},
          {"fused_adamw", fused_adamw},
          {"skip_nonfinite", skip_nonfinite},
          {"loss_scaling", loss_scaling}};
}

absl::Status EvalOptions::Validate(bool has_eval_data) const {
  if (batch_size <= 0) return Bad(absl::StrFormat("--eval_batch_size must be > 0 (got %d)", batch_size));
  if (strategy == IntervalStrategy::kSteps && steps <= 0) {
    return Bad(absl::StrFormat("--eval_steps must be > 0 (got %d)", steps));
  }
  if (strategy != IntervalStrategy::kNo && !has_eval_data) {
    // HF refuses it too ("evaluation strategy ... requires either defining an eval_dataset").
    return Bad(absl::StrFormat("--eval_strategy=%s needs --eval_data (or pass --eval_strategy=no)",
                               IntervalStrategyName(strategy)));
  }
  if (early_stopping_patience < 0) {
    return Bad(absl::StrFormat("--early_stopping_patience must be >= 0 (got %d)", early_stopping_patience));
  }
  if (!(early_stopping_threshold >= 0)) {
    return Bad(absl::StrFormat("--early_stopping_threshold must be >= 0 (got %g)", early_stopping_threshold));
  }
  if (metric && (!has_eval_data || strategy == IntervalStrategy::kNo)) {
    return Bad(absl::StrFormat(
        "--metric_for_best_model=%s (or --load_best_model_at_end / --early_stopping_patience) needs --eval_data and "
        "an --eval_strategy other than no",
        EvalMetricName(*metric)));
  }
  if ((load_best_model_at_end || early_stopping_patience > 0) && !metric) {
    return Bad("--load_best_model_at_end and --early_stopping_patience need a --metric_for_best_model");
  }
  return absl::OkStatus();
}

nlohmann::json EvalOptions::ToJson() const {
  return {{"eval_strategy", IntervalStrategyName(strategy)},
          {"eval_steps", steps},
          {"eval_batch_size", batch_size},
          {"metric_for_best_model", metric ? nlohmann::json(EvalMetricName(*metric)) : nlohmann::json(nullptr)},
          {"greater_is_better", greater_is_better},
          {"load_best_model_at_end", load_best_model_at_end},
          {"early_stopping_patience", early_stopping_patience},
          {"early_stopping_threshold", early_stopping_threshold}};
}

absl::Status LoggingOptions::Validate() const {
  if (logging_steps <= 0) return Bad(absl::StrFormat("--logging_steps must be > 0 (got %d)", logging_steps));
  return absl::OkStatus();
}

nlohmann::json LoggingOptions::ToJson() const {
  return {{"logging_steps", logging_steps}, {"time_phases", time_phases}};
}

absl::Status CommOptions::Validate() const {
  if (bucket_bytes < 1024) return Bad(absl::StrFormat("--bucket_mb must be at least 1 KiB (got %d bytes)", bucket_bytes));
  return absl::OkStatus();
}

nlohmann::json CommOptions::ToJson() const {
  return {{"bucket_mb", static_cast<double>(bucket_bytes) / (1 << 20)}, {"overlap_comm", overlap_comm}};
}

absl::Status TrainOptions::Validate(bool has_eval_data) const {
  FTUNE_RETURN_IF_ERROR(data.Validate());
  FTUNE_RETURN_IF_ERROR(optimizer.Validate());
  FTUNE_RETURN_IF_ERROR(eval.Validate(has_eval_data));
  FTUNE_RETURN_IF_ERROR(logging.Validate());
  return comm.Validate();
}

nlohmann::json TrainOptions::ToJson() const {
  nlohmann::json j = data.ToJson();
  j.update(optimizer.ToJson());
  j.update(eval.ToJson());
  j.update(logging.ToJson());
  j.update(comm.ToJson());
  j["cache_frozen_features"] = cache_frozen_features;
  return j;
}

}  // namespace ftune::train
