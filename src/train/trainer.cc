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

}  // namespace

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
    so.seed = t_.options_.seed;
    so.group_by_length = t_.options_.group_by_length;
    data::BatchLoader loader(&train_, so, t_.host_comm_->rank(), t_.options_.pad_token_id, t_.options_.prefetch,
                             t_.objective_->ReadsTokens());
    loader.set_padding(t_.options_.pad_to_multiple_of, t_.objective_->config().max_position_embeddings);
    if (auto masking = t_.objective_->Masking()) loader.set_masking(*masking);
    while (state_.epoch < epochs_ && (t_.global_step_ < total_steps_ || state_.eval_pending)) {
      if (!state_.eval_pending) {
        FTUNE_ASSIGN_OR_RETURN(bool go_on, TrainEpoch(loader));
        if (!go_on) break;
      }
      FTUNE_ASSIGN_OR_RETURN(bool go_on, EndEpoch());
      if (!go_on) break;
    }
    result_.state = state_;
    result_.phases = t_.phases_;
    return std::move(result_);
  }

 private:
  // The step count, the trainer's buffers and optimizer, and the plan in the log.
  absl::Status Plan() {
    const int world = t_.host_comm_->world_size();
    const int64_t global_batch = t_.options_.batch_size * world;
    steps_per_epoch_ = data::StepsPerEpoch(train_.size(), global_batch);
    if (steps_per_epoch_ == 0)
      return absl::FailedPreconditionError(absl::StrFormat("%s has no examples", train_.path()));
    total_steps_ = t_.options_.max_steps > 0 ? t_.options_.max_steps : t_.options_.epochs * steps_per_epoch_;
    epochs_ = (total_steps_ + steps_per_epoch_ - 1) / steps_per_epoch_;
    FTUNE_RETURN_IF_ERROR(t_.Prepare(total_steps_));
    LogInfo(
        "training: %d examples, %d epochs x %d steps = %d steps, global batch %d (%d per rank x %d ranks), "
        "%d trainable parameters (%s per step, gradients %s)",
        train_.size(), epochs_, steps_per_epoch_, total_steps_, global_batch, t_.options_.batch_size, world,
        t_.flat_->numel(), absl::StrFormat("%.2f MB", t_.flat_->bytes() / 1e6),
        t_.gradient_comm_ == nullptr ? "stay local: one rank"
                                     : absl::StrCat("all-reduced over ", t_.reducer_->transport()));
    return absl::OkStatus();
  }

  absl::Status Resume(const std::string& path) {
    FTUNE_ASSIGN_OR_RETURN(state_, ReadCheckpoint(path, Identity(), *t_.flat_, *t_.optimizer_));
    t_.global_step_ = state_.global_step;
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
        "feature cache: encoded %d training%s examples once in %s (the head now trains on fixed features: no "
        "encoder dropout)",
        train_.size(), eval_ ? absl::StrFormat(" + %d eval", eval_->size()) : "",
        FormatDuration(result_.feature_cache_seconds));
    return absl::OkStatus();
  }

  // Trains the rest of the epoch in progress. False: the run was stopped by a signal.
  absl::StatusOr<bool> TrainEpoch(data::BatchLoader& loader) {
    loader.StartEpoch(state_.epoch, state_.step_in_epoch);
    const auto start = Clock::now();
    const double seconds_before = state_.epoch_seconds;
    while (t_.global_step_ < total_steps_) {
      const auto t_data = Clock::now();
      FTUNE_ASSIGN_OR_RETURN(std::optional<data::HostBatch> batch, loader.Next());
      if (!batch) break;
      if (t_.options_.time_phases) t_.phases_.data += Since(t_data);
      const double comm_before = t_.reducer_->seconds();
      FTUNE_ASSIGN_OR_RETURN(StepStats s, t_.Step(*batch));
      sums_.Add(s);
      state_.global_step = t_.global_step_;
      state_.step_in_epoch = batch->step + 1;
      state_.window += s.totals;
      state_.epoch_totals += s.totals;
      state_.comm_seconds += t_.reducer_->seconds() - comm_before;
      const bool ends = t_.global_step_ == total_steps_ || state_.step_in_epoch == steps_per_epoch_;
      const bool log_now = t_.options_.ShouldLog(t_.global_step_, ends);
      const bool save_now = ShouldSave(ckpt_, t_.global_step_, ends);
      if (log_now || save_now) FTUNE_RETURN_IF_ERROR(Flush());  // waits for the device
      state_.epoch_seconds = seconds_before + Since(start);
      if (log_now) FTUNE_RETURN_IF_ERROR(LogTrain(s));
      FTUNE_ASSIGN_OR_RETURN(bool stopped, StopIfSignalled());
      if (stopped) return false;
      if (save_now) FTUNE_RETURN_IF_ERROR(Save());
    }
    FTUNE_RETURN_IF_ERROR(Flush());
    state_.epoch_seconds = seconds_before + Since(start);
    state_.eval_pending = true;
    return true;
  }

  // The epoch's global sums, its evaluation, the human line and the epoch-end checkpoint.
  // False: stopped by a signal during the evaluation.
  absl::StatusOr<bool> EndEpoch() {
    log_->EndProgress();
    FTUNE_ASSIGN_OR_RETURN(Totals global, state_.epoch_totals.SumOverRanks(*t_.host_comm_));
    std::optional<EvalStats> eval;
    if (eval_ != nullptr && t_.options_.eval_each_epoch) {
      absl::StatusOr<EvalStats> e = t_.Evaluate(*eval_);  // uses the feature cache when there is one
      if (absl::IsCancelled(e.status())) {
        FTUNE_ASSIGN_OR_RETURN(bool stopped, StopIfSignalled());
        if (stopped) return false;
      }
      FTUNE_RETURN_IF_ERROR(e.status());
      eval = *e;
      nlohmann::json r = {{"type", "eval"}, {"epoch", state_.epoch + 1}, {"step", t_.global_step_}};
      r.update(e->ToJson());
      t_.objective_->AnnotateEval(*e, &r);
      log_->Write(r);
    }
    const EpochRecord& rec = state_.CloseEpoch(global, eval);
    std::string line = absl::StrFormat("epoch %d/%d: train loss %.4f, %.1f samples/s, %.0f tokens/s, %s", rec.epoch,
                                       epochs_, rec.train_loss(), rec.samples_per_second(), rec.tokens_per_second(),
                                       FormatDuration(rec.seconds));
    if (eval) absl::StrAppend(&line, "; ", t_.objective_->DescribeEval(*eval));
    LogInfo("%s", line);
    if (ShouldSaveAtEpochEnd(ckpt_, t_.global_step_ >= total_steps_)) FTUNE_RETURN_IF_ERROR(Save());
    return true;
  }

  // Moves the device-side sums into the state and acts on skipped (non-finite) steps since the
  // last flush.
  absl::Status Flush() {
    const DeviceSums::Host h = sums_.Flush();
    state_.window.loss += h.loss;
    state_.epoch_totals.loss += h.loss;
    const int64_t first = flushed_step_ + 1;
    flushed_step_ = t_.global_step_;
    if (h.skipped == 0) return absl::OkStatus();
    result_.skipped_steps += h.skipped;
    const std::string where = h.steps == 1
                                  ? absl::StrFormat("step %d", first)
                                  : absl::StrFormat("%d of the steps %d..%d", h.skipped, first, t_.global_step_);
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
    FTUNE_ASSIGN_OR_RETURN(global.epoch_totals, state_.epoch_totals.SumOverRanks(*t_.host_comm_));
    FTUNE_ASSIGN_OR_RETURN(global.window, state_.window.SumOverRanks(*t_.host_comm_));
    absl::Status st;
    if (t_.host_comm_->rank() == 0) {
      auto written = WriteCheckpoint(*t_.flat_, *t_.optimizer_, global, Identity(), ckpt_);
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
    id.global_batch = t_.options_.batch_size * id.world_size;
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
  DeviceSums sums_;
  int64_t flushed_step_ = 0;
  std::optional<uint64_t> frozen_fingerprint_;
  FitResult result_;
};

Trainer::Trainer(std::unique_ptr<Objective> objective, TrainOptions options, dist::Communicator* host_comm,
                 dist::Communicator* gradient_comm, torch::Device device)
    : objective_(std::move(objective)),
      options_(options),
      host_comm_(host_comm),
      gradient_comm_(gradient_comm),
      device_(device) {}

Trainer::Trainer(model::DistilBertForSequenceClassification model, TrainOptions options, dist::Communicator* host_comm,
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
  schedule_ = std::make_unique<LinearSchedule>(options_.learning_rate, warmup, total_steps);
  global_step_ = 0;
  phases_ = PhaseSeconds();
  return absl::OkStatus();
}

absl::StatusOr<StepStats> Trainer::Step(const data::HostBatch& batch) {
  if (!flat_) return absl::FailedPreconditionError("Trainer::Prepare was not called");
  if (batch.global_examples <= 0) return absl::InvalidArgumentError("empty global batch");
  StepStats s;
  objective_->module().train();
  PhaseClock clock(options_.time_phases, device_);
  // Dropout randomness is a pure function of (seed, step, rank): a resumed run draws the same masks.
  torch::manual_seed(
      MixSeed(options_.seed, static_cast<uint64_t>(global_step_), static_cast<uint64_t>(host_comm_->rank())));
  FTUNE_ASSIGN_OR_RETURN(const int64_t global_units, objective_->GlobalUnits(batch, *host_comm_));
  flat_->ZeroGrad();
  reducer_->BeginStep();
  if (batch.rows > 0 && global_units > 0) {
    const DeviceBatch b = ToDevice(batch, device_);
    clock.Mark(&phases_.data);
    torch::Tensor loss_sum = objective_->LossSum(b);
    clock.Mark(&phases_.forward);
    (loss_sum / static_cast<double>(global_units)).backward();
    clock.Mark(&phases_.backward);
    s.loss_sum = loss_sum.detach().to(torch::kDouble);
  } else {
    s.loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  }
  s.totals.examples = static_cast<double>(batch.rows);
  s.totals.units = static_cast<double>(objective_->Units(batch));
  s.totals.tokens = static_cast<double>(batch.real_tokens);
  s.totals.padded_tokens = static_cast<double>(batch.rows * batch.seq_len);
  FTUNE_RETURN_IF_ERROR(reducer_->FinishStep());
  clock.Mark(&phases_.comm);
  // Everything below stays on the device: the norm, the skip decision (the summed gradients are
  // the same on every rank, so all ranks skip together), the clip and the update.
  s.grad_norm = flat_->GradNorm();
  s.lr = schedule_->LearningRate(global_step_);
  torch::Tensor found_inf = s.grad_norm.isfinite().logical_not().to(torch::kFloat);
  s.skipped = found_inf.to(torch::kDouble);
  if (options_.max_grad_norm > 0) flat_->ClipGradNorm(s.grad_norm, options_.max_grad_norm);
  optimizer_->Step(s.lr, found_inf);
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
