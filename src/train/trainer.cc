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
  FTUNE_RETURN_IF_ERROR(options_.data.Validate());
  FTUNE_RETURN_IF_ERROR(options_.optimizer.Validate());
  const OptimizerOptions& o = options_.optimizer;
  reducer_.reset();  // it points into the flat buffers
  FTUNE_ASSIGN_OR_RETURN(FlatParameters flat, FlatParameters::Build(objective_->module(), o.weight_decay));
  flat_.emplace(std::move(flat));
  if (flat_->numel() == 0) return absl::FailedPreconditionError("the model has no trainable parameters");
  reducer_.emplace(&*flat_, gradient_comm_, device_,
                   GradientReducer::Options{options_.comm.bucket_bytes, options_.comm.overlap_comm});
  FTUNE_RETURN_IF_ERROR(reducer_->BroadcastParameters(/*root=*/0));
  optimizer_ = std::make_unique<FlatAdamW>(&*flat_, o.adam, o.fused_adamw);
  const int64_t warmup = ResolveWarmupSteps(o.warmup_steps, o.warmup_ratio, total_steps);
  FTUNE_ASSIGN_OR_RETURN(LrSchedule schedule, LrSchedule::Create(o.learning_rate, warmup, total_steps, o.lr_schedule));
  schedule_.emplace(schedule);
  scaler_.reset();
  if (o.loss_scaling) scaler_.emplace(o.grad_scaler, device_);
  phases_ = PhaseSeconds();
  return absl::OkStatus();
}

absl::StatusOr<StepStats> Trainer::Step(absl::Span<const data::HostBatch> micro, int64_t step) {
  if (!flat_) return absl::FailedPreconditionError("Trainer::Prepare was not called");
  if (micro.empty() || micro.front().global_examples <= 0) return absl::InvalidArgumentError("empty global batch");
  StepStats s;
  objective_->module().train();
  PhaseClock clock(options_.logging.time_phases, device_);
  FTUNE_ASSIGN_OR_RETURN(const double global_units, objective_->GlobalUnits(micro, *host_comm_));
  flat_->ZeroGrad();
  const uint64_t rank = static_cast<uint64_t>(host_comm_->rank());
  for (size_t k = 0; k < micro.size(); ++k) {
    const data::HostBatch& batch = micro[k];
    // Dropout randomness is a pure function of (seed, step, rank, micro-batch): a resumed run draws
    // the same masks.
    torch::manual_seed(MixSeed(options_.data.seed, static_cast<uint64_t>(step), rank * micro.size() + k));
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
  s.lr = schedule_->LearningRate(step);
  torch::Tensor found_inf = s.grad_norm.isfinite().logical_not().to(torch::kFloat);
  s.skipped = found_inf.to(torch::kDouble);
  if (options_.optimizer.max_grad_norm > 0) flat_->ClipGradNorm(s.grad_norm, options_.optimizer.max_grad_norm);
  optimizer_->Step(s.lr, found_inf);
  if (scaler_) scaler_->Update(found_inf);
  clock.Mark(&phases_.optimizer);
  ++phases_.steps;
  return s;
}

InferenceOptions Trainer::InferenceOptionsForRun() const {
  InferenceOptions o;
  o.batch_size = options_.eval.batch_size;
  o.pad_token_id = options_.data.pad_token_id;
  o.pad_to_multiple_of = options_.data.pad_to_multiple_of;
  o.device = device_;
  return o;
}

absl::StatusOr<bool> Trainer::AnyRankStopping() {
  int64_t stop = StopRequested() ? 1 : 0;
  FTUNE_RETURN_IF_ERROR(host_comm_->AllReduce(&stop, 1, dist::DType::kInt64, dist::ReduceOp::kMax));
  return stop != 0;
}

}  // namespace ftune::train
