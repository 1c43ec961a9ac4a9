#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/torch_compat.h"
#include "data/sampler.h"
#include "distributed/dist_context.h"
#include "nlohmann/json.hpp"
#include "train/checkpoint.h"
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

Trainer::Trainer(model::DistilBertForSequenceClassification model, TrainOptions options, dist::Communicator* comm,
                 torch::Device device, dist::Communicator* host_comm)
    : model_(std::move(model)),
      options_(options),
      comm_(comm),
      host_comm_(host_comm != nullptr ? host_comm : comm),
      device_(device) {}

absl::Status Trainer::Prepare(int64_t total_steps) {
  if (options_.batch_size <= 0 || options_.eval_batch_size <= 0) {
    return absl::InvalidArgumentError("batch sizes must be > 0");
  }
  // The encoder runs without an autograd graph when none of it trains (method head).
  encoder_frozen_ = true;
  for (const auto& p : model_->distilbert->parameters()) encoder_frozen_ = encoder_frozen_ && !p.requires_grad();
  FTUNE_ASSIGN_OR_RETURN(FlatParameters flat, FlatParameters::Build(*model_, options_.weight_decay));
  flat_.emplace(std::move(flat));
  if (flat_->numel() == 0) return absl::FailedPreconditionError("the model has no trainable parameters");
  FTUNE_RETURN_IF_ERROR(flat_->BroadcastParams(comm_, /*root=*/0, compat::CurrentCudaStream(device_)));
  // Overlap needs host gradients on a host transport; NCCL already runs asynchronously on its stream.
  if (options_.overlap_comm && device_.is_cpu() && comm_->world_size() > 1 && std::string(comm_->name()) == "mpi") {
    flat_->EnableOverlap(comm_, options_.bucket_bytes);
  }
  optimizer_ = std::make_unique<FlatAdamW>(&*flat_, options_.adam, options_.fused_adamw);
  frozen_fingerprint_.reset();
  const int64_t warmup = ResolveWarmupSteps(options_.warmup_steps, options_.warmup_ratio, total_steps);
  schedule_ = std::make_unique<LinearSchedule>(options_.learning_rate, warmup, total_steps);
  global_step_ = 0;
  phases_ = PhaseSeconds();
  return absl::OkStatus();
}

torch::Tensor Trainer::ToDevice(const std::vector<int64_t>& host, std::vector<int64_t> shape) const {
  torch::Tensor t = torch::from_blob(const_cast<int64_t*>(host.data()), shape, torch::kLong);
  if (device_.is_cpu()) return t;
  // Through page-locked memory, asynchronously: a pageable copy would wait for the device to
  // finish the previous step's work. The pinned block is recycled only after the copy completes.
  return t.pin_memory().to(device_, /*non_blocking=*/true);
}

torch::Tensor Trainer::Forward(const torch::Tensor& ids, const torch::Tensor& mask) {
  if (!encoder_frozen_) return model_(ids, mask);
  torch::Tensor cls;
  {
    torch::NoGradGuard no_grad;
    cls = model_->distilbert(ids, mask).select(1, 0);
  }
  return model_->ClassifyFeatures(cls);
}

absl::Status Trainer::SumOverRanks(double* values, int n) {
  return host_comm_->AllReduce(values, static_cast<size_t>(n), dist::DType::kFloat64, dist::ReduceOp::kSum);
}

absl::StatusOr<StepStats> Trainer::Step(const data::HostBatch& batch) {
  if (!flat_) return absl::FailedPreconditionError("Trainer::Prepare was not called");
  if (batch.global_examples <= 0) return absl::InvalidArgumentError("empty global batch");
  StepStats s;
  model_->train();
  PhaseClock clock(options_.time_phases, device_);
  // Dropout randomness is a pure function of (seed, rank, step): a resumed run draws the same masks.
  torch::manual_seed(data::SplitMix64(options_.seed ^ (0x9e3779b97f4a7c15ULL * (global_step_ + 1)) ^
                                      (0xbf58476d1ce4e5b9ULL * static_cast<uint64_t>(comm_->rank() + 1)))
                         .Next());
  flat_->ZeroGrad();
  if (flat_->overlap_enabled()) flat_->BeginOverlappedStep();
  const auto f64 = torch::TensorOptions().dtype(torch::kDouble).device(device_);
  if (batch.rows > 0) {
    torch::Tensor labels = ToDevice(batch.labels, {batch.rows});
    torch::Tensor logits;
    if (train_features_.defined()) {
      logits = model_->ClassifyFeatures(train_features_.index_select(0, ToDevice(batch.indices, {batch.rows})));
    } else {
      torch::Tensor ids = ToDevice(batch.input_ids, {batch.rows, batch.seq_len});
      torch::Tensor mask = ToDevice(batch.attention_mask, {batch.rows, batch.seq_len});
      clock.Mark(&phases_.data);
      logits = Forward(ids, mask);
    }
    torch::Tensor loss_sum = LossSum(logits, labels);
    clock.Mark(&phases_.forward);
    (loss_sum / static_cast<double>(batch.global_examples)).backward();
    clock.Mark(&phases_.backward);
    s.loss_sum = loss_sum.detach().to(torch::kDouble);
  } else {
    s.loss_sum = torch::zeros({}, f64);
  }
  s.examples = batch.rows;
  s.tokens = batch.real_tokens;
  s.padded_tokens = batch.rows * batch.seq_len;
  const auto before = comm_->stats();
  if (flat_->overlap_enabled()) {
    FTUNE_RETURN_IF_ERROR(flat_->FinishOverlapped());
  } else {
    FTUNE_RETURN_IF_ERROR(flat_->AllReduceGrads(comm_, options_.bucket_bytes, compat::CurrentCudaStream(device_)));
  }
  const auto after = comm_->stats();
  s.comm_bytes = after.allreduce_bytes - before.allreduce_bytes;
  s.comm_seconds = after.allreduce_seconds - before.allreduce_seconds;
  clock.Mark(&phases_.comm);
  // Everything below stays on the device: the norm, the skip decision (the all-reduced norm is the
  // same on every rank, so all ranks skip together), the clip and the update.
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

absl::StatusOr<EvalStats> Trainer::Evaluate(const data::TokenDataset& eval) {
  InferenceOptions o;
  o.batch_size = options_.eval_batch_size;
  o.pad_token_id = options_.pad_token_id;
  o.pad_to_multiple_of = options_.pad_to_multiple_of;
  o.device = device_;
  // A stop signal during evaluation: all ranks agree at a batch boundary and abandon it (the
  // checkpoint is taken before the evaluation; a resumed run evaluates again).
  o.should_stop = [this]() { return AnyRankStopping(); };
  if (&eval == eval_features_of_) o.features = eval_features_;
  return EvaluateDataset(model_, eval, host_comm_, o);
}

uint64_t Trainer::FrozenFingerprint() {
  // Only checkpoints need it, and hashing a frozen encoder reads ~270 MB: computed on first use.
  if (!frozen_fingerprint_) {
    uint64_t h = dist::kFnv1a64Offset;
    for (const auto& p : model_->named_parameters()) {
      if (p.value().requires_grad()) continue;
      torch::Tensor t = p.value().detach().to(torch::kCPU).contiguous();
      h = dist::Fnv1a64(p.key(), h);
      h = dist::Fnv1a64(absl::string_view(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size()), h);
    }
    frozen_fingerprint_ = h;
  }
  return *frozen_fingerprint_;
}

absl::StatusOr<bool> Trainer::AnyRankStopping() {
  int64_t stop = StopRequested() ? 1 : 0;
  FTUNE_RETURN_IF_ERROR(host_comm_->AllReduce(&stop, 1, dist::DType::kInt64, dist::ReduceOp::kMax));
  return stop != 0;
}

absl::StatusOr<std::string> Trainer::Checkpoint(RunState& state, const CheckpointOptions& ckpt) {
  // Accumulators live per rank between checkpoints; a checkpoint stores their global sums.
  double sums[5] = {state.epoch_loss, state.epoch_examples, state.epoch_tokens, state.window_loss,
                    state.window_examples};
  FTUNE_RETURN_IF_ERROR(SumOverRanks(sums, 5));
  RunState global = state;
  global.epoch_loss = sums[0];
  global.epoch_examples = sums[1];
  global.epoch_tokens = sums[2];
  global.window_loss = sums[3];
  global.window_examples = sums[4];
  absl::Status st;
  std::string path;
  if (comm_->rank() == 0) {
    auto written = WriteCheckpoint(*this, global, ckpt, comm_->world_size());
    if (written.ok()) {
      path = *written;
    } else {
      st = written.status();
    }
  }
  // Every rank learns whether rank 0 managed (a failed write must not leave peers training on).
  int64_t failed = st.ok() ? 0 : 1;
  FTUNE_RETURN_IF_ERROR(host_comm_->AllReduce(&failed, 1, dist::DType::kInt64, dist::ReduceOp::kMax));
  if (!st.ok()) return st;
  if (failed) return absl::AbortedError("rank 0 could not write the checkpoint");
  return path;
}

absl::StatusOr<FitResult> Trainer::Fit(const data::TokenDataset& train, const data::TokenDataset* eval,
                                       MetricsLog* log, const CheckpointOptions* ckpt, const std::string& resume_from) {
  const int world = comm_->world_size();
  const int64_t global_batch = options_.batch_size * world;
  const int64_t steps_per_epoch = data::StepsPerEpoch(train.size(), global_batch);
  if (steps_per_epoch == 0) return absl::FailedPreconditionError(absl::StrFormat("%s has no examples", train.path()));
  const int64_t total = options_.max_steps > 0 ? options_.max_steps : options_.epochs * steps_per_epoch;
  const int64_t epochs = (total + steps_per_epoch - 1) / steps_per_epoch;
  FTUNE_RETURN_IF_ERROR(Prepare(total));

  RunState state;
  if (!resume_from.empty()) {
    FTUNE_ASSIGN_OR_RETURN(state, ReadCheckpoint(*this, resume_from, world));
    // Global sums were stored; rank 0 carries them, the others restart from zero.
    if (comm_->rank() != 0) {
      state.epoch_loss = state.epoch_examples = state.epoch_tokens = state.epoch_padded_tokens = 0;
      state.window_loss = state.window_examples = 0;
    }
    LogInfo("resumed from %s: epoch %d, step %d of the epoch, global step %d", resume_from, state.epoch + 1,
            state.step_in_epoch, state.global_step);
  }

  double cache_seconds = 0;
  if (options_.cache_frozen_features) {
    if (!encoder_frozen_) {
      return absl::InvalidArgumentError("--cache_frozen_features needs a frozen encoder (--method=head)");
    }
    const auto t0 = Clock::now();
    InferenceOptions io;
    io.batch_size = options_.eval_batch_size;
    io.pad_token_id = options_.pad_token_id;
    io.pad_to_multiple_of = options_.pad_to_multiple_of;
    io.device = device_;
    FTUNE_ASSIGN_OR_RETURN(train_features_, EncodeFeatures(model_, train, comm_, io));
    if (eval != nullptr) {
      FTUNE_ASSIGN_OR_RETURN(eval_features_, EncodeFeatures(model_, *eval, comm_, io));
      eval_features_of_ = eval;
    }
    cache_seconds = Since(t0);
    LogInfo("feature cache: encoded %d training%s examples once in %s (the head now trains on fixed features: no "
            "encoder dropout)",
            train.size(), eval ? absl::StrFormat(" + %d eval", eval->size()) : "", FormatDuration(cache_seconds));
  }

  FitResult result;
  result.feature_cache_seconds = cache_seconds;
  result.trainable_parameters = flat_->numel();
  data::SamplerOptions so;
  so.batch_size = options_.batch_size;
  so.world_size = world;
  so.seed = options_.seed;
  so.group_by_length = options_.group_by_length;
  data::BatchLoader loader(&train, so, comm_->rank(), options_.pad_token_id, options_.prefetch,
                          /*read_tokens=*/!train_features_.defined());
  loader.set_padding(options_.pad_to_multiple_of, model_->config().max_position_embeddings);

  LogInfo("training: %d examples, %d epochs x %d steps = %d steps, global batch %d (%d per rank x %d ranks), "
          "%d trainable parameters (%s per step all-reduced)",
          train.size(), epochs, steps_per_epoch, total, global_batch, options_.batch_size, world, flat_->numel(),
          absl::StrFormat("%.2f MB", flat_->bytes() / 1e6));

  DeviceSums device_sums(device_);
  int64_t flushed_step = global_step_;
  // Moves the device-side sums into `st` and acts on skipped (non-finite) steps since the last flush.
  auto flush = [&](RunState& st) -> absl::Status {
    const DeviceSums::Host h = device_sums.Flush();
    st.window_loss += h.loss;
    st.epoch_loss += h.loss;
    const int64_t first = flushed_step + 1;
    flushed_step = global_step_;
    if (h.skipped == 0) return absl::OkStatus();
    result.skipped_steps += h.skipped;
    const std::string where = h.steps == 1 ? absl::StrFormat("step %d", first)
                                           : absl::StrFormat("%d of the steps %d..%d", h.skipped, first, global_step_);
    if (!options_.skip_nonfinite) {
      log->EndProgress();
      return absl::InternalError(absl::StrFormat(
          "non-finite gradient norm in %s: the update was skipped (the weights are intact) and the run stops. "
          "Lower --learning_rate, check the data, or pass --skip_nonfinite to go on past such steps",
          where));
    }
    LogWarn("non-finite gradient norm in %s; update skipped (--skip_nonfinite)", where);
    return absl::OkStatus();
  };

  auto stop_here = [&](RunState& st) -> absl::StatusOr<bool> {
    FTUNE_ASSIGN_OR_RETURN(bool stopping, AnyRankStopping());
    if (!stopping) return false;
    log->EndProgress();
    if (ckpt == nullptr || ckpt->dir.empty()) {
      return absl::CancelledError("stopped by a signal, and checkpoints are off (no --output_dir)");
    }
    FTUNE_RETURN_IF_ERROR(flush(st));
    FTUNE_ASSIGN_OR_RETURN(result.checkpoint, Checkpoint(st, *ckpt));
    result.preempted = true;
    result.stop_signal = StopSignal();
    LogInfo("stopped by signal %d at epoch %d, step %d of %d (global step %d); checkpoint %s; continue with "
            "--resume=auto",
            result.stop_signal, st.epoch + 1, st.step_in_epoch, steps_per_epoch, st.global_step, result.checkpoint);
    return true;
  };

  for (; state.epoch < epochs && (global_step_ < total || state.eval_pending); ++state.epoch) {
    if (!state.eval_pending) {
      loader.StartEpoch(state.epoch, state.step_in_epoch);
      auto t_segment = Clock::now();
      const double seconds_before = state.epoch_seconds;
      while (global_step_ < total) {
        const auto t_data = Clock::now();
        FTUNE_ASSIGN_OR_RETURN(std::optional<data::HostBatch> batch, loader.Next());
        if (!batch) break;
        if (options_.time_phases) phases_.data += Since(t_data);
        FTUNE_ASSIGN_OR_RETURN(StepStats s, Step(*batch));
        device_sums.Add(s);
        state.global_step = global_step_;
        state.step_in_epoch = batch->step + 1;
        result.comm_bytes_per_step = s.comm_bytes;
        state.comm_seconds += s.comm_seconds;
        state.window_examples += static_cast<double>(s.examples);
        state.epoch_examples += static_cast<double>(s.examples);
        state.epoch_tokens += static_cast<double>(s.tokens);
        state.epoch_padded_tokens += static_cast<double>(s.padded_tokens);
        const bool last = global_step_ == total || state.step_in_epoch == steps_per_epoch;
        const bool periodic = ckpt != nullptr && !ckpt->dir.empty() && ckpt->every_steps > 0 &&
                              global_step_ % ckpt->every_steps == 0 && !last;
        const bool logging = global_step_ % options_.logging_steps == 0 || last;
        if (logging || periodic) FTUNE_RETURN_IF_ERROR(flush(state));  // waits for the device
        state.epoch_seconds = seconds_before + Since(t_segment);
        if (logging) {
          double w[3] = {state.window_loss, state.window_examples, state.epoch_examples};
          FTUNE_RETURN_IF_ERROR(SumOverRanks(w, 3));
          const double grad_norm = s.GradNorm();
          nlohmann::json r = {{"type", "train"},
                              {"epoch", state.epoch + static_cast<double>(state.step_in_epoch) / steps_per_epoch},
                              {"step", global_step_},
                              {"loss", w[1] > 0 ? w[0] / w[1] : 0.0},
                              {"learning_rate", s.lr},
                              {"grad_norm", grad_norm},
                              {"samples_per_second", w[2] / std::max(state.epoch_seconds, 1e-9)},
                              {"comm_bytes_per_step", s.comm_bytes},
                              {"comm_seconds", state.comm_seconds}};
          log->Write(r);
          log->Progress(absl::StrFormat("[epoch %d/%d] step %d/%d loss %.4f lr %.2e %.1f samples/s", state.epoch + 1,
                                        epochs, global_step_, total, r["loss"].get<double>(), s.lr,
                                        r["samples_per_second"].get<double>()));
          state.window_loss = state.window_examples = 0;
        }
        FTUNE_ASSIGN_OR_RETURN(bool stop, stop_here(state));
        if (stop) return result;
        if (periodic) FTUNE_RETURN_IF_ERROR(Checkpoint(state, *ckpt).status());
      }
      FTUNE_RETURN_IF_ERROR(flush(state));
      state.epoch_seconds = seconds_before + Since(t_segment);
      state.eval_pending = true;
    }

    // End of the epoch's training: global sums, the human line, evaluation.
    log->EndProgress();
    double sums[4] = {state.epoch_loss, state.epoch_examples, state.epoch_tokens, state.epoch_padded_tokens};
    FTUNE_RETURN_IF_ERROR(SumOverRanks(sums, 4));
    EpochRecord rec;
    rec.epoch = state.epoch + 1;
    rec.step = global_step_;
    rec.seconds = state.epoch_seconds;
    rec.train_loss = sums[1] > 0 ? sums[0] / sums[1] : 0.0;
    rec.samples_per_second = sums[1] / std::max(rec.seconds, 1e-9);
    rec.tokens_per_second = sums[2] / std::max(rec.seconds, 1e-9);
    rec.tokens = sums[2];
    rec.padded_tokens = sums[3];
    std::string line = absl::StrFormat("epoch %d/%d: train loss %.4f, %.1f samples/s, %.0f tokens/s, %s", rec.epoch,
                                       epochs, rec.train_loss, rec.samples_per_second, rec.tokens_per_second,
                                       FormatDuration(rec.seconds));
    if (eval != nullptr && options_.eval_each_epoch) {
      absl::StatusOr<EvalStats> e = Evaluate(*eval);  // uses the feature cache when there is one
      if (!e.ok() && absl::IsCancelled(e.status())) {
        FTUNE_ASSIGN_OR_RETURN(bool stop, stop_here(state));
        if (stop) return result;
      }
      FTUNE_RETURN_IF_ERROR(e.status());
      rec.eval = *e;
      absl::StrAppendFormat(&line, "; eval accuracy %.4f (%d/%d), eval loss %.4f", e->accuracy(), e->correct,
                            e->total, e->loss());
      log->Write({{"type", "eval"},
                  {"epoch", rec.epoch},
                  {"step", global_step_},
                  {"eval_accuracy", e->accuracy()},
                  {"eval_correct", e->correct},
                  {"eval_total", e->total},
                  {"eval_loss", e->loss()},
                  {"eval_seconds", e->seconds}});
    }
    LogInfo("%s", line);
    state.epochs.push_back(rec);
    state.train_seconds += rec.seconds;
    state.examples_total += sums[1];
    state.tokens_total += sums[2];
    state.eval_pending = false;
    state.step_in_epoch = 0;
    state.epoch_loss = state.epoch_examples = state.epoch_tokens = state.epoch_padded_tokens = state.epoch_seconds = 0;
    if (ckpt != nullptr && !ckpt->dir.empty() && ckpt->every_epoch && global_step_ < total) {
      RunState next = state;
      ++next.epoch;
      FTUNE_RETURN_IF_ERROR(Checkpoint(next, *ckpt).status());
    }
  }
  result.epochs = state.epochs;
  result.steps = global_step_;
  result.train_seconds = state.train_seconds;
  result.comm_seconds = state.comm_seconds;
  result.samples_per_second = state.examples_total / std::max(state.train_seconds, 1e-9);
  result.tokens_per_second = state.tokens_total / std::max(state.train_seconds, 1e-9);
  double real = 0, padded = 0;
  for (const auto& e : state.epochs) real += e.tokens, padded += e.padded_tokens;
  result.padding_fraction = padded > 0 ? 1.0 - real / padded : 0.0;
  result.phases = phases_;
  return result;
}

}  // namespace ftune::train
