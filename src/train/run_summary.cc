#include "train/run_summary.h"

#include "absl/strings/str_format.h"
#include "common/files.h"

namespace ftune::train {

using json = nlohmann::json;

double RunSummary::final_eval_accuracy() const {
  double acc = -1;
  for (const auto& e : epochs) {
    if (e.eval && !e.eval->regression) acc = e.eval->accuracy();
  }
  return acc;
}

json RunSummary::ToJson() const {
  json j = {
      {"type", "summary"},
      {"objective", objective},
      {"method", method},
      {"seed", seed},
      {"trainable_parameters", trainable_parameters},
      {"all_parameters", all_parameters},
      {"model",
       {{"model_type", model.model_type},
        {"hidden_size", model.hidden_size},
        {"num_hidden_layers", model.num_hidden_layers},
        {"intermediate_size", model.intermediate_size},
        {"num_attention_heads", model.num_attention_heads}}},
      {"world_size", world_size},
      {"device", device},
      {"precision", precision},
      {"torch", torch},
      {"steps", steps},
      {"train_seconds", train_seconds},
      {"samples_per_second", samples_per_second},
      {"tokens_per_second", tokens_per_second},
      {"padding_fraction", padding_fraction},
      {"comm_bytes_per_step", comm_bytes_per_step},
      {"gradient_comm", gradient_comm},
      {"overlap_comm", overlap_comm},
      {"gradient_buckets", gradient_buckets},
      {"buckets_started_in_backward", buckets_started_in_backward},
      {"comm_seconds", comm_seconds},
      {"comm_share", comm_share},
      {"feature_cache", feature_cache},
      {"feature_cache_seconds", feature_cache_seconds},
      {"fused_adamw", fused_adamw},
      {"skipped_steps", skipped_steps},
      {"gradient_accumulation_steps", gradient_accumulation_steps},
      {"global_batch", global_batch},
      {"lr_scheduler_type", lr_scheduler_type},
      {"stopped_early", stopped_early},
      {"peak_memory_bytes", peak_memory_bytes},
      {"peak_memory_kind", peak_memory_kind},
  };
  if (step_seconds) {
    const Phases& p = *step_seconds;
    j["step_seconds"] = {{"data", p.data},         {"forward", p.forward}, {"backward", p.backward},
                         {"comm", p.comm},         {"optimizer", p.optimizer}, {"steps", p.steps}};
  }
  json e = json::array();
  for (const auto& r : epochs) e.push_back(r.ToJson());
  j["epochs"] = e;
  if (best_metric) {
    j["metric_for_best_model"] = metric_for_best_model.value_or("");
    j["best_metric"] = *best_metric;
    j["best_step"] = best_step;
    j["model_step"] = model_step;
  }
  return j;
}

absl::StatusOr<RunSummary> RunSummary::FromJson(const json& j, const std::string& source) {
  if (!j.is_object() || !j.contains("method") || !j.contains("epochs") || !j["epochs"].is_array()) {
    return absl::DataLossError(absl::StrFormat("%s is not an ftune results file", source));
  }
  try {
    RunSummary s;
    s.objective = j.value("objective", s.objective);
    s.method = j.at("method").get<std::string>();
    s.seed_recorded = j.contains("seed") && j["seed"].is_number_unsigned();
    if (s.seed_recorded) s.seed = j["seed"].get<uint64_t>();
    s.trainable_parameters = j.value("trainable_parameters", int64_t{0});
    s.all_parameters = j.value("all_parameters", int64_t{0});
    if (j.contains("model") && j["model"].is_object()) {
      const json& m = j["model"];
      s.model.model_type = m.value("model_type", std::string("distilbert"));  // before other families
      // Results of earlier versions name the shape as DistilBERT does.
      s.model.hidden_size = m.value("hidden_size", m.value("dim", s.model.hidden_size));
      s.model.num_hidden_layers = m.value("num_hidden_layers", m.value("n_layers", s.model.num_hidden_layers));
      s.model.intermediate_size = m.value("intermediate_size", m.value("hidden_dim", s.model.intermediate_size));
      s.model.num_attention_heads = m.value("num_attention_heads", m.value("n_heads", s.model.num_attention_heads));
    }
    s.world_size = j.value("world_size", 1);
    s.device = j.value("device", s.device);
    s.precision = j.value("precision", s.precision);
    s.torch = j.value("torch", s.torch);
    s.steps = j.value("steps", int64_t{0});
    s.train_seconds = j.value("train_seconds", 0.0);
    s.samples_per_second = j.value("samples_per_second", 0.0);
    s.tokens_per_second = j.value("tokens_per_second", 0.0);
    s.padding_fraction = j.value("padding_fraction", 0.0);
    s.comm_bytes_per_step = j.value("comm_bytes_per_step", uint64_t{0});
    s.gradient_comm = j.value("gradient_comm", s.gradient_comm);
    s.overlap_comm = j.value("overlap_comm", false);
    s.gradient_buckets = j.value("gradient_buckets", int64_t{0});
    s.buckets_started_in_backward = j.value("buckets_started_in_backward", 0.0);
    s.comm_seconds = j.value("comm_seconds", 0.0);
    s.comm_share = j.value("comm_share", 0.0);
    s.feature_cache = j.value("feature_cache", false);
    s.feature_cache_seconds = j.value("feature_cache_seconds", 0.0);
    s.fused_adamw = j.value("fused_adamw", false);
    s.skipped_steps = j.value("skipped_steps", int64_t{0});
    s.gradient_accumulation_steps = j.value("gradient_accumulation_steps", int64_t{1});
    s.global_batch = j.value("global_batch", int64_t{0});
    s.lr_scheduler_type = j.value("lr_scheduler_type", s.lr_scheduler_type);
    s.stopped_early = j.value("stopped_early", false);
    s.peak_memory_bytes = j.value("peak_memory_bytes", int64_t{0});
    s.peak_memory_kind = j.value("peak_memory_kind", s.peak_memory_kind);
    if (j.contains("step_seconds") && j["step_seconds"].is_object()) {
      const json& p = j["step_seconds"];
      s.step_seconds = Phases{p.value("data", 0.0),      p.value("forward", 0.0),   p.value("backward", 0.0),
                              p.value("comm", 0.0),      p.value("optimizer", 0.0), p.value("steps", int64_t{0})};
    }
    for (const json& e : j["epochs"]) {
      FTUNE_ASSIGN_OR_RETURN(EpochRecord r, EpochRecord::FromJson(e));
      s.epochs.push_back(r);
    }
    if (j.contains("best_metric") && j["best_metric"].is_number()) {
      s.best_metric = j["best_metric"].get<double>();
      s.metric_for_best_model = j.value("metric_for_best_model", std::string());
      s.best_step = j.value("best_step", int64_t{0});
      s.model_step = j.value("model_step", s.steps);
    }
    return s;
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrFormat("%s: not an ftune results file (%s)", source, e.what()));
  }
}

absl::StatusOr<RunSummary> RunSummary::Read(const std::string& path) {
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::DataLossError(absl::StrFormat("%s is not a JSON object", path));
  return FromJson(j, path);
}

}  // namespace ftune::train
