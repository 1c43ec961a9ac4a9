// `ftune train`: fine-tune under mpirun (or as one process). Flags -> TrainOptions; sets up MPI,
// threads, device, model and method, checks that all ranks agree, runs the Trainer, and has rank
// 0 save the result (HF model directory, or a PEFT adapter for LoRA) and the run summary.
#include <sys/resource.h>

#include <cstdio>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/command.h"
#include "cli/run_setup.h"
#include "cli/shared_flags.h"
#include "common/files.h"
#include "common/log.h"
#include "common/torch_compat.h"
#include "data-prep/wordpiece_tokenizer.h"
#include "model/hf_checkpoint.h"
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
ABSL_FLAG(std::string, eval_data, "", "Evaluation set (HDF5 from `ftune prep`); scored per --eval_strategy.");
ABSL_FLAG(std::string, eval_strategy, "epoch",
          "When to evaluate on --eval_data (HF eval_strategy): no, steps (every --eval_steps optimizer steps) or "
          "epoch (after each epoch).");
ABSL_FLAG(int64_t, eval_steps, 0,
          "--eval_strategy=steps: evaluate every this many optimizer steps (0 = --logging_steps, "
          "as HF).");
ABSL_FLAG(std::string, metric_for_best_model, "",
          "Eval metric that decides the best model: accuracy, loss or macro_f1 (eval_ prefix optional); empty = none, "
          "or loss when --load_best_model_at_end / --early_stopping_patience need one (as HF).");
ABSL_FLAG(std::string, greater_is_better, "",
          "true or false: whether a larger --metric_for_best_model is better; empty = false for a loss, else true "
          "(as HF).");
ABSL_FLAG(bool, load_best_model_at_end, false,
          "Save the best model (per --metric_for_best_model) instead of the last one; results.json names its step. "
          "The best weights are kept on the device and in checkpoints, so no save strategy is needed for it.");
ABSL_FLAG(int64_t, early_stopping_patience, 0,
          "Stop training after this many evaluations in a row that do not improve --metric_for_best_model by more "
          "than --early_stopping_threshold (HF EarlyStoppingCallback); 0 = off.");
ABSL_FLAG(double, early_stopping_threshold, 0.0, "Least improvement that resets the early-stopping patience.");
ABSL_FLAG(double, label_smoothing_factor, 0.0,
          "Label smoothing (HF label_smoothing_factor): targets become 1 - f on the label plus f / num_labels on "
          "every class. Applies to the eval loss too, as in HF.");
ABSL_FLAG(std::string, class_weights, "",
          "Comma-separated loss weight per label (e.g. 1,3 for a rare label 1), as torch's "
          "CrossEntropyLoss(weight=...): the training loss is the weighted mean over the global batch. Training "
          "only; the eval loss stays unweighted.");
ABSL_FLAG(std::string, output_dir, "", "Run directory: metrics.jsonl, results.json, run_config.json and the model.");
ABSL_FLAG(int64_t, epochs, 3, "Training epochs (HF num_train_epochs).");
ABSL_FLAG(int64_t, max_steps, -1, "If > 0: stop after this many optimizer steps (overrides --epochs).");
ABSL_FLAG(
    int64_t, batch_size, 8,
    "Examples per rank per micro-batch (HF per_device_train_batch_size); the global batch is batch_size x ranks x "
    "--gradient_accumulation_steps.");
ABSL_FLAG(int64_t, gradient_accumulation_steps, 1,
          "Micro-batches per rank whose gradients add up before each optimizer step. The loss is normalised over the "
          "whole global batch, so 1 rank x 4, 2 ranks x 2 and 4 ranks x 1 train the same model. --resume onto another "
          "rank count changes it to keep the checkpoint's global batch (and says so).");
ABSL_FLAG(int64_t, eval_batch_size, 8, "Examples per rank per evaluation batch.");
ABSL_FLAG(double, learning_rate, 5e-5, "Peak learning rate of AdamW (after warmup; see --lr_scheduler_type).");
ABSL_FLAG(std::string, lr_scheduler_type, "linear",
          "Learning-rate schedule after warmup, HF's names and formulas: linear, cosine, cosine_with_restarts, "
          "constant (no warmup), constant_with_warmup, polynomial.");
ABSL_FLAG(std::string, lr_scheduler_kwargs, "",
          "JSON object of schedule arguments, as HF's lr_scheduler_kwargs: num_cycles (cosine 0.5, "
          "cosine_with_restarts 1), power (polynomial, 1.0), lr_end (polynomial, 1e-7).");
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
ABSL_FLAG(std::string, report_to, "none",
          "Where else the train and eval records go (HF report_to): none, or tensorboard (event files in "
          "<output_dir>/tensorboard, tags as HF's TensorBoardCallback: train/loss, eval/accuracy, ...).");
ABSL_FLAG(double, bucket_mb, 25, "Gradient all-reduce bucket size in MiB (fractions allowed).");
ABSL_FLAG(bool, merge, false,
          "--method=lora|dora|ia3: save merged full weights (an HF model) instead of a PEFT adapter.");
ABSL_FLAG(bool, overwrite, false, "Reuse an --output_dir that already holds a run.");
ABSL_FLAG(bool, save_model, true, "Save the trained model (or adapter) into --output_dir.");
ABSL_FLAG(bool, cache_frozen_features, false,
          "--method=head or last_k: run the frozen layers once over the data (eval mode) and train on their cached "
          "outputs (head: the [CLS] features; last_k: the hidden states entering the first trainable block). Much "
          "faster; note it drops the frozen layers' dropout noise, so results differ slightly from uncached "
          "training.");
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
ABSL_FLAG(std::string, save_strategy, "no",
          "When to write checkpoints to <output_dir>/checkpoints besides preemption (always): no, steps (every "
          "--save_steps) or epoch (after each epoch's evaluation). HF's names; HF's default is steps every 500.");
ABSL_FLAG(int64_t, save_steps, 500, "--save_strategy=steps: write a checkpoint every this many optimizer steps.");
ABSL_FLAG(int32_t, save_total_limit, 2,
          "Checkpoints kept (older ones are deleted; 0 = all). The best model's checkpoint is never deleted.");
ABSL_FLAG(std::string, resume, "",
          "auto: continue from the newest checkpoint in <output_dir>/checkpoints (start fresh if there is none; "
          "exit at once if the run already finished); or a checkpoint directory. On CPU the result is "
          "bit-identical to an uninterrupted run. The global batch is kept: on another rank count the accumulation "
          "steps change to match (or give a --batch_size that makes it).");

namespace ftune::cli {
namespace {

train::TrainOptions TrainOptionsFromFlags() {
  train::TrainOptions o;
  o.epochs = absl::GetFlag(FLAGS_epochs);
  o.max_steps = absl::GetFlag(FLAGS_max_steps);
  o.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.gradient_accumulation_steps = absl::GetFlag(FLAGS_gradient_accumulation_steps);
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
  o.loss_scaling = absl::GetFlag(FLAGS_precision) == "fp16";
  o.eval_steps = absl::GetFlag(FLAGS_eval_steps) > 0 ? absl::GetFlag(FLAGS_eval_steps) : o.logging_steps;
  o.metric_for_best_model = absl::GetFlag(FLAGS_metric_for_best_model);
  o.load_best_model_at_end = absl::GetFlag(FLAGS_load_best_model_at_end);
  o.early_stopping_patience = absl::GetFlag(FLAGS_early_stopping_patience);
  o.early_stopping_threshold = absl::GetFlag(FLAGS_early_stopping_threshold);
  if (o.metric_for_best_model.empty() && (o.load_best_model_at_end || o.early_stopping_patience > 0)) {
    o.metric_for_best_model = "loss";
  }
  return o;
}

// The flags that parse into more than a number: the eval strategy, the schedule, the best-model
// direction, and the save strategy.
absl::Status ParseStructuredFlags(train::TrainOptions* o, train::CheckpointOptions* ckpt) {
  const std::string eval = absl::GetFlag(FLAGS_eval_strategy);
  if (eval == "no") {
    o->eval_strategy = train::EvalStrategy::kNo;
  } else if (eval == "steps") {
    o->eval_strategy = train::EvalStrategy::kSteps;
  } else if (eval == "epoch") {
    o->eval_strategy = train::EvalStrategy::kEpoch;
  } else {
    return absl::InvalidArgumentError(absl::StrFormat("--eval_strategy \"%s\" is not one of no, steps, epoch", eval));
  }
  FTUNE_ASSIGN_OR_RETURN(o->lr_schedule.type, train::ParseLrSchedulerType(absl::GetFlag(FLAGS_lr_scheduler_type)));
  const std::string kwargs = absl::GetFlag(FLAGS_lr_scheduler_kwargs);
  if (!kwargs.empty()) {
    nlohmann::json j = nlohmann::json::parse(kwargs, nullptr, false);
    if (!j.is_object()) {
      return absl::InvalidArgumentError(absl::StrFormat("--lr_scheduler_kwargs is not a JSON object: %s", kwargs));
    }
    for (const auto& [key, value] : j.items()) {
      if (!value.is_number()) {
        return absl::InvalidArgumentError(absl::StrFormat("--lr_scheduler_kwargs: %s must be a number", key));
      }
      if (key == "num_cycles") {
        o->lr_schedule.num_cycles = value.get<double>();
      } else if (key == "power") {
        o->lr_schedule.power = value.get<double>();
      } else if (key == "lr_end") {
        o->lr_schedule.lr_end = value.get<double>();
      } else {
        return absl::InvalidArgumentError(
            absl::StrFormat("--lr_scheduler_kwargs: unknown argument \"%s\" (num_cycles, power, lr_end)", key));
      }
    }
  }
  const std::string greater = absl::GetFlag(FLAGS_greater_is_better);
  if (greater.empty()) {
    o->greater_is_better = !absl::EndsWith(o->metric_for_best_model, "loss");
  } else if (greater == "true" || greater == "false") {
    o->greater_is_better = greater == "true";
  } else {
    return absl::InvalidArgumentError(
        absl::StrFormat("--greater_is_better must be true or false (got \"%s\")", greater));
  }
  const std::string report_to = absl::GetFlag(FLAGS_report_to);
  if (report_to != "none" && report_to != "tensorboard") {
    return absl::InvalidArgumentError(absl::StrFormat("--report_to \"%s\" is not one of none, tensorboard", report_to));
  }
  const std::string save = absl::GetFlag(FLAGS_save_strategy);
  if (save != "no" && save != "steps" && save != "epoch") {
    return absl::InvalidArgumentError(absl::StrFormat("--save_strategy \"%s\" is not one of no, steps, epoch", save));
  }
  ckpt->every_steps = save == "steps" ? absl::GetFlag(FLAGS_save_steps) : 0;
  ckpt->every_epoch = save == "epoch";
  ckpt->total_limit = absl::GetFlag(FLAGS_save_total_limit);
  if (save == "steps" && ckpt->every_steps <= 0) return absl::InvalidArgumentError("--save_steps must be > 0");
  if (ckpt->total_limit < 0) return absl::InvalidArgumentError("--save_total_limit must be >= 0");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<double>> ClassWeightsFromFlag() {
  std::vector<double> weights;
  const std::string text = absl::GetFlag(FLAGS_class_weights);
  if (text.empty()) return weights;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    double w;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(part), &w)) {
      return absl::InvalidArgumentError(absl::StrFormat("--class_weights: \"%s\" is not a number", part));
    }
    weights.push_back(w);
  }
  return weights;
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
  if (o.gradient_accumulation_steps <= 0) {
    return bad(absl::StrFormat("--gradient_accumulation_steps must be > 0 (got %d)", o.gradient_accumulation_steps));
  }
  if (o.early_stopping_patience < 0) return bad("--early_stopping_patience must be >= 0");
  if (o.early_stopping_threshold < 0) return bad("--early_stopping_threshold must be >= 0");
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
  model::ModelConfig config;
  int64_t trainable = 0, total = 0;
  std::function<absl::Status(const std::string& dir)> save;
  std::string saved_what;  // for the log: "model", "PEFT adapter"
};

absl::StatusOr<Trainee> BuildClassifier(RunContext& run, model::Method method, const data::TokenDataset& train,
                                        const data::TokenDataset* eval) {
  FTUNE_ASSIGN_OR_RETURN(model::LoadedModel loaded, LoadModelFromFlags(run.model_options()));
  FTUNE_RETURN_IF_ERROR(CheckDataFitsModel(loaded, train));
  if (eval != nullptr) FTUNE_RETURN_IF_ERROR(CheckDataFitsModel(loaded, *eval));
  AdoptLabelNames(loaded, train);
  const model::MethodOptions options = MethodOptionsFromFlags(loaded.model->family());
  FTUNE_RETURN_IF_ERROR(model::SelectTrainable(*loaded.model, method, options));
  if (!loaded.report.loaded.empty()) LogInfo("model: %s: %s", loaded.source, loaded.report.Summary());
  Trainee t;
  t.config = loaded.model->config();
  t.trainable = model::CountTrainableParameters(*loaded.model);
  t.total = model::CountAllParameters(*loaded.model);
  const bool adapter = model::IsAdapterMethod(method) && !absl::GetFlag(FLAGS_merge);
  t.saved_what = adapter ? "PEFT adapter" : "model";
  t.save = [model = loaded.model, options, adapter, source = loaded.source](const std::string& dir) {
    if (adapter) return model::SaveAdapter(*model, options, source, dir);
    model::MergeAdapters(*model);
    return model::SavePretrained(*model, dir);
  };
  train::ClassificationLoss loss;
  loss.label_smoothing = absl::GetFlag(FLAGS_label_smoothing_factor);
  FTUNE_ASSIGN_OR_RETURN(loss.class_weights, ClassWeightsFromFlag());
  FTUNE_ASSIGN_OR_RETURN(t.objective, train::ClassificationObjective::Create(loaded.model, std::move(loss)));
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
  if (absl::GetFlag(FLAGS_label_smoothing_factor) != 0 || !absl::GetFlag(FLAGS_class_weights).empty()) {
    return absl::InvalidArgumentError("--label_smoothing_factor and --class_weights apply to classification only");
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
  } else if (!config_path.empty()) {
    FTUNE_ASSIGN_OR_RETURN(m, model::BuildMaskedLmFromConfigFile(config_path, run.model_options()));
  } else {
    FTUNE_ASSIGN_OR_RETURN(m, model::BuildDefaultMaskedLm(run.model_options()));
    m.source = "distilbert-base-uncased architecture (random init)";
  }
  const model::ModelConfig config = m.model->config();
  for (const data::TokenDataset* ds : {&train, eval}) {
    if (ds != nullptr) FTUNE_RETURN_IF_ERROR(CheckDataFitsModel(config, *ds, /*uses_labels=*/false));
  }
  FTUNE_ASSIGN_OR_RETURN(data::MaskingOptions masking, MaskingFromFlags(config.vocab_size, {&train, eval}));
  Trainee t;
  t.config = config;
  t.trainable = model::CountTrainableParameters(*m.model);
  t.total = model::CountAllParameters(*m.model);
  t.saved_what = absl::StrFormat("masked-LM model (%s layout)", m.model->family().masked_lm_class);
  t.save = [model = m.model](const std::string& out) { return model::SavePretrained(*model, out); };
  t.objective = std::make_unique<train::MaskedLmObjective>(m.model, masking);
  return t;
}

// --resume onto another rank count: the checkpoint's global batch (its sample positions and
// schedule) is kept by changing gradient_accumulation_steps, when the numbers allow.
absl::Status KeepGlobalBatch(const std::string& checkpoint, int world, train::TrainOptions* o) {
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

absl::StatusOr<Outcome> RunTrain(RunContext& run) {
  train::TrainOptions opts = TrainOptionsFromFlags();
  train::CheckpointOptions ckpt;
  FTUNE_RETURN_IF_ERROR(ParseStructuredFlags(&opts, &ckpt));
  FTUNE_RETURN_IF_ERROR(ValidateTrainOptions(opts));
  const std::string out = absl::GetFlag(FLAGS_output_dir);
  if (out.empty()) return absl::InvalidArgumentError("--output_dir is required");
  if (absl::GetFlag(FLAGS_train_data).empty()) return absl::InvalidArgumentError("--train_data is required");
  FTUNE_ASSIGN_OR_RETURN(model::Method method, MethodFromFlags());
  if (opts.cache_frozen_features && method != model::Method::kHead && method != model::Method::kLastK) {
    return absl::InvalidArgumentError("--cache_frozen_features applies to --method=head and last_k only");
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
  if (!opts.metric_for_best_model.empty() && (eval_ds == nullptr || opts.eval_strategy == train::EvalStrategy::kNo)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--metric_for_best_model=%s (or --load_best_model_at_end / --early_stopping_patience) needs --eval_data and "
        "an --eval_strategy other than no",
        opts.metric_for_best_model));
  }
  if (!resume_from.empty()) FTUNE_RETURN_IF_ERROR(KeepGlobalBatch(resume_from, run.ctx().world_size(), &opts));
  FTUNE_RETURN_IF_ERROR(PrepareOutputDir(run, out, absl::GetFlag(FLAGS_overwrite), !resume_from.empty()));

  torch::manual_seed(static_cast<uint64_t>(opts.seed));
  FTUNE_ASSIGN_OR_RETURN(Trainee trainee, absl::GetFlag(FLAGS_objective) == "mlm"
                                              ? BuildMaskedLm(run, method, *train_ds, eval_ds.get())
                                              : BuildClassifier(run, method, *train_ds, eval_ds.get()));
  if (!opts.metric_for_best_model.empty()) {  // a name this objective's evaluation has
    train::EvalStats probe;
    if (objective == "classification") {
      probe.num_labels = trainee.config.num_labels;
      probe.confusion.assign(probe.num_labels * probe.num_labels, 0);
    }
    FTUNE_RETURN_IF_ERROR(Annotate(probe.Metric(opts.metric_for_best_model).status(), "--metric_for_best_model"));
  }
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
  const std::string report_to = absl::GetFlag(FLAGS_report_to);
  if (report_to == "tensorboard") {
    FTUNE_RETURN_IF_ERROR(run.Agree(log.EnableTensorBoard(out + "/tensorboard")));
    if (run.ctx().is_root()) LogInfo("TensorBoard: %s", log.tensorboard_file());
  }
  opts.pad_token_id = trainee.config.pad_token_id;
  ckpt.dir = out + "/checkpoints";
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
       {{"dim", trainee.config.hidden_size},
        {"n_layers", trainee.config.num_hidden_layers},
        {"hidden_dim", trainee.config.intermediate_size},
        {"n_heads", trainee.config.num_attention_heads}}},
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
      {"gradient_accumulation_steps", opts.gradient_accumulation_steps},
      {"global_batch", opts.batch_size * run.ctx().world_size() * opts.gradient_accumulation_steps},
      {"lr_scheduler_type", train::LrSchedulerName(opts.lr_schedule.type)},
      {"stopped_early", state.stopped_early},
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
  if (state.best_metric) {
    summary["metric_for_best_model"] = opts.metric_for_best_model;
    summary["best_metric"] = *state.best_metric;
    summary["best_step"] = state.best_step;
    // Which weights model/ holds: the best step's (load_best_model_at_end) or the last step's.
    summary["model_step"] = fit.loaded_best ? state.best_step : fit.steps();
  }
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
        {"epochs", "max_steps", "batch_size", "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type",
         "lr_scheduler_kwargs", "warmup_steps", "warmup_ratio", "weight_decay", "adam_beta1", "adam_beta2",
         "adam_epsilon", "max_grad_norm", "seed"}},
       {"loss", {"label_smoothing_factor", "class_weights"}},
       {"evaluation and the best model",
        {"eval_strategy", "eval_steps", "eval_batch_size", "metric_for_best_model", "greater_is_better",
         "load_best_model_at_end", "early_stopping_patience", "early_stopping_threshold"}},
       {"logging", {"logging_steps", "report_to", "time_phases"}},
       {"checkpoints and preemption", {"save_strategy", "save_steps", "save_total_limit", "resume", "skip_nonfinite"}},
       {"speed",
        {"device", "precision", "threads", "group_by_length", "pad_to_multiple_of", "cache_frozen_features",
         "fused_adamw", "cudnn_sdp"}},
       {"distributed", {"gradient_comm", "overlap_comm", "bucket_mb", "comm_timeout"}}},
      __FILE__,
      &TrainMain};
  return c;
}

}  // namespace ftune::cli
