#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "absl/strings/str_format.h"
#include "common/log.h"
#include "data/sampler.h"
#include "nlohmann/json.hpp"

namespace ftune::train {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

torch::Tensor LossSum(const torch::Tensor& logits, const torch::Tensor& labels) {
  const bool low = logits.scalar_type() == torch::kBFloat16 || logits.scalar_type() == torch::kHalf;
  return torch::nn::functional::cross_entropy(
      low ? logits.to(torch::kFloat) : logits, labels,
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
}

}  // namespace

Trainer::Trainer(model::DistilBertForSequenceClassification model, TrainOptions options, dist::Communicator* comm,
                 torch::Device device)
    : model_(std::move(model)), options_(options), comm_(comm), device_(device) {}

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
  FTUNE_RETURN_IF_ERROR(flat_->BroadcastParams(comm_, /*root=*/0));
  optimizer_ = std::make_unique<FlatAdamW>(&*flat_, options_.adam);
  const int64_t warmup = ResolveWarmupSteps(options_.warmup_steps, options_.warmup_ratio, total_steps);
  schedule_ = std::make_unique<LinearSchedule>(options_.learning_rate, warmup, total_steps);
  global_step_ = 0;
  return absl::OkStatus();
}

torch::Tensor Trainer::ToDevice(const std::vector<int64_t>& host, std::vector<int64_t> shape) const {
  torch::Tensor t = torch::from_blob(const_cast<int64_t*>(host.data()), shape, torch::kLong);
  return device_.is_cpu() ? t : t.to(device_, /*non_blocking=*/false);
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
  return comm_->AllReduce(values, static_cast<size_t>(n), dist::DType::kFloat64, dist::ReduceOp::kSum);
}

absl::StatusOr<StepStats> Trainer::Step(const data::HostBatch& batch) {
  if (!flat_) return absl::FailedPreconditionError("Trainer::Prepare was not called");
  if (batch.global_examples <= 0) return absl::InvalidArgumentError("empty global batch");
  StepStats s;
  model_->train();
  flat_->ZeroGrad();
  if (batch.rows > 0) {
    torch::Tensor ids = ToDevice(batch.input_ids, {batch.rows, batch.seq_len});
    torch::Tensor mask = ToDevice(batch.attention_mask, {batch.rows, batch.seq_len});
    torch::Tensor labels = ToDevice(batch.labels, {batch.rows});
    torch::Tensor loss_sum = LossSum(Forward(ids, mask), labels);
    (loss_sum / static_cast<double>(batch.global_examples)).backward();
    s.loss_sum = loss_sum.item<double>();
  }
  s.examples = batch.rows;
  s.tokens = batch.real_tokens;
  const auto before = comm_->stats();
  FTUNE_RETURN_IF_ERROR(flat_->AllReduceGrads(comm_, options_.bucket_bytes));
  const auto after = comm_->stats();
  s.comm_bytes = after.allreduce_bytes - before.allreduce_bytes;
  s.comm_seconds = after.allreduce_seconds - before.allreduce_seconds;
  s.grad_norm = flat_->GradNorm();
  if (!std::isfinite(s.grad_norm)) {
    return absl::InternalError(absl::StrFormat(
        "non-finite gradient norm (%g) at step %d; lower --learning_rate or check the data", s.grad_norm,
        global_step_ + 1));
  }
  if (options_.max_grad_norm > 0) flat_->ClipGradNorm(s.grad_norm, options_.max_grad_norm);
  s.lr = schedule_->LearningRate(global_step_);
  optimizer_->Step(s.lr);
  ++global_step_;
  return s;
}

absl::StatusOr<EvalStats> Trainer::Evaluate(const data::TokenDataset& eval) {
  auto t0 = Clock::now();
  model_->eval();
  torch::NoGradGuard no_grad;
  auto [begin, end] = data::BalancedRange(eval.size(), comm_->rank(), comm_->world_size());
  // Longest first, so each batch pads little; the order cannot change any per-example result.
  std::vector<int64_t> idx(end - begin);
  std::iota(idx.begin(), idx.end(), begin);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return eval.length(a) > eval.length(b); });
  double sums[3] = {0, 0, 0};  // correct, total, loss_sum
  for (size_t off = 0; off < idx.size(); off += options_.eval_batch_size) {
    std::vector<int64_t> chunk(idx.begin() + off,
                               idx.begin() + std::min(idx.size(), off + static_cast<size_t>(options_.eval_batch_size)));
    FTUNE_ASSIGN_OR_RETURN(std::vector<data::Example> examples, eval.Read(chunk));
    data::HostBatch b = data::Collate(examples, options_.pad_token_id);
    torch::Tensor logits = model_(ToDevice(b.input_ids, {b.rows, b.seq_len}), ToDevice(b.attention_mask, {b.rows, b.seq_len}));
    torch::Tensor labels = ToDevice(b.labels, {b.rows});
    sums[0] += logits.argmax(-1).eq(labels).sum().item<double>();
    sums[1] += static_cast<double>(b.rows);
    sums[2] += LossSum(logits, labels).item<double>();
  }
  model_->train();
  FTUNE_RETURN_IF_ERROR(SumOverRanks(sums, 3));
  EvalStats e;
  e.correct = static_cast<int64_t>(sums[0]);
  e.total = static_cast<int64_t>(sums[1]);
  e.loss_sum = sums[2];
  e.seconds = Since(t0);
  if (e.total != eval.size()) {
    return absl::InternalError(
        absl::StrFormat("evaluation saw %d examples but %s has %d", e.total, eval.path(), eval.size()));
  }
  return e;
}

absl::StatusOr<FitResult> Trainer::Fit(const data::TokenDataset& train, const data::TokenDataset* eval,
                                       MetricsLog* log) {
  const int world = comm_->world_size();
  const int64_t global_batch = options_.batch_size * world;
  const int64_t steps_per_epoch = data::StepsPerEpoch(train.size(), global_batch);
  if (steps_per_epoch == 0) return absl::FailedPreconditionError(absl::StrFormat("%s has no examples", train.path()));
  const int64_t total = options_.max_steps > 0 ? options_.max_steps : options_.epochs * steps_per_epoch;
  const int64_t epochs = (total + steps_per_epoch - 1) / steps_per_epoch;
  FTUNE_RETURN_IF_ERROR(Prepare(total));

  FitResult result;
  result.trainable_parameters = flat_->numel();
  data::SamplerOptions so;
  so.batch_size = options_.batch_size;
  so.world_size = world;
  so.seed = options_.seed;
  so.group_by_length = options_.group_by_length;
  data::BatchLoader loader(&train, so, comm_->rank(), options_.pad_token_id, options_.prefetch);

  LogInfo("training: %d examples, %d epochs x %d steps = %d steps, global batch %d (%d per rank x %d ranks), "
          "%d trainable parameters (%s per step all-reduced)",
          train.size(), epochs, steps_per_epoch, total, global_batch, options_.batch_size, world, flat_->numel(),
          absl::StrFormat("%.2f MB", flat_->bytes() / 1e6));

  double window[2] = {0, 0};  // loss_sum, examples since the last log (this rank)
  int64_t total_examples_local = 0, total_tokens_local = 0;
  for (int64_t epoch = 0; epoch < epochs && global_step_ < total; ++epoch) {
    loader.StartEpoch(epoch);
    EpochRecord rec;
    rec.epoch = epoch + 1;
    double epoch_sums[3] = {0, 0, 0};  // loss_sum, examples, tokens (this rank)
    const auto t_epoch = Clock::now();
    while (global_step_ < total) {
      FTUNE_ASSIGN_OR_RETURN(std::optional<data::HostBatch> batch, loader.Next());
      if (!batch) break;
      FTUNE_ASSIGN_OR_RETURN(StepStats s, Step(*batch));
      result.comm_bytes_per_step = s.comm_bytes;
      result.comm_seconds += s.comm_seconds;
      window[0] += s.loss_sum;
      window[1] += static_cast<double>(s.examples);
      epoch_sums[0] += s.loss_sum;
      epoch_sums[1] += static_cast<double>(s.examples);
      epoch_sums[2] += static_cast<double>(s.tokens);
      const bool last = global_step_ == total || batch->step + 1 == steps_per_epoch;
      if (global_step_ % options_.logging_steps == 0 || last) {
        double w[2] = {window[0], window[1]};
        FTUNE_RETURN_IF_ERROR(SumOverRanks(w, 2));
        const double secs = Since(t_epoch);
        nlohmann::json r = {{"type", "train"},
                            {"epoch", epoch + static_cast<double>(batch->step + 1) / steps_per_epoch},
                            {"step", global_step_},
                            {"loss", w[1] > 0 ? w[0] / w[1] : 0.0},
                            {"learning_rate", s.lr},
                            {"grad_norm", s.grad_norm},
                            {"samples_per_second", epoch_sums[1] * world / std::max(secs, 1e-9)},
                            {"comm_bytes_per_step", s.comm_bytes},
                            {"comm_seconds", result.comm_seconds}};
        log->Write(r);
        log->Progress(absl::StrFormat("[epoch %d/%d] step %d/%d loss %.4f lr %.2e %.1f samples/s", epoch + 1, epochs,
                                      global_step_, total, r["loss"].get<double>(), s.lr,
                                      r["samples_per_second"].get<double>()));
        window[0] = window[1] = 0;
      }
    }
    rec.seconds = Since(t_epoch);
    rec.step = global_step_;
    FTUNE_RETURN_IF_ERROR(SumOverRanks(epoch_sums, 3));
    rec.train_loss = epoch_sums[1] > 0 ? epoch_sums[0] / epoch_sums[1] : 0.0;
    rec.samples_per_second = epoch_sums[1] / std::max(rec.seconds, 1e-9);
    rec.tokens_per_second = epoch_sums[2] / std::max(rec.seconds, 1e-9);
    total_examples_local += static_cast<int64_t>(epoch_sums[1]);
    total_tokens_local += static_cast<int64_t>(epoch_sums[2]);
    result.train_seconds += rec.seconds;
    log->EndProgress();
    std::string line = absl::StrFormat("epoch %d/%d: train loss %.4f, %.1f samples/s, %.0f tokens/s, %s",
                                       rec.epoch, epochs, rec.train_loss, rec.samples_per_second,
                                       rec.tokens_per_second, FormatDuration(rec.seconds));
    if (eval != nullptr && options_.eval_each_epoch) {
      FTUNE_ASSIGN_OR_RETURN(EvalStats e, Evaluate(*eval));
      rec.eval = e;
      absl::StrAppendFormat(&line, "; eval accuracy %.4f (%d/%d), eval loss %.4f", e.accuracy(), e.correct, e.total,
                            e.loss());
      log->Write({{"type", "eval"},
                  {"epoch", rec.epoch},
                  {"step", global_step_},
                  {"eval_accuracy", e.accuracy()},
                  {"eval_correct", e.correct},
                  {"eval_total", e.total},
                  {"eval_loss", e.loss()},
                  {"eval_seconds", e.seconds}});
    }
    LogInfo("%s", line);
    result.epochs.push_back(rec);
  }
  result.steps = global_step_;
  result.samples_per_second = total_examples_local / std::max(result.train_seconds, 1e-9);
  result.tokens_per_second = total_tokens_local / std::max(result.train_seconds, 1e-9);
  return result;
}

}  // namespace ftune::train
