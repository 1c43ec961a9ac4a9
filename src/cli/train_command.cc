// `ftune train`: fine-tune under mpirun (or as one process). Its flags, typed, become a validated
// TrainRequest (a bad one is a bad command line, exit code 2, before any file is touched); the run
// itself is train_run.cc.
#include <cmath>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/command.h"
#include "cli/shared_flags.h"
#include "cli/train_run.h"
#include "train/preemption.h"

ABSL_FLAG(ftune::train::ObjectiveKind, objective, ftune::train::ObjectiveKind::kClassification,
          "What to learn: classification (the family's *ForSequenceClassification, the labels of --train_data), or "
          "mlm (masked-language-model pretraining or domain-adaptive continued pretraining, as HF's run_mlm.py: "
          "its *ForMaskedLM, labels not needed; saves the hub's pretraining layout (distilbert-base-uncased's), which "
          "--objective=classification then loads with a fresh head).");
ABSL_FLAG(double, mlm_probability, 0.15,
          "--objective=mlm: share of non-special tokens chosen for prediction; of those 80% become [MASK], 10% a "
          "random token, 10% stay (HF's DataCollatorForLanguageModeling). The choice is drawn from (seed, epoch, "
          "example), so it does not depend on the number of ranks.");
ABSL_FLAG(std::string, train_data, "", "Training set: an HDF5 file written by `ftune prep`.");
ABSL_FLAG(std::string, eval_data, "", "Evaluation set (HDF5 from `ftune prep`); scored per --eval_strategy.");
ABSL_FLAG(std::optional<ftune::train::IntervalStrategy>, eval_strategy, std::nullopt,
          "When to evaluate on --eval_data (HF eval_strategy): no, steps (every --eval_steps optimizer steps) or "
          "epoch (after each epoch). Unset: epoch when --eval_data is given, else no.");
ABSL_FLAG(std::optional<int64_t>, eval_steps, std::nullopt,
          "--eval_strategy=steps: evaluate every this many optimizer steps (unset: --logging_steps, as HF).");
ABSL_FLAG(std::optional<ftune::train::EvalMetric>, metric_for_best_model, std::nullopt,
          "Eval metric that decides the best model: accuracy, macro_f1 (classification), mse, pearson, spearmanr "
          "(regression) or loss (eval_ prefix optional); unset = none, or loss when --load_best_model_at_end / "
          "--early_stopping_patience need one (as HF).");
ABSL_FLAG(std::optional<bool>, greater_is_better, std::nullopt,
          "Whether a larger --metric_for_best_model is better; unset: false for the loss and mse, else true (as HF).");
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
ABSL_FLAG(ftune::train::LrSchedulerType, lr_scheduler_type, ftune::train::LrSchedulerType::kLinear,
          "Learning-rate schedule after warmup, HF's names and formulas: linear, cosine, cosine_with_restarts, "
          "constant (no warmup), constant_with_warmup, polynomial.");
ABSL_FLAG(std::string, lr_scheduler_kwargs, "",
          "JSON object of schedule arguments, as HF's lr_scheduler_kwargs: num_cycles (cosine 0.5, "
          "cosine_with_restarts 1), power (polynomial, 1.0), lr_end (polynomial, 1e-7); an argument the schedule "
          "does not take is an error.");
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
ABSL_FLAG(ftune::cli::ReportTo, report_to, ftune::cli::ReportTo::kNone,
          "Where else the train and eval records go (HF report_to): none, or tensorboard (event files in "
          "<output_dir>/tensorboard, tags as HF's TensorBoardCallback: train/loss, eval/accuracy, ...).");
ABSL_FLAG(double, bucket_mb, 25, "Gradient all-reduce bucket size in MiB (> 0; fractions allowed).");
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
ABSL_FLAG(ftune::train::IntervalStrategy, save_strategy, ftune::train::IntervalStrategy::kNo,
          "When to write checkpoints to <output_dir>/checkpoints besides preemption (always): no, steps (every "
          "--save_steps) or epoch (after each epoch's evaluation), and at the end of training either way (as HF). "
          "HF's default is steps every 500.");
ABSL_FLAG(int64_t, save_steps, 500, "--save_strategy=steps: write a checkpoint every this many optimizer steps.");
ABSL_FLAG(int32_t, save_total_limit, 2,
          "Checkpoints kept (older ones are deleted; 0 = all). The best model's checkpoint is never deleted.");
ABSL_FLAG(std::string, resume, "",
          "auto: continue from the newest undamaged checkpoint in <output_dir>/checkpoints (start fresh, replacing a "
          "partial run, if there is none; exit at once if the run already finished), for requeue loops; or a "
          "checkpoint directory. A checkpoint must match the run (method, frozen weights, seed, training data, "
          "global batch) and its checksums. On CPU the result is bit-identical to an uninterrupted run. The global "
          "batch is kept: on another rank count the accumulation steps change to match (or give a --batch_size that "
          "makes it).");

namespace ftune::cli {
namespace {

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

// The flags as a TrainRequest, with HF's defaults resolved (eval_steps = logging_steps, the
// best-model metric and its direction), validated. InvalidArgument names the flag.
absl::StatusOr<TrainRequest> RequestFromFlags() {
  TrainRequest r;
  r.objective = absl::GetFlag(FLAGS_objective);
  r.method = absl::GetFlag(FLAGS_method);
  r.train_data = absl::GetFlag(FLAGS_train_data);
  r.eval_data = absl::GetFlag(FLAGS_eval_data);
  r.output_dir = absl::GetFlag(FLAGS_output_dir);
  r.resume = absl::GetFlag(FLAGS_resume);
  r.overwrite = absl::GetFlag(FLAGS_overwrite);
  r.save_model = absl::GetFlag(FLAGS_save_model);
  r.merge = absl::GetFlag(FLAGS_merge);
  r.report_to = absl::GetFlag(FLAGS_report_to);
  r.mlm_probability = absl::GetFlag(FLAGS_mlm_probability);
  r.loss.label_smoothing = absl::GetFlag(FLAGS_label_smoothing_factor);
  FTUNE_ASSIGN_OR_RETURN(r.loss.class_weights, ClassWeightsFromFlag());

  train::TrainOptions& o = r.train;
  o.data.epochs = absl::GetFlag(FLAGS_epochs);
  o.data.max_steps = absl::GetFlag(FLAGS_max_steps);
  o.data.batch_size = absl::GetFlag(FLAGS_batch_size);
  o.data.gradient_accumulation_steps = absl::GetFlag(FLAGS_gradient_accumulation_steps);
  o.data.seed = static_cast<uint64_t>(absl::GetFlag(FLAGS_seed));
  if (absl::GetFlag(FLAGS_seed) < 0) {
    return absl::InvalidArgumentError(absl::StrFormat("--seed must be >= 0 (got %d)", absl::GetFlag(FLAGS_seed)));
  }
  o.data.group_by_length = absl::GetFlag(FLAGS_group_by_length);
  o.data.pad_to_multiple_of = absl::GetFlag(FLAGS_pad_to_multiple_of);

  train::OptimizerOptions& opt = o.optimizer;
  opt.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  opt.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  opt.adam.beta1 = absl::GetFlag(FLAGS_adam_beta1);
  opt.adam.beta2 = absl::GetFlag(FLAGS_adam_beta2);
  opt.adam.eps = absl::GetFlag(FLAGS_adam_epsilon);
  opt.warmup_steps = absl::GetFlag(FLAGS_warmup_steps);
  opt.warmup_ratio = absl::GetFlag(FLAGS_warmup_ratio);
  FTUNE_ASSIGN_OR_RETURN(opt.lr_schedule, train::ParseLrSchedulerKwargs(absl::GetFlag(FLAGS_lr_scheduler_type),
                                                                        absl::GetFlag(FLAGS_lr_scheduler_kwargs)));
  opt.max_grad_norm = absl::GetFlag(FLAGS_max_grad_norm);
  opt.fused_adamw = absl::GetFlag(FLAGS_fused_adamw);
  opt.skip_nonfinite = absl::GetFlag(FLAGS_skip_nonfinite);
  opt.loss_scaling = absl::GetFlag(FLAGS_precision) == Precision::kFp16;

  o.logging.logging_steps = absl::GetFlag(FLAGS_logging_steps);
  o.logging.time_phases = absl::GetFlag(FLAGS_time_phases);

  const double bucket_mb = absl::GetFlag(FLAGS_bucket_mb);
  if (!(bucket_mb > 0) || !std::isfinite(bucket_mb) || bucket_mb > 1 << 20) {
    return absl::InvalidArgumentError(absl::StrFormat("--bucket_mb must be in (0, 2^20] MiB (got %g)", bucket_mb));
  }
  o.comm.bucket_bytes = static_cast<size_t>(std::max(1024.0, bucket_mb * (1 << 20)));
  o.comm.overlap_comm = absl::GetFlag(FLAGS_overlap_comm);
  o.cache_frozen_features = absl::GetFlag(FLAGS_cache_frozen_features);

  train::EvalOptions& e = o.eval;
  const bool has_eval = !r.eval_data.empty();
  e.strategy = absl::GetFlag(FLAGS_eval_strategy)
                   .value_or(has_eval ? train::IntervalStrategy::kEpoch : train::IntervalStrategy::kNo);
  const std::optional<int64_t> eval_steps = absl::GetFlag(FLAGS_eval_steps);
  if (eval_steps && *eval_steps <= 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--eval_steps must be > 0 (unset: --logging_steps; got %d)", *eval_steps));
  }
  e.steps = eval_steps.value_or(o.logging.logging_steps);
  e.batch_size = absl::GetFlag(FLAGS_eval_batch_size);
  e.load_best_model_at_end = absl::GetFlag(FLAGS_load_best_model_at_end);
  e.early_stopping_patience = absl::GetFlag(FLAGS_early_stopping_patience);
  e.early_stopping_threshold = absl::GetFlag(FLAGS_early_stopping_threshold);
  e.metric = absl::GetFlag(FLAGS_metric_for_best_model);
  if (!e.metric && (e.load_best_model_at_end || e.early_stopping_patience > 0)) e.metric = train::EvalMetric::kLoss;
  e.greater_is_better = absl::GetFlag(FLAGS_greater_is_better).value_or(!e.metric || train::GreaterIsBetter(*e.metric));

  r.checkpoints.strategy = absl::GetFlag(FLAGS_save_strategy);
  r.checkpoints.steps = absl::GetFlag(FLAGS_save_steps);
  r.checkpoints.total_limit = absl::GetFlag(FLAGS_save_total_limit);
  FTUNE_RETURN_IF_ERROR(r.Validate());
  return r;
}

int TrainMain(const std::vector<std::string>& positional) {
  if (!positional.empty())
    return ReportFailure(absl::InvalidArgumentError("unexpected argument '" + positional[0] + "'"));
  // First thing: a SIGUSR1/SIGTERM that arrives while MPI starts or the model loads must not kill
  // the process (their default action); the flag is honoured at the first step boundary.
  train::InstallPreemptionHandlers();
  auto request = RequestFromFlags();
  if (!request.ok()) return ReportFailure(request.status());
  return RunWithContext([&](RunContext& run) { return RunTrain(run, *std::move(request)); });
}

}  // namespace

const Command& TrainCommand() {
  static const Command c{
      "train",
      "fine-tune (full, head, bitfit, last_k, lora, dora, ia3) or pretrain (mlm) on an HDF5 dataset",
      "Fine-tunes a transformer encoder (config.json's model_type: distilbert) for sequence\n"
      "classification with Hugging Face Trainer's defaults (AdamW lr 5e-5, linear decay, clip 1.0,\n"
      "3 epochs, batch 8, seed 42), evaluating accuracy after every epoch. Launch with mpirun to\n"
      "spread batches over ranks: each rank reads its share of every global batch and only\n"
      "trainable gradients are all-reduced (NCCL on GPUs, MPI on CPUs).\n\n"
      "  ftune train --flagfile=configs/lora.flags --model_dir=distilbert-base-uncased \\\n"
      "              --train_data=train.h5 --eval_data=eval.h5 --output_dir=runs/lora\n"
      "  mpirun -np 4 ftune train --method=full ...\n\n"
      "Writes <output_dir>/metrics.jsonl, results.json, run_config.json and model/ (config.json +\n"
      "model.safetensors, or a PEFT adapter for lora, dora and ia3 without --merge).\n\n"
      "Bad flags are refused before anything is written (exit code 2); flags of other commands may\n"
      "sit in a --flagfile (a named run several commands read), not on the command line.\n\n"
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
