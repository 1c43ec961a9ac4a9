// `ftune train`: fine-tune under mpirun (or as one process). Flags -> TrainOptions; sets up MPI,
// threads, device, model and method, checks that all ranks agree, runs the Trainer, and has rank
// 0 save the result (HF model directory, or a PEFT adapter for LoRA) and the run summary.
#include <sys/resource.h>

#include <cstdio>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/command.h"
#include "cli/run_setup.h"
#include "cli/shared_flags.h"
#include "common/files.h"
#include "common/log.h"
#include "common/torch_compat.h"
#include "data-prep/wordpiece_tokenizer.h"
#include "model/hf_checkpoint.h"
#include "model/masked_lm.h"
#include "model/peft_adapter.h"
#include "model/repr.h"
#include "nlohmann/json.hpp"
#include "train/checkpoint.h"
#include "train/preemption.h"
#include "train/trainer.h"

ABSL_FLAG(std::string, objective, "classification",
          "What to learn: classification (DistilBertForSequenceClassification, the labels of --train_data), or "
          "mlm (masked-language-model pretraining or domain-adaptive continued pretraining, as HF's run_mlm.py: "
          "DistilBertForMaskedLM, labels not needed; saves the hub's distilbert-base-uncased layout, which "
          "--objective=classification then loads with a fresh head).");
ABSL_FLAG(double, mlm_probability, 0.15,
          "--objective=mlm: share of non-special tokens chosen for prediction; of those 80% become [MASK], 10% a "
          "random token, 10% stay (HF's DataCollatorForLanguageModeling). The choice is drawn from (seed, epoch, "
          "example), so it does not depend on the number of ranks.");
ABSL_FLAG(std::string, train_data, "", "Training set: an HDF5 file written by `ftune prep`.");
ABSL_FLAG(std::string, eval_data, "", "Evaluation set (HDF5 from `ftune prep`); scored after every epoch.");
ABSL_FLAG(std::string, output_dir, "", "Run directory: metrics.jsonl, results.json, run_config.json and the model.");
ABSL_FLAG(int64_t, epochs, 3, "Training epochs (HF num_train_epochs).");
ABSL_FLAG(int64_t, max_steps, -1, "If > 0: stop after this many optimizer steps (overrides --epochs).");
ABSL_FLAG(int64_t, batch_size, 8, "Examples per rank per step; the global batch is batch_size x ranks.");
ABSL_FLAG(int64_t, eval_batch_size, 8, "Examples per rank per evaluation batch.");
ABSL_FLAG(double, learning_rate, 5e-5, "Peak learning rate of AdamW (decays linearly to 0).");
ABSL_FLAG(double, weight_decay, 0.0, "AdamW weight decay (not applied to biases and LayerNorm weights).");
ABSL_FLAG(double, adam_beta1, 0.9, "AdamW beta1.");
ABSL_FLAG(double, adam_beta2, 0.999, "AdamW beta2.");
ABSL_FLAG(double, adam_epsilon, 1e-8, "AdamW epsilon.");
ABSL_FLAG(int64_t, warmup_steps, 0, "Linear warmup steps (wins over --warmup_ratio).");
ABSL_FLAG(double, warmup_ratio, 0.0, "Linear warmup as a fraction of all steps.");
ABSL_FLAG(double, max_grad_norm, 1.0, "Clip the global gradient norm (after the all-reduce) to this; 0 = off.");
ABSL_FLAG(int64_t, seed, 42, "Seed for initialisation, data order and dropout.");
ABSL_FLAG(bool, group_by_length, false,
          "Order batches by length like HF's group_by_length (less padding, faster; still shuffled).");
ABSL_FLAG(int64_t, pad_to_multiple_of, 1,
          "Pad every batch to a multiple of this many tokens (1 = to its longest example only). 8-64 gives GPU "
          "kernels aligned lengths and fewer distinct shapes, at the cost of some padding.");
ABSL_FLAG(int64_t, logging_steps, 50, "Write a train record to metrics.jsonl every this many steps.");
ABSL_FLAG(double, bucket_mb, 25, "Gradient all-reduce bucket size in MiB (fractions allowed).");
ABSL_FLAG(bool, merge, false,
          "--method=lora|dora|ia3: save merged full weights (an HF model) instead of a PEFT adapter.");
ABSL_FLAG(bool, overwrite, false, "Reuse an --output_dir that already holds a run.");
ABSL_FLAG(bool, save_model, true, "Save the trained model (or adapter) into --output_dir.");
ABSL_FLAG(bool, cache_frozen_features, false,
          "--method=head: run the frozen encoder once over the data (eval mode) and train the head on the cached "
          "[CLS] features. Much faster; note it drops the encoder's dropout noise, so results differ slightly from "
          "uncached head training.");
ABSL_FLAG(bool, skip_nonfinite, false,
          "A step with NaN/Inf gradients never touches the weights (its update is skipped on the device); such steps "
          "are noticed at the next log line, checkpoint or epoch end. false: the run then stops with an error; true: "
          "a warning, and training goes on.");
ABSL_FLAG(bool, overlap_comm, true,
          "CPU ranks (MPI): start each gradient bucket's all-reduce during the backward pass, as soon as its "
          "gradients are ready, instead of after it (like PyTorch DDP).");
ABSL_FLAG(bool, fused_adamw, true, "Use LibTorch's fused AdamW kernel where it has one (LibTorch >= 2.4).");
ABSL_FLAG(bool, time_phases, false,
          "Time each step's phases (data, forward, backward, comm, optimizer) into results.json. Waits for the GPU "
          "at every phase boundary, so it slows GPU training; for benchmarks.");
ABSL_FLAG(int64_t, save_every_steps, 0, "Write a checkpoint every N optimizer steps (0 = only on preemption).");
ABSL_FLAG(bool, save_every_epoch, false, "Write a checkpoint after every epoch's evaluation.");
ABSL_FLAG(int32_t, keep_last, 2, "Checkpoints kept in <output_dir>/checkpoints (older ones are deleted; 0 = all).");
ABSL_FLAG(std::string, resume, "",
          "auto: continue from the newest checkpoint in <output_dir>/checkpoints (start fresh if there is none; "
          "exit at once if the run already finished); or a checkpoint directory. On CPU the result is "
          "bit-identical to an uninterrupted run. The global batch (batch_size x ranks) must be unchanged.");

namespace ftune::cli {
namespace {

train::TrainOptions TrainOptionsFromFlags() {
  train::TrainOptions o;
  o.epochs = absl::GetFlag(FLAGS_epochs);
  o.max_steps = absl::GetFlag(FLAGS_max_steps);
  o.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.eval_batch_size = absl::GetFlag(FLAGS_eval_batch_size);
  o.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  o.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  o.adam.beta1 = absl::GetFlag(FLAGS_adam_beta1);
  o.adam.beta2 = absl::GetFlag(FLAGS_adam_beta2);
  o.adam.eps = absl::GetFlag(FLAGS_adam_epsilon);
  o.warmup_steps = absl::GetFlag(FLAGS_warmup_steps);
  o.warmup_ratio = absl::GetFlag(FLAGS_warmup_ratio);
  o.max_grad_norm = absl::GetFlag(FLAGS_max_grad_norm);
  o.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  o.group_by_length = absl::GetFlag(FLAGS_group_by_length);
  o.pad_to_multiple_of = absl::GetFlag(FLAGS_pad_to_multiple_of);
  o.logging_steps = absl::GetFlag(FLAGS_logging_steps);
  o.bucket_bytes = static_cast<size_t>(std::max(1024.0, absl::GetFlag(FLAGS_bucket_mb) * (1 << 20)));
  o.cache_frozen_features = absl::GetFlag(FLAGS_cache_frozen_features);
  o.skip_nonfinite = absl::GetFlag(FLAGS_skip_nonfinite);
  o.fused_adamw = absl::GetFlag(FLAGS_fused_adamw);
  o.overlap_comm = absl::GetFlag(FLAGS_overlap_comm);
  o.time_phases = absl::GetFlag(FLAGS_time_phases);
  return o;
}

absl::Status ValidateTrainOptions(const train::TrainOptions& o) {
  auto bad = [](const std::string& s) { return absl::InvalidArgumentError(s); };
  if (o.batch_size <= 0) return bad(absl::StrFormat("--batch_size must be > 0 (got %d)", o.batch_size));
  if (o.eval_batch_size <= 0) return bad(absl::StrFormat("--eval_batch_size must be > 0 (got %d)", o.eval_batch_size));
  if (o.epochs <= 0 && o.max_steps <= 0) return bad("--epochs must be > 0 (or set --max_steps)");
  if (!(o.learning_rate > 0)) return bad("--learning_rate must be > 0");
  if (o.weight_decay < 0) return bad("--weight_decay must be >= 0");
  if (o.warmup_steps < 0 || o.warmup_ratio < 0 || o.warmup_ratio >= 1) return bad("warmup must be >= 0 (ratio < 1)");
  if (o.logging_steps <= 0) return bad("--logging_steps must be > 0");
  if (o.pad_to_multiple_of < 1 || o.pad_to_multiple_of > 512) {
    return bad(absl::StrFormat("--pad_to_multiple_of must be in [1, 512] (got %d)", o.pad_to_multiple_of));
  }
  if (!(o.adam.beta1 >= 0 && o.adam.beta1 < 1 && o.adam.beta2 >= 0 && o.adam.beta2 < 1)) {
    return bad("--adam_beta1/--adam_beta2 must be in [0, 1)");
  }
  return absl::OkStatus();
}

// The model a run trains, whatever the objective: built with its trainable set, checked against
// the data, and how rank 0 saves it at the end.
struct Trainee {
  std::unique_ptr<train::Objective> objective;
  io::DistilBertConfig config;
  int64_t trainable = 0, total = 0;
  std::function<absl::Status(const std::string& dir)> save;
  std::string saved_what;  // for the log: "model", "PEFT adapter"
};

absl::StatusOr<Trainee> BuildClassifier(RunContext& run, model::Method method, const model::MethodOptions& options,
                                        const data::TokenDataset& train, const data::TokenDataset* eval) {
  FTUNE_ASSIGN_OR_RETURN(model::LoadedModel loaded, LoadModelFromFlags(run.model_options()));
  FTUNE_RETURN_IF_ERROR(CheckDataFitsModel(loaded, train));
  if (eval != nullptr) FTUNE_RETURN_IF_ERROR(CheckDataFitsModel(loaded, *eval));
  AdoptLabelNames(loaded, train);
  FTUNE_RETURN_IF_ERROR(model::SelectTrainable(loaded.model, method, options));
  if (!loaded.report.loaded.empty()) LogInfo("model: %s: %s", loaded.source, loaded.report.Summary());
  Trainee t;
  t.config = loaded.config;
  t.trainable = model::CountTrainableParameters(*loaded.model);
  t.total = model::CountAllParameters(*loaded.model);
  const bool adapter = model::IsAdapterMethod(method) && !absl::GetFlag(FLAGS_merge);
  t.saved_what = adapter ? "PEFT adapter" : "model";
  t.save = [model = loaded.model, options, adapter, source = loaded.source](const std::string& dir) mutable {
    if (adapter) return model::SaveAdapter(model, options, source, dir);
    model::MergeAdapters(*model);
    return model::SavePretrained(model, dir);
  };
  t.objective = std::make_unique<train::ClassificationObjective>(loaded.model);
  return t;
}

// The special tokens masking needs, from the vocabulary the data was made with (checked).
absl::StatusOr<data::MaskingOptions> MaskingFromFlags(int64_t vocab_size,
                                                      std::initializer_list<const data::TokenDataset*> data) {
  std::string vocab = absl::GetFlag(FLAGS_vocab);
  if (vocab.empty() && !absl::GetFlag(FLAGS_model_dir).empty()) vocab = absl::GetFlag(FLAGS_model_dir) + "/vocab.txt";
  if (vocab.empty() || !PathExists(vocab)) {
    return absl::InvalidArgumentError(
        "--objective=mlm needs the vocabulary for its [MASK], [CLS], [SEP] and [PAD] ids: pass --vocab=vocab.txt "
        "(or a --model_dir that has one)");
  }
  FTUNE_ASSIGN_OR_RETURN(prep::WordPieceTokenizer tok, prep::WordPieceTokenizer::FromVocabFile(vocab));
  if (tok.mask_id() < 0) return absl::FailedPreconditionError(absl::StrFormat("%s has no [MASK] token", vocab));
  for (const data::TokenDataset* ds : data) {
    if (ds != nullptr) FTUNE_RETURN_IF_ERROR(ds->CheckVocab(tok.vocab_sha256(), tok.vocab_size()));
  }
  data::MaskingOptions m;
  m.probability = absl::GetFlag(FLAGS_mlm_probability);
  m.mask_id = tok.mask_id();
  m.vocab_size = vocab_size;
  m.never_mask = {tok.cls_id(), tok.sep_id(), tok.pad_id()};
  m.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  return m;
}

absl::StatusOr<Trainee> BuildMaskedLm(RunContext& run, model::Method method, const data::TokenDataset& train,
                                      const data::TokenDataset* eval) {
  if (method != model::Method::kFull) {
    return absl::InvalidArgumentError("--objective=mlm trains every parameter: use --method=full");
  }
  const double p = absl::GetFlag(FLAGS_mlm_probability);
  if (!(p > 0 && p < 1))
    return absl::InvalidArgumentError(absl::StrFormat("--mlm_probability must be in (0, 1), got %g", p));
  const std::string dir = absl::GetFlag(FLAGS_model_dir), config_path = absl::GetFlag(FLAGS_model_config);
  if (!dir.empty() && !config_path.empty()) {
    return absl::InvalidArgumentError(
        "give --model_dir (continue pretraining) or --model_config (from scratch), not both");
  }
  model::LoadedMaskedLm m;
  if (!dir.empty()) {
    FTUNE_ASSIGN_OR_RETURN(m, model::LoadMaskedLm(dir, run.model_options()));
    LogInfo("model: %s: %s", m.source, m.report.Summary());
  } else {
    io::DistilBertConfig config = io::DefaultDistilBertConfig();
    if (!config_path.empty()) {
      FTUNE_ASSIGN_OR_RETURN(config, io::LoadDistilBertConfig(config_path));
    }
    m = model::BuildMaskedLm(config, run.model_options());
    m.source =
        config_path.empty() ? "distilbert-base-uncased architecture (random init)" : config_path + " (random init)";
  }
  for (const data::TokenDataset* ds : {&train, eval}) {
    if (ds != nullptr) FTUNE_RETURN_IF_ERROR(CheckDataFitsModel(m.config, *ds, /*uses_labels=*/false));
  }
  FTUNE_ASSIGN_OR_RETURN(data::MaskingOptions masking, MaskingFromFlags(m.config.vocab_size, {&train, eval}));
  Trainee t;
  t.config = m.config;
  t.trainable = model::CountTrainableParameters(*m.model);
  t.total = model::CountAllParameters(*m.model);
  t.saved_what = "masked-LM model (DistilBertForMaskedLM layout)";
  t.save = [model = m.model](const std::string& out) mutable { return model::SaveMaskedLm(model, out); };
  t.objective = std::make_unique<train::MaskedLmObjective>(m.model, masking);
  return t;
}

absl::StatusOr<Outcome> RunTrain(RunContext& run) {
  train::TrainOptions opts = TrainOptionsFromFlags();
  FTUNE_RETURN_IF_ERROR(ValidateTrainOptions(opts));
  const std::string out = absl::GetFlag(FLAGS_output_dir);
  if (out.empty()) return absl::InvalidArgumentError("--output_dir is required");
  if (absl::GetFlag(FLAGS_train_data).empty()) return absl::InvalidArgumentError("--train_data is required");
  FTUNE_ASSIGN_OR_RETURN(model::Method method, MethodFromFlags());
  const model::MethodOptions method_options = MethodOptionsFromFlags();
  if (opts.cache_frozen_features && method != model::Method::kHead) {
    return absl::InvalidArgumentError("--cache_frozen_features applies to --method=head only");
  }
  if (absl::GetFlag(FLAGS_merge) && !model::IsAdapterMethod(method)) {
    return absl::InvalidArgumentError("--merge applies to the adapter methods (lora, dora, ia3) only");
  }
  const std::string objective = absl::GetFlag(FLAGS_objective);
  if (objective != "classification" && objective != "mlm") {
    return absl::InvalidArgumentError(
        absl::StrFormat("--objective \"%s\" is not one of classification, mlm", objective));
  }

  FTUNE_ASSIGN_OR_RETURN(auto train_ds, data::TokenDataset::Open(absl::GetFlag(FLAGS_train_data)));
  std::unique_ptr<data::TokenDataset> eval_ds;
  if (!absl::GetFlag(FLAGS_eval_data).empty()) {
    FTUNE_ASSIGN_OR_RETURN(eval_ds, data::TokenDataset::Open(absl::GetFlag(FLAGS_eval_data)));
  }
  const std::string resume_flag = absl::GetFlag(FLAGS_resume);
  if (!resume_flag.empty() && absl::GetFlag(FLAGS_overwrite)) {
    return absl::InvalidArgumentError("--resume and --overwrite contradict each other");
  }
  if (resume_flag == "auto" && PathExists(out + "/results.json")) {
    LogInfo("%s/results.json exists: this run already finished (nothing to resume)", out);
    return Outcome::kDone;
  }
  FTUNE_ASSIGN_OR_RETURN(std::string resume_from, train::ResolveResume(resume_flag, out + "/checkpoints"));
  FTUNE_RETURN_IF_ERROR(PrepareOutputDir(run, out, absl::GetFlag(FLAGS_overwrite), !resume_from.empty()));

  torch::manual_seed(static_cast<uint64_t>(opts.seed));
  FTUNE_ASSIGN_OR_RETURN(Trainee trainee, absl::GetFlag(FLAGS_objective) == "mlm"
                                              ? BuildMaskedLm(run, method, *train_ds, eval_ds.get())
                                              : BuildClassifier(run, method, method_options, *train_ds, eval_ds.get()));
  LogInfo("method %s: %d of %d parameters train (%.2f%%)", model::MethodName(method), trainee.trainable, trainee.total,
          100.0 * trainee.trainable / trainee.total);
  trainee.objective->module().to(run.device());

  nlohmann::json resolved = ResolvedFlags();
  resolved["world_size"] = run.ctx().world_size();
  resolved["torch"] = compat::TorchVersion();
  resolved["device"] = run.device().str();
  FTUNE_RETURN_IF_ERROR(run.CheckRanksAgree(trainee.objective->module(), resolved, *train_ds));
  if (run.ctx().is_root()) FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out + "/run_config.json", resolved.dump(2) + "\n"));

  if (!resume_from.empty() && run.ctx().is_root()) {
    FTUNE_RETURN_IF_ERROR(train::TruncateMetricsForResume(out + "/metrics.jsonl", resume_from));
  }
  FTUNE_RETURN_IF_ERROR(run.Agree(absl::OkStatus()));
  FTUNE_ASSIGN_OR_RETURN(train::MetricsLog log, train::MetricsLog::Open(out + "/metrics.jsonl", run.ctx().is_root()));
  opts.pad_token_id = trainee.config.pad_token_id;
  train::CheckpointOptions ckpt;
  ckpt.dir = out + "/checkpoints";
  ckpt.every_steps = absl::GetFlag(FLAGS_save_every_steps);
  ckpt.every_epoch = absl::GetFlag(FLAGS_save_every_epoch);
  ckpt.keep_last = absl::GetFlag(FLAGS_keep_last);
  ckpt.run_config = resolved;
  train::Trainer trainer(std::move(trainee.objective), opts, &run.host_comm(), run.gradient_comm(), run.device());
  FTUNE_ASSIGN_OR_RETURN(train::FitResult fit, trainer.Fit(*train_ds, eval_ds.get(), &log, ckpt, resume_from));
  if (fit.outcome == train::Outcome::kPreempted) return Outcome::kPreempted;

  const train::RunState& state = fit.state;
  const train::GradientReducer& reducer = trainer.reducer();
  nlohmann::json summary = {
      {"type", "summary"},
      {"objective", trainer.objective().name()},
      {"method", model::MethodName(method)},
      {"trainable_parameters", trainee.trainable},
      {"model",
       {{"dim", trainee.config.dim},
        {"n_layers", trainee.config.n_layers},
        {"hidden_dim", trainee.config.hidden_dim},
        {"n_heads", trainee.config.n_heads}}},
      {"all_parameters", trainee.total},
      {"world_size", run.ctx().world_size()},
      {"device", run.device().str()},
      {"steps", fit.steps()},
      {"train_seconds", state.train_seconds},
      {"samples_per_second", fit.samples_per_second()},
      {"tokens_per_second", fit.tokens_per_second()},
      {"comm_bytes_per_step", reducer.bytes_per_step()},
      {"feature_cache", opts.cache_frozen_features},
      {"feature_cache_seconds", fit.feature_cache_seconds},
      {"precision", absl::GetFlag(FLAGS_precision)},
      {"fused_adamw", trainer.optimizer().fused()},
      {"torch", compat::TorchVersion()},
      {"gradient_comm", reducer.transport()},
      {"overlap_comm", reducer.overlapped()},
      {"gradient_buckets", reducer.num_buckets()},
      {"buckets_started_in_backward",
       fit.steps() > 0 ? static_cast<double>(reducer.buckets_started_in_backward()) / fit.steps() : 0.0},
      {"padding_fraction", state.PaddingFraction()},
      {"skipped_steps", fit.skipped_steps},
      {"comm_seconds", state.comm_seconds},
      {"comm_share", state.train_seconds > 0 ? state.comm_seconds / state.train_seconds : 0.0},
      {"peak_memory_bytes", run.PeakMemoryBytes()},
      {"peak_memory_kind", run.device().is_cpu() ? "rss" : "cuda"},
  };
  if (opts.time_phases && fit.phases.steps > 0) {
    const double n = static_cast<double>(fit.phases.steps);
    summary["step_seconds"] = {{"data", fit.phases.data / n},           {"forward", fit.phases.forward / n},
                               {"backward", fit.phases.backward / n},   {"comm", fit.phases.comm / n},
                               {"optimizer", fit.phases.optimizer / n}, {"steps", fit.phases.steps}};
  }
  nlohmann::json epochs = nlohmann::json::array();
  for (const auto& e : state.epochs) epochs.push_back(e.ToJson());
  summary["epochs"] = epochs;
  log.Write(summary);

  if (run.ctx().is_root()) {
    if (absl::GetFlag(FLAGS_save_model)) {
      const std::string model_dir = out + "/model";
      FTUNE_RETURN_IF_ERROR(trainee.save(model_dir));
      FTUNE_RETURN_IF_ERROR(CopyVocab(model_dir));
      LogInfo("saved %s to %s", trainee.saved_what, model_dir);
    }
    FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out + "/results.json", summary.dump(2) + "\n"));
    LogInfo("done: %d steps in %s, %.1f samples/s; results in %s/results.json", fit.steps(),
            train::FormatDuration(state.train_seconds), fit.samples_per_second(), out);
  }
  return Outcome::kDone;
}

int TrainMain(const std::vector<std::string>& positional) {
  if (!positional.empty())
    return ReportFailure(absl::InvalidArgumentError("unexpected argument '" + positional[0] + "'"));
  // First thing: a SIGUSR1/SIGTERM that arrives while MPI starts or the model loads must not kill
  // the process (their default action); the flag is honoured at the first step boundary.
  train::InstallPreemptionHandlers();
  return RunWithContext(RunTrain);
}

}  // namespace

const Command& TrainCommand() {
  static const Command c{
      "train",
      "fine-tune (full, head, bitfit, last_k, lora, dora, ia3) or pretrain (mlm) on an HDF5 dataset",
      "Fine-tunes DistilBERT for sequence classification with Hugging Face Trainer's defaults (AdamW\n"
      "lr 5e-5, linear decay, clip 1.0, 3 epochs, batch 8, seed 42), evaluating accuracy after every\n"
      "epoch. Launch with mpirun to spread batches over ranks: each rank reads its share of every\n"
      "global batch and only trainable gradients are all-reduced (NCCL on GPUs, MPI on CPUs).\n\n"
      "  ftune train --flagfile=configs/lora.flags --model_dir=distilbert-base-uncased \\\n"
      "              --train_data=train.h5 --eval_data=eval.h5 --output_dir=runs/lora\n"
      "  mpirun -np 4 ftune train --method=full ...\n\n"
      "Writes <output_dir>/metrics.jsonl, results.json, run_config.json and model/ (config.json +\n"
      "model.safetensors, or a PEFT adapter for lora, dora and ia3 without --merge).\n\n"
      "Preemption: SIGTERM/SIGUSR1 (and a first SIGINT) stop every rank at the next step, write a\n"
      "checkpoint to <output_dir>/checkpoints and exit 75; run again with --resume=auto to continue.",
      {{"model and method",
        {"objective", "model_dir", "model_config", "num_labels", "method", "last_k_layers", "lora_rank", "lora_alpha",
         "lora_dropout", "lora_targets", "ia3_targets", "ia3_feedforward", "mlm_probability", "vocab"}},
       {"data and output", {"train_data", "eval_data", "output_dir", "overwrite", "save_model", "merge"}},
       {"optimization (HF TrainingArguments names)",
        {"epochs", "max_steps", "batch_size", "eval_batch_size", "learning_rate", "weight_decay", "adam_beta1",
         "adam_beta2", "adam_epsilon", "warmup_steps", "warmup_ratio", "max_grad_norm", "seed"}},
       {"logging", {"logging_steps", "time_phases"}},
       {"checkpoints and preemption",
        {"save_every_steps", "save_every_epoch", "keep_last", "resume", "skip_nonfinite"}},
       {"speed",
        {"device", "precision", "threads", "group_by_length", "pad_to_multiple_of", "cache_frozen_features",
         "fused_adamw", "cudnn_sdp"}},
       {"distributed", {"gradient_comm", "overlap_comm", "bucket_mb", "comm_timeout"}}},
      __FILE__,
      &TrainMain};
  return c;
}

}  // namespace ftune::cli
