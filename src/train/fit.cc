// Trainer::Fit: the loop of a run. It owns the run's position and sums (RunState) and sequences
// the periodic concerns, each of which decides for itself at every LoopPoint: logging
// (LoggingOptions::ShouldLog), evaluation (Evaluator), the best model and early stopping
// (BestModel), checkpoints (Checkpointer) and stop signals. The step itself is Trainer::Step.
#include <algorithm>
#include <chrono>

#include "absl/strings/str_format.h"
#include "common/log.h"
#include "data/sampler.h"
#include "train/evaluator.h"
#include "train/preemption.h"
#include "train/trainer.h"

namespace ftune::train {
namespace fit_detail {

using Clock = std::chrono::steady_clock;
inline double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Per-step numbers stay on the device between flushes (a log line, a checkpoint, the end of an
// epoch): reading them every step would make the host wait for the device at every step, and at
// batch 8 on a GPU the host's launch work is what bounds the step.
class DeviceSums {
 public:
  explicit DeviceSums(const torch::Device& device)
      : acc_(torch::zeros({2}, torch::TensorOptions().dtype(torch::kDouble).device(device))) {}
  void Add(const StepStats& s) {
    acc_.narrow(0, 0, 1).add_(s.loss_sum);  // [0] loss
    acc_.narrow(0, 1, 1).add_(s.skipped);   // [1] skipped steps
    ++steps_;
  }
  struct Host {
    double loss = 0;
    int64_t skipped = 0, steps = 0;
  };
  // Waits for the device, returns the sums since the last flush and restarts them.
  Host Flush() {
    Host h;
    h.steps = steps_;
    if (steps_ == 0) return h;
    torch::Tensor a = acc_.to(torch::kCPU);
    h.loss = a[0].item<double>();
    h.skipped = static_cast<int64_t>(a[1].item<double>());
    acc_.zero_();
    steps_ = 0;
    return h;
  }

 private:
  torch::Tensor acc_;
  int64_t steps_ = 0;
};

class Loop {
 public:
  Loop(Trainer& t, const data::TokenDataset& train, const data::TokenDataset* eval, MetricsLog* log,
       const CheckpointOptions& ckpt, std::string data_fingerprint)
      : t_(t),
        o_(t.options()),
        train_(train),
        log_(log),
        evaluator_(o_.eval, eval),
        best_(o_.eval),
        checkpointer_(ckpt),
        data_fingerprint_(std::move(data_fingerprint)),
        sums_(t.device()) {}

  absl::StatusOr<FitResult> Execute(const std::string& resume_from) {
    FTUNE_RETURN_IF_ERROR(Plan());
    if (!resume_from.empty()) FTUNE_RETURN_IF_ERROR(Resume(resume_from));
    FTUNE_RETURN_IF_ERROR(CacheFrozenFeatures());
    data::SamplerOptions so;
    so.batch_size = o_.data.batch_size;
    so.world_size = t_.host_comm().world_size();
    so.accumulation_steps = o_.data.gradient_accumulation_steps;
    so.seed = o_.data.seed;
    so.group_by_length = o_.data.group_by_length;
    data::BatchLoader loader(&train_, so, t_.host_comm().rank(), o_.data.pad_token_id, o_.data.prefetch,
                             t_.objective().ReadsTokens());
    loader.set_padding(o_.data.pad_to_multiple_of, t_.objective().config().max_position_embeddings);
    if (auto masking = t_.objective().Masking()) loader.set_masking(*masking);
    // An epoch ends with its evaluation even when training stopped early (also when a resumed
    // run's checkpoint was written after early stopping: it has only its epoch to close).
    while (state_.epoch < epochs_ && (state_.global_step < total_steps_ || state_.eval_pending)) {
      if (!state_.eval_pending) FTUNE_RETURN_IF_ERROR(TrainEpoch(loader));
      if (stop_ == StopReason::kSignal) break;
      FTUNE_RETURN_IF_ERROR(EndEpoch());
      if (stop_ != StopReason::kNone) break;
    }
    if (stop_ != StopReason::kSignal) {
      FTUNE_ASSIGN_OR_RETURN(result_.loaded_best, best_.LoadInto(t_.flat(), state_.global_step));
    }
    result_.stop = stop_;
    result_.state = state_;
    result_.best = best_.state();
    result_.phases = t_.phases();
    return std::move(result_);
  }

 private:
  // The step count, the trainer's buffers and optimizer, and the plan in the log.
  absl::Status Plan() {
    const int world = t_.host_comm().world_size();
    const int64_t accumulation = o_.data.gradient_accumulation_steps;
    const int64_t global_batch = o_.global_batch(world);
    steps_per_epoch_ = data::StepsPerEpoch(train_.size(), global_batch);
    if (steps_per_epoch_ == 0)
      return absl::FailedPreconditionError(absl::StrFormat("%s has no examples", train_.path()));
    total_steps_ = o_.data.max_steps > 0 ? o_.data.max_steps : o_.data.epochs * steps_per_epoch_;
    epochs_ = (total_steps_ + steps_per_epoch_ - 1) / steps_per_epoch_;
    FTUNE_RETURN_IF_ERROR(t_.Prepare(total_steps_));
    LogInfo(
        "training: %d examples, %d epochs x %d steps = %d steps, global batch %d (%d per rank x %d ranks%s), "
        "%d trainable parameters (%s per step, gradients %s)",
        train_.size(), epochs_, steps_per_epoch_, total_steps_, global_batch, o_.data.batch_size, world,
        accumulation > 1 ? absl::StrFormat(" x %d accumulated micro-batches", accumulation) : "", t_.flat().numel(),
        absl::StrFormat("%.2f MB", t_.flat().bytes() / 1e6),
        !t_.sends_gradients() ? "stay local: one rank" : absl::StrCat("all-reduced over ", t_.reducer().transport()));
    return absl::OkStatus();
  }

  absl::Status Resume(const std::string& path) {
    FTUNE_ASSIGN_OR_RETURN(state_, checkpointer_.Restore(t_.host_comm(), path, Identity(), t_.flat(),
                                                         t_.optimizer(), t_.scaler(), best_));
    if (best_.state().stopped) stop_ = StopReason::kEarlyStopping;
    flushed_step_ = state_.global_step;
    LogInfo("resumed from %s: epoch %d, step %d of the epoch, global step %d", path, state_.epoch + 1,
            state_.step_in_epoch, state_.global_step);
    return absl::OkStatus();
  }

  absl::Status CacheFrozenFeatures() {
    if (!o_.cache_frozen_features) return absl::OkStatus();
    const auto t0 = Clock::now();
    FTUNE_RETURN_IF_ERROR(t_.objective().CacheFrozenFeatures(train_, evaluator_.dataset(), t_.tensor_comm(),
                                                             t_.InferenceOptionsForRun()));
    result_.feature_cache_seconds = Since(t0);
    LogInfo(
        "feature cache: encoded %d training%s examples once in %s (training now runs on fixed outputs of the "
        "frozen layers: no dropout there)",
        train_.size(), evaluator_.dataset() ? absl::StrFormat(" + %d eval", evaluator_.dataset()->size()) : "",
        FormatDuration(result_.feature_cache_seconds));
    return absl::OkStatus();
  }

  // This rank's micro-batches of the next step (empty at the end of the epoch).
  absl::StatusOr<std::vector<data::HostBatch>> NextStep(data::BatchLoader& loader) {
    std::vector<data::HostBatch> micro;
    while (static_cast<int64_t>(micro.size()) < o_.data.gradient_accumulation_steps) {
      FTUNE_ASSIGN_OR_RETURN(std::optional<data::HostBatch> batch, loader.Next());
      if (!batch) break;
      micro.push_back(std::move(*batch));
    }
    if (!micro.empty() && static_cast<int64_t>(micro.size()) != o_.data.gradient_accumulation_steps) {
      return absl::InternalError(absl::StrFormat("step %d got %d of its %d micro-batches", micro.front().step,
                                                 micro.size(), o_.data.gradient_accumulation_steps));
    }
    return micro;
  }

  // Trains the rest of the epoch in progress (until its end, the run's last step, or a stop).
  absl::Status TrainEpoch(data::BatchLoader& loader) {
    loader.StartEpoch(state_.epoch, state_.step_in_epoch);
    const auto start = Clock::now();
    const double seconds_before = state_.epoch_seconds;
    double eval_seconds = 0;  // step evaluations: not training time
    auto clock_epoch = [&] { state_.epoch_seconds = seconds_before + Since(start) - eval_seconds; };
    while (state_.global_step < total_steps_ && stop_ == StopReason::kNone) {
      const auto t_data = Clock::now();
      FTUNE_ASSIGN_OR_RETURN(std::vector<data::HostBatch> micro, NextStep(loader));
      if (micro.empty()) break;
      if (o_.logging.time_phases) t_.phases().data += Since(t_data);
      const double comm_before = t_.reducer().seconds();
      FTUNE_ASSIGN_OR_RETURN(StepStats s, t_.Step(micro, state_.global_step));
      sums_.Add(s);
      ++state_.global_step;
      state_.step_in_epoch = micro.front().step + 1;
      state_.window += s.totals;
      state_.epoch_totals += s.totals;
      state_.comm_seconds += t_.reducer().seconds() - comm_before;
      const LoopPoint point{LoopPoint::At::kStep, state_.global_step,
                            state_.global_step == total_steps_ || state_.step_in_epoch == steps_per_epoch_};
      const bool log_now = o_.logging.ShouldLog(point), save_now = checkpointer_.ShouldSave(point);
      if (log_now || save_now) FTUNE_RETURN_IF_ERROR(Flush());  // waits for the device
      clock_epoch();
      if (log_now) FTUNE_RETURN_IF_ERROR(LogTrain(s));
      if (evaluator_.ShouldEvaluate(point)) {
        FTUNE_RETURN_IF_ERROR(Flush());
        FTUNE_ASSIGN_OR_RETURN(std::optional<EvalStats> e, Evaluate());
        if (e) eval_seconds += e->seconds;
        clock_epoch();
      }
      if (stop_ == StopReason::kNone) FTUNE_RETURN_IF_ERROR(StopIfSignalled());
      if (stop_ == StopReason::kSignal) return absl::OkStatus();
      if (save_now) FTUNE_RETURN_IF_ERROR(Save());
    }
    FTUNE_RETURN_IF_ERROR(Flush());
    clock_epoch();
    state_.eval_pending = true;
    return absl::OkStatus();
  }

  // The epoch's global sums, its evaluation, the human line and the epoch-end checkpoint.
  absl::Status EndEpoch() {
    log_->EndProgress();
    FTUNE_ASSIGN_OR_RETURN(Totals global, state_.epoch_totals.SumOverRanks(t_.host_comm()));
    auto point = [&] {  // after the evaluation, which may stop the run early
      return LoopPoint{LoopPoint::At::kEpochEnd, state_.global_step,
                       state_.global_step >= total_steps_ || stop_ == StopReason::kEarlyStopping};
    };
    std::optional<EvalStats> eval;
    if (evaluator_.ShouldEvaluate(point())) {
      FTUNE_ASSIGN_OR_RETURN(eval, Evaluate());
      if (stop_ == StopReason::kSignal) return absl::OkStatus();
    }
    const EpochRecord& rec = state_.CloseEpoch(global, eval);
    std::string line = absl::StrFormat("epoch %d/%d: train loss %.4f, %.1f samples/s, %.0f tokens/s, %s", rec.epoch,
                                       epochs_, rec.train_loss(), rec.samples_per_second(), rec.tokens_per_second(),
                                       FormatDuration(rec.seconds));
    if (eval) absl::StrAppend(&line, "; ", t_.objective().DescribeEval(*eval));
    LogInfo("%s", line);
    if (checkpointer_.ShouldSave(point())) FTUNE_RETURN_IF_ERROR(Save());
    return absl::OkStatus();
  }

  // Scores the eval set (the feature cache when there is one), logs it, and lets the best model
  // decide (early stopping sets stop_). A stop signal during the pass abandons it at a batch
  // boundary on every rank and checkpoints (stop_ = kSignal; a resumed run evaluates again).
  absl::StatusOr<std::optional<EvalStats>> Evaluate() {
    log_->EndProgress();
    InferenceOptions io = t_.InferenceOptionsForRun();
    io.should_stop = [this]() { return t_.AnyRankStopping(); };
    FTUNE_ASSIGN_OR_RETURN(std::optional<EvalStats> e, evaluator_.Run(t_.objective(), t_.host_comm(), io));
    if (!e) {
      FTUNE_RETURN_IF_ERROR(StopIfSignalled());
      if (stop_ != StopReason::kSignal) return absl::InternalError("the evaluation stopped without a stop signal");
      return e;
    }
    nlohmann::json r = {{"type", "eval"},
                        {"epoch", state_.epoch + static_cast<double>(state_.step_in_epoch) / steps_per_epoch_},
                        {"step", state_.global_step}};
    if (o_.eval.strategy == IntervalStrategy::kEpoch) r["epoch"] = state_.epoch + 1;
    r.update(e->ToJson());
    t_.objective().AnnotateEval(*e, &r);
    FTUNE_ASSIGN_OR_RETURN(const BestModel::Verdict verdict, best_.Observe(*e, state_.global_step, t_.flat()));
    if (best_.enabled()) {
      r["best_metric"] = *best_.state().best_metric;
      r["best_step"] = best_.state().best_step;
    }
    if (verdict.stop) stop_ = StopReason::kEarlyStopping;
    log_->Write(r);
    if (o_.eval.strategy == IntervalStrategy::kSteps) {
      LogInfo("step %d/%d: %s", state_.global_step, total_steps_, t_.objective().DescribeEval(*e));
    }
    return e;
  }

  // Moves the device-side sums into the state and acts on skipped (non-finite) steps since the
  // last flush.
  absl::Status Flush() {
    const DeviceSums::Host h = sums_.Flush();
    state_.window.loss += h.loss;
    state_.epoch_totals.loss += h.loss;
    const int64_t first = flushed_step_ + 1;
    flushed_step_ = state_.global_step;
    if (h.skipped == 0) return absl::OkStatus();
    result_.skipped_steps += h.skipped;
    const std::string where = h.steps == 1
                                  ? absl::StrFormat("step %d", first)
                                  : absl::StrFormat("%d of the steps %d..%d", h.skipped, first, state_.global_step);
    if (t_.scaler() != nullptr) return absl::OkStatus();  // fp16 overflow: the scaler backed off (GradScaler's routine)
    if (!o_.optimizer.skip_nonfinite) {
      log_->EndProgress();
      return absl::InternalError(absl::StrFormat(
          "non-finite gradient norm in %s: the update was skipped (the weights are intact) and the run stops. "
          "Lower --learning_rate, check the data, or pass --skip_nonfinite to go on past such steps",
          where));
    }
    LogWarn("non-finite gradient norm in %s; update skipped (--skip_nonfinite)", where);
    return absl::OkStatus();
  }

  absl::Status LogTrain(const StepStats& s) {
    FTUNE_ASSIGN_OR_RETURN(Totals window, state_.window.SumOverRanks(t_.host_comm()));
    FTUNE_ASSIGN_OR_RETURN(Totals epoch, state_.epoch_totals.SumOverRanks(t_.host_comm()));
    const double samples_per_second = epoch.examples / std::max(state_.epoch_seconds, 1e-9);
    log_->Write({{"type", "train"},
                 {"epoch", state_.epoch + static_cast<double>(state_.step_in_epoch) / steps_per_epoch_},
                 {"step", state_.global_step},
                 {"loss", window.MeanLoss()},
                 {"learning_rate", s.lr},
                 {"grad_norm", s.GradNorm()},
                 {"samples_per_second", samples_per_second},
                 {"comm_bytes_per_step", t_.reducer().bytes_per_step()},
                 {"comm_seconds", state_.comm_seconds}});
    log_->Progress(absl::StrFormat("[epoch %d/%d] step %d/%d loss %.4f lr %.2e %.1f samples/s", state_.epoch + 1,
                                   epochs_, state_.global_step, total_steps_, window.MeanLoss(), s.lr,
                                   samples_per_second));
    state_.window = Totals();
    return absl::OkStatus();
  }

  // When any rank got a stop signal: a checkpoint, and stop_ = kSignal (the run ends, resumable).
  absl::Status StopIfSignalled() {
    FTUNE_ASSIGN_OR_RETURN(bool stopping, t_.AnyRankStopping());
    if (!stopping) return absl::OkStatus();
    log_->EndProgress();
    if (!checkpointer_.enabled())
      return absl::CancelledError("stopped by a signal, and checkpoints are off (no --output_dir)");
    FTUNE_RETURN_IF_ERROR(Flush());
    FTUNE_RETURN_IF_ERROR(Save());
    stop_ = StopReason::kSignal;
    result_.stop_signal = StopSignal();
    LogInfo(
        "stopped by signal %d at epoch %d, step %d of %d (global step %d); checkpoint %s; continue with "
        "--resume=auto",
        result_.stop_signal, state_.epoch + 1, state_.step_in_epoch, steps_per_epoch_, state_.global_step,
        result_.checkpoint);
    return absl::OkStatus();
  }

  absl::Status Save() {
    FTUNE_ASSIGN_OR_RETURN(result_.checkpoint, checkpointer_.Save(t_.host_comm(), state_, t_.flat(), t_.optimizer(),
                                                                  t_.scaler(), best_, Identity()));
    return absl::OkStatus();
  }

  CheckpointIdentity Identity() {
    // Hashing a frozen encoder reads ~270 MB: only when a checkpoint is written or read.
    if (!frozen_fingerprint_) frozen_fingerprint_ = FrozenFingerprint(t_.objective().module());
    CheckpointIdentity id;
    id.world_size = t_.host_comm().world_size();
    id.global_batch = o_.global_batch(id.world_size);
    id.seed = o_.data.seed;
    id.frozen_fingerprint = *frozen_fingerprint_;
    id.data_fingerprint = data_fingerprint_;
    return id;
  }

  Trainer& t_;
  const TrainOptions& o_;
  const data::TokenDataset& train_;
  MetricsLog* log_;
  Evaluator evaluator_;
  BestModel best_;
  Checkpointer checkpointer_;
  std::string data_fingerprint_;
  int64_t steps_per_epoch_ = 0, total_steps_ = 0, epochs_ = 0;
  RunState state_;
  StopReason stop_ = StopReason::kNone;
  DeviceSums sums_;
  int64_t flushed_step_ = 0;
  std::optional<uint64_t> frozen_fingerprint_;
  FitResult result_;
};

}  // namespace fit_detail

absl::StatusOr<FitResult> Trainer::Fit(const data::TokenDataset& train, const data::TokenDataset* eval, MetricsLog* log,
                                       const CheckpointOptions& ckpt, const std::string& resume_from,
                                       const std::string& data_fingerprint) {
  fit_detail::Loop loop(*this, train, eval, log, ckpt, data_fingerprint);
  return loop.Execute(resume_from);
}

}  // namespace ftune::train
