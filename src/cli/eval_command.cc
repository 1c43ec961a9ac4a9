// `ftune eval` and `ftune predict`: score a saved model (HF directory, optionally with a PEFT
// adapter) on an HDF5 dataset. eval prints accuracy and loss, or for regression MSE, Pearson and
// Spearman (any number of ranks); predict writes one CSV row per example: row,label,pred,logit_0,...
// (regression: the float label, the prediction, and logit_0 = the prediction).
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/command.h"
#include "cli/run_setup.h"
#include "cli/shared_flags.h"
#include "common/files.h"
#include "common/log.h"
#include "model/peft_adapter.h"
#include "train/inference.h"

ABSL_FLAG(std::string, data, "", "The dataset to score: an HDF5 file written by `ftune prep`.");
ABSL_FLAG(int64_t, batch, 32, "Examples per forward pass.");

namespace ftune::cli {
namespace {

absl::StatusOr<model::LoadedModel> LoadForInference(RunContext& run) {
  if (absl::GetFlag(FLAGS_model_dir).empty()) {
    return absl::InvalidArgumentError("--model_dir is required (a saved model: config.json + model.safetensors)");
  }
  FTUNE_ASSIGN_OR_RETURN(model::LoadedModel m, LoadModelFromFlags(run.model_options()));
  const std::string adapter = absl::GetFlag(FLAGS_adapter_dir);
  bool head_from_adapter = false;
  if (!adapter.empty()) {
    FTUNE_ASSIGN_OR_RETURN(model::AdapterInfo info, model::LoadAdapter(*m.model, adapter));
    LogInfo("adapter %s: %s", adapter, model::DescribeAdapter(info));
    head_from_adapter = model::CoversModules(info.modules_to_save, m.model->family().head_modules);
  }
  if (!m.report.fresh.empty() && !head_from_adapter) {
    LogWarn("%s has no trained classification head (%s)%s; scores will be chance-level", m.source,
            m.report.fresh.front(), adapter.empty() ? "" : " and the adapter brings none (modules_to_save)");
  }
  m.model->to(run.device());
  return m;
}

absl::StatusOr<std::unique_ptr<data::TokenDataset>> OpenScored(const model::LoadedModel& m) {
  const std::string path = absl::GetFlag(FLAGS_data);
  if (path.empty()) return absl::InvalidArgumentError("--data is required (an HDF5 file from `ftune prep`)");
  FTUNE_ASSIGN_OR_RETURN(auto ds, data::TokenDataset::Open(path));
  FTUNE_RETURN_IF_ERROR(CheckDataFitsModel(m, *ds));
  return ds;
}

train::InferenceOptions Options(RunContext& run, const model::LoadedModel& m) {
  train::InferenceOptions o;
  o.batch_size = absl::GetFlag(FLAGS_batch);
  o.pad_token_id = m.model->config().pad_token_id;
  o.device = run.device();
  return o;
}

absl::Status RunEval(RunContext& run) {
  FTUNE_ASSIGN_OR_RETURN(model::LoadedModel m, LoadForInference(run));
  FTUNE_ASSIGN_OR_RETURN(auto ds, OpenScored(m));
  FTUNE_ASSIGN_OR_RETURN(train::EvalStats e, train::EvaluateDataset(*m.model, *ds, &run.host_comm(), Options(run, m)));
  const std::string out = absl::GetFlag(FLAGS_output);
  if (e.regression) {
    LogInfo("%s: mse %.4f, pearson %.4f, spearmanr %.4f over %d examples, %.1f examples/s", ds->path(), e.mse(),
            e.pearson(), e.spearmanr(), e.total, e.total / std::max(e.seconds, 1e-9));
  } else {
    LogInfo("%s: accuracy %.4f (%d/%d), macro-F1 %.4f, loss %.4f, %.1f examples/s", ds->path(), e.accuracy(),
            e.correct, e.total, e.macro_f1(), e.loss(), e.total / std::max(e.seconds, 1e-9));
  }
  // Per class, and the confusion matrix (rows: true label, columns: predicted).
  std::string table = "label  precision  recall      f1  support  | predicted as";
  for (int64_t k = 0; k < e.num_labels; ++k) absl::StrAppendFormat(&table, " %6d", k);
  for (int64_t k = 0; k < e.num_labels; ++k) {
    absl::StrAppendFormat(&table, "\n%5d  %9.4f  %6.4f  %6.4f  %7d  |             ", k, e.precision(k), e.recall(k),
                          e.f1(k), e.support(k));
    for (int64_t p = 0; p < e.num_labels; ++p) absl::StrAppendFormat(&table, " %6d", e.confusion[k * e.num_labels + p]);
  }
  if (!e.regression) LogInfo("%s", table);
  if (!out.empty() && run.ctx().is_root()) {
    FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out, e.ToJson().dump(2) + "\n"));
    LogInfo("wrote the metrics to %s", out);
  }
  return absl::OkStatus();
}

absl::Status RunPredict(RunContext& run) {
  if (run.ctx().world_size() > 1) {
    return absl::InvalidArgumentError("ftune predict runs as one process (without mpirun)");
  }
  const std::string out = absl::GetFlag(FLAGS_output);
  if (out.empty()) return absl::InvalidArgumentError("--output is required (the predictions CSV to write)");
  FTUNE_ASSIGN_OR_RETURN(model::LoadedModel m, LoadForInference(run));
  FTUNE_ASSIGN_OR_RETURN(auto ds, OpenScored(m));
  std::vector<std::string> rows(ds->size());
  std::vector<int64_t> all(ds->size());
  for (int64_t i = 0; i < ds->size(); ++i) all[i] = i;
  int64_t correct = 0;
  FTUNE_RETURN_IF_ERROR(
      train::ForEachLogits(*m.model, *ds, all, Options(run, m),
                           [&](const data::HostBatch& b, const train::DeviceBatch&, const torch::Tensor& logits) {
                             torch::Tensor l = logits.to(torch::kCPU).to(torch::kFloat).contiguous();
                             for (int64_t r = 0; r < b.rows; ++r) {
                               const float* v = l[r].data_ptr<float>();
                               std::string line;
                               if (ds->is_regression()) {  // the label and the prediction are numbers
                                 line = absl::StrFormat("%d,%.9g,%.9g", b.indices[r], b.targets[r], v[0]);
                               } else {
                                 int64_t pred = 0;
                                 for (int64_t k = 1; k < l.size(1); ++k) {
                                   if (v[k] > v[pred]) pred = k;
                                 }
                                 correct += pred == b.labels[r];
                                 line = absl::StrFormat("%d,%d,%d", b.indices[r], b.labels[r], pred);
                               }
                               for (int64_t k = 0; k < l.size(1); ++k) absl::StrAppendFormat(&line, ",%.9g", v[k]);
                               rows[b.indices[r]] = line + "\n";
                             }
                             return absl::OkStatus();
                           }));
  std::string csv = "row,label,pred";
  for (int64_t k = 0; k < m.model->config().num_labels; ++k) absl::StrAppend(&csv, ",logit_", k);
  csv += "\n";
  for (const auto& r : rows) csv += r;
  FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out, csv));
  if (ds->is_regression()) {
    LogInfo("wrote %d predictions to %s (regression: label and pred are numbers)", ds->size(), out);
  } else {
    LogInfo("wrote %d predictions to %s (accuracy %.4f against the dataset's labels)", ds->size(), out,
            ds->size() ? static_cast<double>(correct) / ds->size() : 0.0);
  }
  return absl::OkStatus();
}

// The checks that need no file (a bad command line: exit code 2 before MPI starts).
absl::Status ValidateFlags(const std::vector<std::string>& positional) {
  if (!positional.empty()) return absl::InvalidArgumentError("unexpected argument '" + positional[0] + "'");
  if (absl::GetFlag(FLAGS_batch) <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat("--batch must be > 0 (got %d)", absl::GetFlag(FLAGS_batch)));
  }
  return absl::OkStatus();
}

int EvalMain(const std::vector<std::string>& positional) {
  if (absl::Status st = ValidateFlags(positional); !st.ok()) return ReportFailure(st);
  return RunWithContext([](RunContext& run) -> absl::StatusOr<Outcome> {
    FTUNE_RETURN_IF_ERROR(RunEval(run));
    return Outcome::kDone;
  });
}
int PredictMain(const std::vector<std::string>& positional) {
  if (absl::Status st = ValidateFlags(positional); !st.ok()) return ReportFailure(st);
  return RunWithContext([](RunContext& run) -> absl::StatusOr<Outcome> {
    FTUNE_RETURN_IF_ERROR(RunPredict(run));
    return Outcome::kDone;
  });
}

}  // namespace

const Command& EvalCommand() {
  static const Command c{
      "eval",
      "accuracy and loss of a saved model on an HDF5 dataset",
      "Scores a saved model (--model_dir, plus --adapter_dir for a PEFT LoRA adapter) on every\n"
      "example of --data and prints accuracy, macro-F1, mean cross-entropy, per-class precision /\n"
      "recall / F1 and the confusion matrix (--output: the same as JSON, eval_* keys as in\n"
      "metrics.jsonl). Under mpirun each rank scores a share and the counts are summed.\n\n"
      "  ftune eval --model_dir=runs/full/model --data=eval.h5\n"
      "  ftune eval --model_dir=distilbert-base-uncased --adapter_dir=runs/lora/model --data=eval.h5",
      {{"model and data", {"model_dir", "adapter_dir", "data", "output", "batch"}},
       {"speed", {"device", "precision", "threads", "cudnn_sdp"}}},
      __FILE__,
      &EvalMain};
  return c;
}

const Command& PredictCommand() {
  static const Command c{"predict",
                         "write per-example predictions and logits as CSV",
                         "Writes one CSV row per example of --data, in dataset order:\n"
                         "  row,label,pred,logit_0,logit_1[,...]\n\n"
                         "  ftune predict --model_dir=runs/full/model --data=eval.h5 --output=preds.csv",
                         {{"model and data", {"model_dir", "adapter_dir", "data", "output", "batch"}},
                          {"speed", {"device", "precision", "threads", "cudnn_sdp"}}},
                         __FILE__,
                         &PredictMain};
  return c;
}

}  // namespace ftune::cli
