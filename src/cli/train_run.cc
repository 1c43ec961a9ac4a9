#include "cli/train_run.h"

#include <cmath>
#include <cstdio>
#include <map>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/shared_flags.h"
#include "common/files.h"
#include "common/log.h"
#include "common/torch_compat.h"
#include "data-prep/wordpiece_tokenizer.h"
#include "model/hf_checkpoint.h"
#include "model/peft_adapter.h"
#include "model/repr.h"
#include "train/run_summary.h"
#include "train/trainer.h"

namespace ftune::cli {
namespace {

absl::Status Bad(const std::string& message) { return absl::InvalidArgumentError(message); }

// The model a run trains, whatever the objective: built with its trainable set, checked against
// the data, and how rank 0 saves it at the end.
struct Trainee {
  std::unique_ptr<train::Objective> objective;
  model::ModelConfig config;
  int64_t trainable = 0, total = 0;
  nlohmann::json method_options = nlohmann::json::object();  // resolved method options (run_config.json)
  std::function<absl::Status(const std::string& dir)> save;
  std::string saved_what;  // for the log: "model", "PEFT adapter"
};

// The eval metrics a classifier reports on `train`'s kind of labels.
absl::Status CheckMetricFits(const TrainRequest& r, const data::TokenDataset& train) {
  if (!r.train.eval.metric) return absl::OkStatus();
  using M = train::EvalMetric;
  const M m = *r.train.eval.metric;
  const bool regression_metric = m == M::kMse || m == M::kPearson || m == M::kSpearmanr;
  const bool class_metric = m == M::kAccuracy || m == M::kMacroF1;
  if (train.is_regression() ? class_metric : regression_metric) {
    return Bad(absl::StrFormat("--metric_for_best_model=%s does not apply to %s's %s labels (%s)",
                               train::EvalMetricName(m), train.path(), train.is_regression() ? "float" : "class",
                               train.is_regression() ? "mse, pearson, spearmanr, loss" : "accuracy, macro_f1, loss"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Trainee> BuildClassifier(RunContext& run, const TrainRequest& r, const data::TokenDataset& train,
                                        const data::TokenDataset* eval) {
  FTUNE_RETURN_IF_ERROR(CheckMetricFits(r, train));
  // Float labels: one output (HF's problem_type "regression"), unless --num_labels says otherwise.
  FTUNE_ASSIGN_OR_RETURN(model::LoadedModel loaded,
                         LoadModelFromFlags(run.model_options(), train.is_regression() ? 1 : 0));
  FTUNE_RETURN_IF_ERROR(CheckDataFitsModel(loaded, train));
  if (eval != nullptr) FTUNE_RETURN_IF_ERROR(CheckDataFitsModel(loaded, *eval));
  AdoptLabelNames(loaded, train);
  const model::MethodOptions options = MethodOptionsFromFlags(loaded.model->family());
  FTUNE_RETURN_IF_ERROR(model::SelectTrainable(*loaded.model, r.method, options));
  if (!loaded.report.loaded.empty()) LogInfo("model: %s: %s", loaded.source, loaded.report.Summary());
  Trainee t;
  t.config = loaded.model->config();
  t.trainable = model::CountTrainableParameters(*loaded.model);
  t.total = model::CountAllParameters(*loaded.model);
  t.method_options = {{"lora_targets", options.lora.targets},
                      {"ia3_targets", options.ia3.targets},
                      {"ia3_feedforward", options.ia3.feedforward}};
  const bool adapter = model::IsAdapterMethod(r.method) && !r.merge;
  t.saved_what = adapter ? "PEFT adapter" : "model";
  t.save = [model = loaded.model, options, adapter, source = loaded.source](const std::string& dir) {
    if (adapter) return model::SaveAdapter(*model, options, source, dir);
    model::MergeAdapters(*model);
    return model::SavePretrained(*model, dir);
  };
  FTUNE_ASSIGN_OR_RETURN(t.objective,
                         train::ClassificationObjective::Create(loaded.model, r.loss, train.is_regression()));
  return t;
}

// The special tokens masking needs, from the vocabulary the data was made with (checked).
absl::StatusOr<data::MaskingOptions> MaskingFor(const TrainRequest& r, int64_t vocab_size,
                                                std::initializer_list<const data::TokenDataset*> data) {
  std::string vocab = absl::GetFlag(FLAGS_vocab);
  if (vocab.empty() && !absl::GetFlag(FLAGS_model_dir).empty()) vocab = absl::GetFlag(FLAGS_model_dir) + "/vocab.txt";
  if (vocab.empty() || !PathExists(vocab)) {
    return Bad(
        "--objective=mlm needs the vocabulary for its [MASK], [CLS], [SEP] and [PAD] ids: pass --vocab=vocab.txt "
        "(or a --model_dir that has one)");
  }
  FTUNE_ASSIGN_OR_RETURN(prep::WordPieceTokenizer tok, prep::WordPieceTokenizer::FromVocabFile(vocab));
  if (tok.mask_id() < 0) return absl::FailedPreconditionError(absl::StrFormat("%s has no [MASK] token", vocab));
  for (const data::TokenDataset* ds : data) {
    if (ds != nullptr) FTUNE_RETURN_IF_ERROR(ds->CheckVocab(tok.vocab_sha256(), tok.vocab_size()));
  }
  data::MaskingOptions m;
  m.probability = r.mlm_probability;
  m.mask_id = tok.mask_id();
  m.vocab_size = vocab_size;
  m.never_mask = {tok.cls_id(), tok.sep_id(), tok.pad_id()};
  m.seed = r.train.data.seed;
  return m;
}

absl::StatusOr<Trainee> BuildMaskedLm(RunContext& run, const TrainRequest& r, const data::TokenDataset& train,
                                      const data::TokenDataset* eval) {
  const std::string dir = absl::GetFlag(FLAGS_model_dir), config_path = absl::GetFlag(FLAGS_model_config);
  if (!dir.empty() && !config_path.empty()) {
    return Bad("give --model_dir (continue pretraining) or --model_config (from scratch), not both");
  }
  model::LoadedMaskedLm m;
  if (!dir.empty()) {
    FTUNE_ASSIGN_OR_RETURN(m, model::LoadMaskedLm(dir, run.model_options()));
    LogInfo("model: %s: %s", m.source, m.report.Summary());
  } else if (!config_path.empty()) {
    FTUNE_ASSIGN_OR_RETURN(m, model::BuildMaskedLmFromConfigFile(config_path, run.model_options()));
  } else {
    FTUNE_ASSIGN_OR_RETURN(m, model::BuildDefaultMaskedLm(run.model_options()));
  }
  const model::ModelConfig config = m.model->config();
  for (const data::TokenDataset* ds : {&train, eval}) {
    if (ds != nullptr) FTUNE_RETURN_IF_ERROR(CheckDataFitsModel(config, *ds, /*uses_labels=*/false));
  }
  FTUNE_ASSIGN_OR_RETURN(data::MaskingOptions masking, MaskingFor(r, config.vocab_size, {&train, eval}));
  Trainee t;
  t.config = config;
  t.trainable = model::CountTrainableParameters(*m.model);
  t.total = model::CountAllParameters(*m.model);
  t.saved_what = absl::StrFormat("masked-LM model (%s layout)", m.model->family().masked_lm_class);
  t.save = [model = m.model](const std::string& out) { return model::SavePretrained(*model, out); };
  t.objective = std::make_unique<train::MaskedLmObjective>(m.model, masking);
  return t;
}

// Class weights need class labels, and weights that leave every training example without weight
// would train nothing.
absl::Status CheckClassWeightsCover(const std::vector<double>& weights, const data::TokenDataset& train) {
  if (weights.empty()) return absl::OkStatus();
  if (train.is_regression()) {
    return Bad(absl::StrFormat("--class_weights apply to class labels, not regression (%s has float labels)",
                               train.path()));
  }
  std::map<int64_t, int64_t> count;
  for (int64_t i = 0; i < train.size(); ++i) ++count[train.label(i)];
  double total = 0;
  for (const auto& [label, n] : count) {
    if (label >= 0 && label < static_cast<int64_t>(weights.size())) total += n * weights[label];
  }
  if (total > 0) return absl::OkStatus();
  std::vector<std::string> present;
  for (const auto& [label, n] : count) present.push_back(absl::StrFormat("%d (%d examples)", label, n));
  return Bad(absl::StrFormat("--class_weights give every example of %s weight 0 (its labels: %s): nothing would train",
                             train.path(), absl::StrJoin(present, ", ")));
}

// --resume onto another rank count: the checkpoint's global batch (its sample positions and
// schedule) is kept by changing gradient_accumulation_steps, when the numbers allow.
absl::Status KeepGlobalBatch(const std::string& checkpoint, int world, train::DataOptions* o) {
  FTUNE_ASSIGN_OR_RETURN(const int64_t global, train::CheckpointGlobalBatch(checkpoint));
  const int64_t per_step = o->batch_size * world;
  if (global == per_step * o->gradient_accumulation_steps) return absl::OkStatus();
  if (global % per_step != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s was written with a global batch of %d, which --batch_size=%d x %d ranks x gradient_accumulation_steps "
        "cannot make; pick a --batch_size that divides %d / %d ranks",
        checkpoint, global, o->batch_size, world, global, world));
  }
  LogInfo(
      "resuming with %d ranks: gradient_accumulation_steps %d -> %d keeps the checkpoint's global batch of %d "
      "(batch_size %d x %d ranks x %d)",
      world, o->gradient_accumulation_steps, global / per_step, global, o->batch_size, world, global / per_step);
  o->gradient_accumulation_steps = global / per_step;
  return absl::OkStatus();
}

// The saved model goes to a temp directory and replaces <out>/model only when complete.
absl::Status SaveModelAtomically(const Trainee& t, const std::string& out) {
  const std::string final_dir = out + "/model", tmp = out + "/.model.tmp";
  FTUNE_RETURN_IF_ERROR(RemoveTree(tmp));
  absl::Status st = t.save(tmp);
  if (st.ok()) st = CopyVocab(tmp);
  if (st.ok()) st = RemoveTree(final_dir);
  if (st.ok()) st = CommitRename(tmp, final_dir);
  if (!st.ok()) RemoveTree(tmp).IgnoreError();
  return st;
}

}  // namespace

bool AbslParseFlag(absl::string_view text, ReportTo* out, std::string* error) {
  if (text == "none" || text == "tensorboard") {
    *out = text == "none" ? ReportTo::kNone : ReportTo::kTensorBoard;
    return true;
  }
  *error = "not one of none, tensorboard";
  return false;
}

std::string AbslUnparseFlag(ReportTo r) { return r == ReportTo::kNone ? "none" : "tensorboard"; }

absl::Status TrainRequest::Validate() const {
  if (output_dir.empty()) return Bad("--output_dir is required");
  if (train_data.empty()) return Bad("--train_data is required");
  if (!resume.empty() && overwrite) return Bad("--resume and --overwrite contradict each other");
  if (train.cache_frozen_features && method != model::Method::kHead && method != model::Method::kLastK) {
    return Bad("--cache_frozen_features applies to --method=head and last_k only");
  }
  if (merge && !model::IsAdapterMethod(method)) {
    return Bad("--merge applies to the adapter methods (lora, dora, ia3) only");
  }
  if (objective == train::ObjectiveKind::kMaskedLm) {
    if (method != model::Method::kFull) return Bad("--objective=mlm trains every parameter: use --method=full");
    if (loss.label_smoothing != 0 || !loss.class_weights.empty()) {
      return Bad("--label_smoothing_factor and --class_weights apply to classification only");
    }
    if (!(mlm_probability > 0 && mlm_probability < 1)) {
      return Bad(absl::StrFormat("--mlm_probability must be in (0, 1), got %g", mlm_probability));
    }
    if (train.eval.metric && *train.eval.metric != train::EvalMetric::kAccuracy &&
        *train.eval.metric != train::EvalMetric::kLoss) {
      return Bad(absl::StrFormat("--metric_for_best_model=%s is not a masked-LM metric (accuracy, loss)",
                                 train::EvalMetricName(*train.eval.metric)));
    }
  } else {
    if (!(loss.label_smoothing >= 0 && loss.label_smoothing < 1)) {
      return Bad(absl::StrFormat("--label_smoothing_factor must be in [0, 1) (got %g)", loss.label_smoothing));
    }
    for (double w : loss.class_weights) {
      if (!(w >= 0) || !std::isfinite(w)) {
        return Bad(absl::StrFormat("--class_weights must be finite and >= 0 (got %g)", w));
      }
    }
  }
  FTUNE_RETURN_IF_ERROR(train.Validate(!eval_data.empty()));
  return checkpoints.Validate();
}

nlohmann::json TrainRequest::ToJson() const {
  nlohmann::json j = {{"command", "train"},
                      {"objective", train::ObjectiveName(objective)},
                      {"train_data", train_data},
                      {"eval_data", eval_data},
                      {"output_dir", output_dir},
                      {"resume", resume},
                      {"overwrite", overwrite},
                      {"save_model", save_model},
                      {"merge", merge},
                      {"report_to", AbslUnparseFlag(report_to)},
                      {"label_smoothing_factor", loss.label_smoothing},
                      {"class_weights", loss.class_weights},
                      {"mlm_probability", mlm_probability}};
  j.update(train.ToJson());
  j.update(checkpoints.ToJson());
  return j;
}

absl::StatusOr<Outcome> RunTrain(RunContext& run, TrainRequest r) {
  const std::string& out = r.output_dir;
  FTUNE_ASSIGN_OR_RETURN(auto train_ds, data::TokenDataset::Open(r.train_data));
  std::unique_ptr<data::TokenDataset> eval_ds;
  if (!r.eval_data.empty()) {
    FTUNE_ASSIGN_OR_RETURN(eval_ds, data::TokenDataset::Open(r.eval_data));
  }
  FTUNE_RETURN_IF_ERROR(CheckClassWeightsCover(r.loss.class_weights, *train_ds));

  if (r.resume == "auto" && PathExists(out + "/results.json")) {
    LogInfo("%s/results.json exists: this run already finished (nothing to resume)", out);
    return Outcome::kDone;
  }
  FTUNE_ASSIGN_OR_RETURN(const std::string resume_from, run.ResolveResume(r.resume, out + "/checkpoints"));
  const bool resuming = !resume_from.empty();
  // --resume=auto with no checkpoint (a run killed before its first one): start it afresh.
  const bool replace_partial = r.overwrite || (r.resume == "auto" && !resuming);
  if (resuming) FTUNE_RETURN_IF_ERROR(KeepGlobalBatch(resume_from, run.ctx().world_size(), &r.train.data));

  torch::manual_seed(r.train.data.seed);
  FTUNE_ASSIGN_OR_RETURN(Trainee trainee, r.objective == train::ObjectiveKind::kMaskedLm
                                              ? BuildMaskedLm(run, r, *train_ds, eval_ds.get())
                                              : BuildClassifier(run, r, *train_ds, eval_ds.get()));
  LogInfo("method %s: %d of %d parameters train (%.2f%%)", model::MethodName(r.method), trainee.trainable,
          trainee.total, 100.0 * trainee.trainable / trainee.total);
  trainee.objective->module().to(run.device());
  r.train.data.pad_token_id = trainee.config.pad_token_id;

  // run_config.json: the request as resolved, with the model, the method and the runtime.
  nlohmann::json config = r.ToJson();
  config.update(MethodFlagsToJson());
  config.update(trainee.method_options);
  config.update({{"model_dir", absl::GetFlag(FLAGS_model_dir)},
                 {"model_config", absl::GetFlag(FLAGS_model_config)},
                 {"num_labels", trainee.config.num_labels},
                 {"model_type", trainee.config.model_type},
                 {"precision", PrecisionName(absl::GetFlag(FLAGS_precision))},
                 {"gradient_comm", GradientCommName(absl::GetFlag(FLAGS_gradient_comm))},
                 {"cudnn_sdp", absl::GetFlag(FLAGS_cudnn_sdp)},
                 {"comm_timeout", absl::GetFlag(FLAGS_comm_timeout)},
                 {"threads", absl::GetFlag(FLAGS_threads)},
                 {"intra_op_threads", at::get_num_threads()},
                 {"world_size", run.ctx().world_size()},
                 {"torch", compat::TorchVersion()},
                 {"device", run.device().str()},
                 {"resumed_from", resume_from}});
  FTUNE_RETURN_IF_ERROR(run.CheckRanksAgree(trainee.objective->module(), config, *train_ds));

  // Only now, with everything checked, does the output directory come to exist or change.
  FTUNE_RETURN_IF_ERROR(PrepareOutputDir(run, out, replace_partial, resuming));
  if (run.ctx().is_root()) FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out + "/run_config.json", config.dump(2) + "\n"));
  if (resuming && run.ctx().is_root()) {
    FTUNE_RETURN_IF_ERROR(train::TruncateMetricsForResume(out + "/metrics.jsonl", resume_from));
  }
  FTUNE_RETURN_IF_ERROR(run.Agree(absl::OkStatus()));
  FTUNE_ASSIGN_OR_RETURN(train::MetricsLog log, train::MetricsLog::Open(out + "/metrics.jsonl", run.ctx().is_root()));
  if (r.report_to == ReportTo::kTensorBoard) {
    FTUNE_RETURN_IF_ERROR(run.Agree(log.EnableTensorBoard(out + "/tensorboard")));
    if (run.ctx().is_root()) LogInfo("TensorBoard: %s", log.tensorboard_file());
  }
  r.checkpoints.dir = out + "/checkpoints";
  r.checkpoints.run_config = config;
  train::Trainer trainer(std::move(trainee.objective), r.train, &run.host_comm(), run.gradient_comm(), run.device());
  FTUNE_ASSIGN_OR_RETURN(train::FitResult fit, trainer.Fit(*train_ds, eval_ds.get(), &log, r.checkpoints, resume_from,
                                                           DataFingerprint(*train_ds)));
  if (fit.preempted()) return Outcome::kPreempted;

  const train::RunState& state = fit.state;
  const train::GradientReducer& reducer = trainer.reducer();
  train::RunSummary s;
  s.objective = train::ObjectiveName(r.objective);
  s.method = model::MethodName(r.method);
  s.seed = r.train.data.seed;
  s.trainable_parameters = trainee.trainable;
  s.all_parameters = trainee.total;
  s.model = {trainee.config.model_type, trainee.config.hidden_size, trainee.config.num_hidden_layers,
             trainee.config.intermediate_size, trainee.config.num_attention_heads};
  s.world_size = run.ctx().world_size();
  s.device = run.device().str();
  s.precision = PrecisionName(absl::GetFlag(FLAGS_precision));
  s.torch = compat::TorchVersion();
  s.steps = fit.steps();
  s.train_seconds = state.train_seconds;
  s.samples_per_second = fit.samples_per_second();
  s.tokens_per_second = fit.tokens_per_second();
  s.padding_fraction = state.PaddingFraction();
  s.comm_bytes_per_step = reducer.bytes_per_step();
  s.gradient_comm = reducer.transport();
  s.overlap_comm = reducer.overlapped();
  s.gradient_buckets = reducer.num_buckets();
  s.buckets_started_in_backward =
      fit.steps() > 0 ? static_cast<double>(reducer.buckets_started_in_backward()) / fit.steps() : 0.0;
  s.comm_seconds = state.comm_seconds;
  s.comm_share = state.train_seconds > 0 ? state.comm_seconds / state.train_seconds : 0.0;
  s.feature_cache = r.train.cache_frozen_features;
  s.feature_cache_seconds = fit.feature_cache_seconds;
  s.fused_adamw = trainer.optimizer().fused();
  s.skipped_steps = fit.skipped_steps;
  s.gradient_accumulation_steps = r.train.data.gradient_accumulation_steps;
  s.global_batch = r.train.global_batch(run.ctx().world_size());
  s.lr_scheduler_type = train::LrSchedulerName(r.train.optimizer.lr_schedule.type);
  s.stopped_early = fit.stop == train::StopReason::kEarlyStopping;
  s.peak_memory_bytes = run.PeakMemoryBytes();
  s.peak_memory_kind = run.device().is_cpu() ? "rss" : "cuda";
  if (r.train.logging.time_phases && fit.phases.steps > 0) {
    const double n = static_cast<double>(fit.phases.steps);
    s.step_seconds = train::RunSummary::Phases{fit.phases.data / n, fit.phases.forward / n, fit.phases.backward / n,
                                               fit.phases.comm / n, fit.phases.optimizer / n, fit.phases.steps};
  }
  s.epochs = state.epochs;
  if (fit.best.best_metric) {
    s.metric_for_best_model = train::EvalMetricName(*r.train.eval.metric);
    s.best_metric = fit.best.best_metric;
    s.best_step = fit.best.best_step;
    s.model_step = fit.loaded_best ? fit.best.best_step : fit.steps();
  }
  const nlohmann::json summary = s.ToJson();
  log.Write(summary);

  absl::Status saved;
  if (run.ctx().is_root()) {
    if (r.save_model) {
      saved = SaveModelAtomically(trainee, out);
      if (saved.ok()) LogInfo("saved %s to %s/model", trainee.saved_what, out);
    }
    if (saved.ok()) saved = WriteFileAtomic(out + "/results.json", summary.dump(2) + "\n");
    if (!saved.ok()) {
      // The trained weights are in the run's last checkpoint when a save strategy is set (it saves
      // at the end, before this); say where, so nothing is lost but the failed write.
      std::string left = "no checkpoint holds them (no --save_strategy)";
      if (auto last = train::ResolveResume("auto", r.checkpoints.dir); last.ok() && !last->empty()) {
        left = absl::StrFormat("the newest checkpoint is %s: free the space and run again with --resume=auto", *last);
      }
      saved = Annotate(saved, absl::StrFormat("saving the trained %s (%s)", trainee.saved_what, left));
    } else {
      LogInfo("done: %d steps in %s, %.1f samples/s; results in %s/results.json", fit.steps(),
              train::FormatDuration(state.train_seconds), fit.samples_per_second(), out);
    }
  }
  FTUNE_RETURN_IF_ERROR(run.Agree(saved));
  return Outcome::kDone;
}

}  // namespace ftune::cli
