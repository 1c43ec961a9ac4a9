#include "train/trainer.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/random.h"
#include "common/torch_compat.h"
#include "data/sampler.h"
#include "train/device_batch.h"
#include "train/preemption.h"

namespace ftune::train {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Wall time per phase of a step. Device work is asynchronous, so with `enabled` each mark first
// waits for the device (what a profiler's step breakdown costs); disabled, marks are free.
class PhaseClock {
 public:
  PhaseClock(bool enabled, const torch::Device& device) : enabled_(enabled), cuda_(device.is_cuda()) {
    if (enabled_) last_ = Now();
  }
  void Mark(double* bucket) {
    if (!enabled_) return;
    const Clock::time_point now = Now();
    *bucket += std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }

 private:
  Clock::time_point Now() const {
    if (cuda_) torch::cuda::synchronize();
    return Clock::now();
  }
  bool enabled_, cuda_;
  Clock::time_point last_;
};

}  // namespace

// A field of Trainer::Run, so not in the anonymous namespace (which a unity build would warn about).
namespace trainer_detail {

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

}  // namespace trainer_detail

// One Fit: the run's plan, position and sums, and the periodic concerns (log, checkpoint,
// evaluation, stop signals), each in its own method; Execute() is the loop.
class Trainer::Run {
 public:
  Run(Trainer& t, const data::TokenDataset& train, const data::TokenDataset* eval, MetricsLog* log,
      const CheckpointOptions& ckpt)
      : t_(t), train_(train), eval_(eval), log_(log), ckpt_(ckpt), sums_(t.device_) {}

  absl::StatusOr<FitResult> Execute(const std::string& resume_from) {
    FTUNE_RETURN_IF_ERROR(Plan());
    if (!resume_from.empty()) FTUNE_RETURN_IF_ERROR(Resume(resume_from));
    FTUNE_RETURN_IF_ERROR(CacheFrozenFeatures());
    data::SamplerOptions so;
    so.batch_size = t_.options_.batch_size;
    so.world_size = t_.host_comm_->world_size();
    so.accumulation_steps = t_.options_.gradient_accumulation_steps;
    so.seed = t_.options_.seed;
    so.group_by_length = t_.options_.group_by_length;
    data::BatchLoader loader(&train_, so, t_.host_comm_->rank(), t_.options_.pad_token_id, t_.options_.prefetch,
                             t_.objective_->ReadsTokens());
    loader.set_padding(t_.options_.pad_to_multiple_of, t_.objective_->config().max_position_embeddings);
    if (auto masking = t_.objective_->Masking()) loader.set_masking(*masking);
    while (state_.epoch < epochs_ && (t_.global_step_ < total_steps_ || state_.eval_pending)) {
      if (!state_.eval_pending) {
        FTUNE_ASSIGN_OR_RETURN(bool go_on, TrainEpoch(loader));  // ends at once when stopped early
        if (!go_on) break;
      }
      FTUNE_ASSIGN_OR_RETURN(bool go_on, EndEpoch());
      if (!go_on || state_.stopped_early) break;
    }
    FTUNE_RETURN_IF_ERROR(LoadBestModel());
    result_.state = state_;
    result_.phases = t_.phases_;
    return std::move(result_);
  }

 private:
  // The step count, the trainer's buffers and optimizer, and the plan in the log.
  absl::Status Plan() {
    const int world = t_.host_comm_->world_size();
    const int64_t accumulation = t_.options_.gradient_accumulation_steps;
    const int64_t global_batch = t_.options_.batch_size * world * accumulation;
    steps_per_epoch_ = data::StepsPerEpoch(train_.size(), global_batch);
    if (steps_per_epoch_ == 0)
      return absl::FailedPreconditionError(absl::StrFormat("%s has no examples", train_.path()));
    total_steps_ = t_.options_.max_steps > 0 ? t_.options_.max_steps : t_.options_.epochs * steps_per_epoch_;
    epochs_ = (total_steps_ + steps_per_epoch_ - 1) / steps_per_epoch_;
    FTUNE_RETURN_IF_ERROR(t_.Prepare(total_steps_));
    LogInfo(
        "training: %d examples, %d epochs x %d steps = %d steps, global batch %d (%d per rank x %d ranks%s), "
        "%d trainable parameters (%s per step, gradients %s)",
        train_.size(), epochs_, steps_per_epoch_, total_steps_, global_batch, t_.options_.batch_size, world,
        accumulation > 1 ? absl::StrFormat(" x %d accumulated micro-batches", accumulation) : "", t_.flat_->numel(),
        absl::StrFormat("%.2f MB", t_.flat_->bytes() / 1e6),
        t_.gradient_comm_ == nullptr ? "stay local: one rank"
                                     : absl::StrCat("all-reduced over ", t_.reducer_->transport()));
    return absl::OkStatus();
  }

  absl::Status Resume(const std::string& path) {
    FTUNE_ASSIGN_OR_RETURN(state_, ReadCheckpoint(path, Identity(), *t_.flat_, *t_.optimizer_, &best_params_));
    if (t_.options_.load_best_model_at_end && state_.best_metric && best_params_.empty()) {
      if (state_.best_step != state_.global_step) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "%s holds no best-model weights (written without --load_best_model_at_end), so the best model of step %d "
            "cannot be restored; resume without --load_best_model_at_end",
            path, state_.best_step));
      }
      SnapshotBest();  // the best model is the checkpoint's own weights
    }
    t_.global_step_ = state_.global_step;
    if (t_.scaler_ && state_.loss_scale > 0) t_.scaler_->Restore(state_.loss_scale, state_.loss_scale_growth_tracker);
    // Global sums were stored; rank 0 carries them, the others restart from zero.
    if (t_.host_comm_->rank() != 0) state_.epoch_totals = state_.window = Totals();
    LogInfo("resumed from %s: epoch %d, step %d of the epoch, global step %d", path, state_.epoch + 1,
            state_.step_in_epoch, state_.global_step);
    return absl::OkStatus();
  }

  absl::Status CacheFrozenFeatures() {
    if (!t_.options_.cache_frozen_features) return absl::OkStatus();
    const auto t0 = Clock::now();
    dist::Communicator* comm = t_.gradient_comm_ != nullptr ? t_.gradient_comm_ : t_.host_comm_;
    FTUNE_RETURN_IF_ERROR(t_.objective_->CacheFrozenFeatures(train_, eval_, *comm, t_.InferenceOptionsForRun()));
    result_.feature_cache_seconds = Since(t0);
    LogInfo(
        "feature cache: encoded %d training%s examples once in %s (training now runs on fixed outputs of the "
        "frozen layers: no dropout there)",
        train_.size(), eval_ ? absl::StrFormat(" + %d eval", eval_->size()) : "",
        FormatDuration(result_.feature_cache_seconds));
    return absl::OkStatus();
  }

  // Trains the rest of the epoch in progress. False: the run was stopped by a signal.
  absl::StatusOr<bool> TrainEpoch(data::BatchLoader& loader) {
    loader.StartEpoch(state_.epoch, state_.step_in_epoch);
    const auto start = Clock::now();
    const double seconds_before = state_.epoch_seconds;
    double eval_seconds = 0;  // step evaluations: not training time
    std::vector<data::HostBatch> micro;
    while (t_.global_step_ < total_steps_ && !state_.stopped_early) {
      const auto t_data = Clock::now();
      micro.clear();
      while (static_cast<int64_t>(micro.size()) < t_.options_.gradient_accumulation_steps) {
        FTUNE_ASSIGN_OR_RETURN(std::optional<data::HostBatch> batch, loader.Next());
        if (!batch) break;
        micro.push_back(std::move(*batch));
      }
      if (micro.empty()) break;
      if (static_cast<int64_t>(micro.size()) != t_.options_.gradient_accumulation_steps) {
        return absl::InternalError(absl::StrFormat("step %d got %d of its %d micro-batches", micro.front().step,
                                                   micro.size(), t_.options_.gradient_accumulation_steps));
      }
      if (t_.options_.time_phases) t_.phases_.data += Since(t_data);
      const double comm_before = t_.reducer_->seconds();
      FTUNE_ASSIGN_OR_RETURN(StepStats s, t_.Step(micro));
      sums_.Add(s);
      state_.global_step = t_.global_step_;
      state_.step_in_epoch = micro.front().step + 1;
      state_.window += s.totals;
      state_.epoch_totals += s.totals;
      state_.comm_seconds += t_.reducer_->seconds() - comm_before;
      const bool ends = t_.global_step_ == total_steps_ || state_.step_in_epoch == steps_per_epoch_;
      const bool log_now = t_.options_.ShouldLog(t_.global_step_, ends);
      const bool save_now = ShouldSave(ckpt_, t_.global_step_, ends);
      if (log_now || save_now) FTUNE_RETURN_IF_ERROR(Flush());  // waits for the device
      state_.epoch_seconds = seconds_before + Since(start) - eval_seconds;
      if (log_now) FTUNE_RETURN_IF_ERROR(LogTrain(s));
      if (eval_ != nullptr && t_.options_.eval_strategy == EvalStrategy::kSteps &&
          t_.global_step_ % t_.options_.eval_steps == 0) {
        FTUNE_RETURN_IF_ERROR(Flush());
        FTUNE_ASSIGN_OR_RETURN(std::optional<EvalStats> e, Evaluate());
        if (!e) return false;  // stopped by a signal
        eval_seconds += e->seconds;
        state_.epoch_seconds = seconds_before + Since(start) - eval_seconds;
      }
      FTUNE_ASSIGN_OR_RETURN(bool stopped, StopIfSignalled());
      if (stopped) return false;
      if (save_now) FTUNE_RETURN_IF_ERROR(Save());
    }
    FTUNE_RETURN_IF_ERROR(Flush());
    state_.epoch_seconds = seconds_before + Since(start) - eval_seconds;
    state_.eval_pending = true;
    return true;
  }

  // The epoch's global sums, its evaluation, the human line and the epoch-end checkpoint.
  // False: stopped by a signal during the evaluation.
  absl::StatusOr<bool> EndEpoch() {
    log_->EndProgress();
    FTUNE_ASSIGN_OR_RETURN(Totals global, state_.epoch_totals.SumOverRanks(*t_.host_comm_));
    std::optional<EvalStats> eval;
    if (eval_ != nullptr && t_.options_.eval_strategy == EvalStrategy::kEpoch) {
      FTUNE_ASSIGN_OR_RETURN(eval, Evaluate());
      if (!eval) return false;  // stopped by a signal
    }
    const EpochRecord& rec = state_.CloseEpoch(global, eval);
    std::string line = absl::StrFormat("epoch %d/%d: train loss %.4f, %.1f samples/s, %.0f tokens/s, %s", rec.epoch,
                                       epochs_, rec.train_loss(), rec.samples_per_second(), rec.tokens_per_second(),
                                       FormatDuration(rec.seconds));
    if (eval) absl::StrAppend(&line, "; ", t_.objective_->DescribeEval(*eval));
    LogInfo("%s", line);
    if (ShouldSaveAtEpochEnd(ckpt_, t_.global_step_ >= total_steps_ || state_.stopped_early)) {
      FTUNE_RETURN_IF_ERROR(Save());
    }
    return true;
  }

  // Scores the eval set (the feature cache when there is one), logs it, and updates the best
  // model and early stopping. std::nullopt: abandoned for a stop signal (then checkpointed).
  absl::StatusOr<std::optional<EvalStats>> Evaluate() {
    log_->EndProgress();
    absl::StatusOr<EvalStats> e = t_.Evaluate(*eval_);
    if (absl::IsCancelled(e.status())) {
      FTUNE_ASSIGN_OR_RETURN(bool stopped, StopIfSignalled());
      if (stopped) return std::optional<EvalStats>();
    }
    FTUNE_RETURN_IF_ERROR(e.status());
    nlohmann::json r = {{"type", "eval"},
                        {"epoch", state_.epoch + static_cast<double>(state_.step_in_epoch) / steps_per_epoch_},
                        {"step", t_.global_step_}};
    if (t_.options_.eval_strategy == EvalStrategy::kEpoch) r["epoch"] = state_.epoch + 1;
    r.update(e->ToJson());
    t_.objective_->AnnotateEval(*e, &r);
    FTUNE_RETURN_IF_ERROR(TrackBest(*e, &r));
    log_->Write(r);
    if (t_.options_.eval_strategy == EvalStrategy::kSteps) {
      LogInfo("step %d/%d: %s", t_.global_step_, total_steps_, t_.objective_->DescribeEval(*e));
    }
    return std::optional<EvalStats>(*e);
  }

  // HF's order: early stopping compares with the best before this evaluation (it must beat it by
  // more than the threshold), then the best metric moves on any strict improvement.
  absl::Status TrackBest(const EvalStats& e, nlohmann::json* record) {
    const TrainOptions& o = t_.options_;
    if (o.metric_for_best_model.empty()) return absl::OkStatus();
    FTUNE_ASSIGN_OR_RETURN(const double value, e.Metric(o.metric_for_best_model));
    auto better = [&](double a, double b) { return o.greater_is_better ? a > b : a < b; };
    const std::optional<double> before = state_.best_metric;
    if (o.early_stopping_patience > 0) {
      if (!before || (better(value, *before) && std::abs(value - *before) > o.early_stopping_threshold)) {
        state_.patience_counter = 0;
      } else if (++state_.patience_counter >= o.early_stopping_patience) {
        state_.stopped_early = true;
        LogInfo("early stopping at step %d: %s has not improved on %.6g (step %d) by more than %g for %d evaluations",
                t_.global_step_, o.metric_for_best_model, *before, state_.best_step, o.early_stopping_threshold,
                state_.patience_counter);
      }
    }
    if (!before || better(value, *before)) {
      state_.best_metric = value;
      state_.best_step = t_.global_step_;
      if (o.load_best_model_at_end) SnapshotBest();
    }
    (*record)["best_metric"] = *state_.best_metric;
    (*record)["best_step"] = state_.best_step;
    return absl::OkStatus();
  }

  void SnapshotBest() {
    torch::NoGradGuard no_grad;
    auto& groups = t_.flat_->groups();
    if (best_params_.size() != groups.size()) {
      best_params_.clear();
      for (const auto& g : groups) best_params_.push_back(torch::empty_like(g.params));
    }
    for (size_t i = 0; i < groups.size(); ++i) best_params_[i].copy_(groups[i].params);
  }

  // load_best_model_at_end: the trained model becomes the best one (identical on every rank: the
  // parameters are after the all-reduce and the decision is from summed counts).
  absl::Status LoadBestModel() {
    if (!t_.options_.load_best_model_at_end || !state_.best_metric || state_.best_step == state_.global_step ||
        result_.outcome != Outcome::kFinished) {
      return absl::OkStatus();
    }
    if (best_params_.size() != t_.flat_->groups().size()) {
      return absl::InternalError("the best model's weights were not kept");
    }
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < best_params_.size(); ++i) t_.flat_->groups()[i].params.copy_(best_params_[i]);
    result_.loaded_best = true;
    LogInfo("loaded the best model: step %d, %s %.6g (load_best_model_at_end)", state_.best_step,
            t_.options_.metric_for_best_model, *state_.best_metric);
    return absl::OkStatus();
  }

  // Moves the device-side sums into the state and acts on skipped (non-finite) steps since the
  // last flush.
  absl::Status Flush() {
    const trainer_detail::DeviceSums::Host h = sums_.Flush();
    state_.window.loss += h.loss;
    state_.epoch_totals.loss += h.loss;
    const int64_t first = flushed_step_ + 1;
    flushed_step_ = t_.global_step_;
    if (h.skipped == 0) return absl::OkStatus();
    result_.skipped_steps += h.skipped;
    const std::string where = h.steps == 1
                                  ? absl::StrFormat("step %d", first)
                                  : absl::StrFormat("%d of the steps %d..%d", h.skipped, first, t_.global_step_);
    if (t_.scaler_) return absl::OkStatus();  // fp16 overflow: the scaler backed off (GradScaler's routine)
    if (!t_.options_.skip_nonfinite) {
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
    FTUNE_ASSIGN_OR_RETURN(Totals window, state_.window.SumOverRanks(*t_.host_comm_));
    FTUNE_ASSIGN_OR_RETURN(Totals epoch, state_.epoch_totals.SumOverRanks(*t_.host_comm_));
    const double samples_per_second = epoch.examples / std::max(state_.epoch_seconds, 1e-9);
    log_->Write({{"type", "train"},
                 {"epoch", state_.epoch + static_cast<double>(state_.step_in_epoch) / steps_per_epoch_},
                 {"step", t_.global_step_},
                 {"loss", window.MeanLoss()},
                 {"learning_rate", s.lr},
                 {"grad_norm", s.GradNorm()},
                 {"samples_per_second", samples_per_second},
                 {"comm_bytes_per_step", t_.reducer_->bytes_per_step()},
                 {"comm_seconds", state_.comm_seconds}});
    log_->Progress(absl::StrFormat("[epoch %d/%d] step %d/%d loss %.4f lr %.2e %.1f samples/s", state_.epoch + 1,
                                   epochs_, t_.global_step_, total_steps_, window.MeanLoss(), s.lr,
                                   samples_per_second));
    state_.window = Totals();
    return absl::OkStatus();
  }

  // When any rank got a stop signal: a checkpoint, and true (the run ends, resumable).
  absl::StatusOr<bool> StopIfSignalled() {
    FTUNE_ASSIGN_OR_RETURN(bool stopping, t_.AnyRankStopping());
    if (!stopping) return false;
    log_->EndProgress();
    if (ckpt_.dir.empty())
      return absl::CancelledError("stopped by a signal, and checkpoints are off (no --output_dir)");
    FTUNE_RETURN_IF_ERROR(Flush());
    FTUNE_RETURN_IF_ERROR(Save());
    result_.outcome = Outcome::kPreempted;
    result_.stop_signal = StopSignal();
    LogInfo(
        "stopped by signal %d at epoch %d, step %d of %d (global step %d); checkpoint %s; continue with "
        "--resume=auto",
        result_.stop_signal, state_.epoch + 1, state_.step_in_epoch, steps_per_epoch_, state_.global_step,
        result_.checkpoint);
    return true;
  }

  // Collective: rank 0 writes the checkpoint (with the global sums); every rank learns whether it
  // managed, so a failed write never leaves peers training on.
  absl::Status Save() {
    RunState global = state_;
    if (t_.scaler_) {
      global.loss_scale = t_.scaler_->scale();
      global.loss_scale_growth_tracker = t_.scaler_->growth_tracker();
    }
    FTUNE_ASSIGN_OR_RETURN(global.epoch_totals, state_.epoch_totals.SumOverRanks(*t_.host_comm_));
    FTUNE_ASSIGN_OR_RETURN(global.window, state_.window.SumOverRanks(*t_.host_comm_));
    absl::Status st;
    if (t_.host_comm_->rank() == 0) {
      const bool best_differs = state_.best_metric && state_.best_step != state_.global_step;
      auto written = WriteCheckpoint(*t_.flat_, *t_.optimizer_, global, Identity(), ckpt_,
                                     best_differs ? best_params_ : std::vector<torch::Tensor>());
      st = written.status();
      if (written.ok()) result_.checkpoint = *written;
    }
    int64_t failed = st.ok() ? 0 : 1;
    FTUNE_RETURN_IF_ERROR(t_.host_comm_->AllReduce(&failed, 1, dist::DType::kInt64, dist::ReduceOp::kMax));
    FTUNE_RETURN_IF_ERROR(st);
    if (failed) return absl::AbortedError("rank 0 could not write the checkpoint");
    return absl::OkStatus();
  }

  CheckpointIdentity Identity() {
    // Hashing a frozen encoder reads ~270 MB: only when a checkpoint is written or read.
    if (!frozen_fingerprint_) frozen_fingerprint_ = FrozenFingerprint(t_.objective_->module());
    CheckpointIdentity id;
    id.world_size = t_.host_comm_->world_size();
    id.global_batch = t_.options_.batch_size * id.world_size * t_.options_.gradient_accumulation_steps;
    id.seed = t_.options_.seed;
    id.frozen_fingerprint = *frozen_fingerprint_;
    return id;
  }

  Trainer& t_;
  const data::TokenDataset& train_;
  const data::TokenDataset* eval_;
  MetricsLog* log_;
  const CheckpointOptions& ckpt_;
  int64_t steps_per_epoch_ = 0, total_steps_ = 0, epochs_ = 0;
  RunState state_;
  trainer_detail::DeviceSums sums_;
  int64_t flushed_step_ = 0;
  std::optional<uint64_t> frozen_fingerprint_;
  std::vector<torch::Tensor> best_params_;  // load_best_model_at_end: the best model's flat parameters
  FitResult result_;
};

Trainer::Trainer(std::unique_ptr<Objective> objective, TrainOptions options, dist::Communicator* host_comm,
                 dist::Communicator* gradient_comm, torch::Device device)
    : objective_(std::move(objective)),
      options_(options),
      host_comm_(host_comm),
      gradient_comm_(gradient_comm),
      device_(device) {}

Trainer::Trainer(model::SequenceClassifier model, TrainOptions options, dist::Communicator* host_comm,
                 dist::Communicator* gradient_comm, torch::Device device)
    : Trainer(std::make_unique<ClassificationObjective>(std::move(model)), options, host_comm, gradient_comm, device) {}

Trainer::~Trainer() = default;

absl::Status Trainer::Prepare(int64_t total_steps) {
  if (options_.batch_size <= 0 || options_.eval_batch_size <= 0) {
    return absl::InvalidArgumentError("batch sizes must be > 0");
  }
  reducer_.reset();  // it points into the flat buffers
  FTUNE_ASSIGN_OR_RETURN(FlatParameters flat, FlatParameters::Build(objective_->module(), options_.weight_decay));
  flat_.emplace(std::move(flat));
  if (flat_->numel() == 0) return absl::FailedPreconditionError("the model has no trainable parameters");
  reducer_.emplace(&*flat_, gradient_comm_, device_,
                   GradientReducer::Options{options_.bucket_bytes, options_.overlap_comm});
  FTUNE_RETURN_IF_ERROR(reducer_->BroadcastParameters(/*root=*/0));
  optimizer_ = std::make_unique<FlatAdamW>(&*flat_, options_.adam, options_.fused_adamw);
  const int64_t warmup = ResolveWarmupSteps(options_.warmup_steps, options_.warmup_ratio, total_steps);
  FTUNE_ASSIGN_OR_RETURN(LrSchedule schedule,
                         LrSchedule::Create(options_.learning_rate, warmup, total_steps, options_.lr_schedule));
  schedule_.emplace(schedule);
  scaler_.reset();
  if (options_.loss_scaling) scaler_.emplace(options_.grad_scaler, device_);
  global_step_ = 0;
  phases_ = PhaseSeconds();
  return absl::OkStatus();
}

absl::StatusOr<StepStats> Trainer::Step(absl::Span<const data::HostBatch> micro) {
  if (!flat_) return absl::FailedPreconditionError("Trainer::Prepare was not called");
  if (micro.empty() || micro.front().global_examples <= 0) return absl::InvalidArgumentError("empty global batch");
  StepStats s;
  objective_->module().train();
  PhaseClock clock(options_.time_phases, device_);
  FTUNE_ASSIGN_OR_RETURN(const double global_units, objective_->GlobalUnits(micro, *host_comm_));
  flat_->ZeroGrad();
  const uint64_t rank = static_cast<uint64_t>(host_comm_->rank());
  for (size_t k = 0; k < micro.size(); ++k) {
    const data::HostBatch& batch = micro[k];
    // Dropout randomness is a pure function of (seed, step, rank, micro-batch): a resumed run draws
    // the same masks.
    torch::manual_seed(MixSeed(options_.seed, static_cast<uint64_t>(global_step_), rank * micro.size() + k));
    // Gradients accumulate over the micro-batches; only the last backward pass hands them to the
    // reducer (DDP's no_sync for the others).
    if (k + 1 == micro.size()) reducer_->BeginStep();
    if (batch.rows > 0 && global_units > 0) {
      const DeviceBatch b = ToDevice(batch, device_);
      clock.Mark(&phases_.data);
      torch::Tensor loss_sum = objective_->LossSum(b);
      clock.Mark(&phases_.forward);
      const torch::Tensor loss = loss_sum / global_units;
      (scaler_ ? scaler_->Scale(loss) : loss).backward();
      clock.Mark(&phases_.backward);
      torch::Tensor l = loss_sum.detach().to(torch::kDouble);
      s.loss_sum = s.loss_sum.defined() ? s.loss_sum + l : l;
    }
    s.totals.examples += static_cast<double>(batch.rows);
    s.totals.units += objective_->Units(batch);
    s.totals.tokens += static_cast<double>(batch.real_tokens);
    s.totals.padded_tokens += static_cast<double>(batch.rows * batch.seq_len);
  }
  if (!s.loss_sum.defined())
    s.loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  FTUNE_RETURN_IF_ERROR(reducer_->FinishStep());
  clock.Mark(&phases_.comm);
  // Everything below stays on the device: the norm, the skip decision (the summed gradients are
  // the same on every rank, so all ranks skip together), the clip and the update.
  if (scaler_) scaler_->Unscale(*flat_);
  s.grad_norm = flat_->GradNorm();
  s.lr = schedule_->LearningRate(global_step_);
  torch::Tensor found_inf = s.grad_norm.isfinite().logical_not().to(torch::kFloat);
  s.skipped = found_inf.to(torch::kDouble);
  if (options_.max_grad_norm > 0) flat_->ClipGradNorm(s.grad_norm, options_.max_grad_norm);
  optimizer_->Step(s.lr, found_inf);
  if (scaler_) scaler_->Update(found_inf);
  clock.Mark(&phases_.optimizer);
  ++phases_.steps;
  ++global_step_;
  return s;
}

InferenceOptions Trainer::InferenceOptionsForRun() {
  InferenceOptions o;
  o.batch_size = options_.eval_batch_size;
  o.pad_token_id = options_.pad_token_id;
  o.pad_to_multiple_of = options_.pad_to_multiple_of;
  o.device = device_;
  return o;
}

absl::StatusOr<EvalStats> Trainer::Evaluate(const data::TokenDataset& eval) {
  InferenceOptions o = InferenceOptionsForRun();
  // A stop signal during evaluation: all ranks agree at a batch boundary and abandon it (the
  // checkpoint is taken before the evaluation; a resumed run evaluates again).
  o.should_stop = [this]() { return AnyRankStopping(); };
  return objective_->Evaluate(eval, *host_comm_, o);
}

absl::StatusOr<bool> Trainer::AnyRankStopping() {
  int64_t stop = StopRequested() ? 1 : 0;
  FTUNE_RETURN_IF_ERROR(host_comm_->AllReduce(&stop, 1, dist::DType::kInt64, dist::ReduceOp::kMax));
  return stop != 0;
}

absl::StatusOr<FitResult> Trainer::Fit(const data::TokenDataset& train, const data::TokenDataset* eval, MetricsLog* log,
                                       const CheckpointOptions& ckpt, const std::string& resume_from) {
  Run run(*this, train, eval, log, ckpt);
  return run.Execute(resume_from);
}

}  // namespace ftune::train
