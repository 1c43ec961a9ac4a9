#include "train/objective.h"

#include <chrono>
#include <cmath>
#include <numeric>

#include "absl/strings/str_format.h"

#include "data/sampler.h"
#include "model/methods.h"

namespace ftune::train {

const char* ObjectiveName(ObjectiveKind k) { return k == ObjectiveKind::kMaskedLm ? "mlm" : "classification"; }

bool AbslParseFlag(absl::string_view text, ObjectiveKind* out, std::string* error) {
  for (ObjectiveKind k : {ObjectiveKind::kClassification, ObjectiveKind::kMaskedLm}) {
    if (text == ObjectiveName(k)) {
      *out = k;
      return true;
    }
  }
  *error = "not one of classification, mlm";
  return false;
}

std::string AbslUnparseFlag(ObjectiveKind k) { return ObjectiveName(k); }

std::string Objective::DescribeEval(const EvalStats& e) const {
  return absl::StrFormat("eval accuracy %.4f (%d/%d), eval loss %.4f", e.accuracy(), e.correct, e.total, e.loss());
}

std::string MaskedLmObjective::DescribeEval(const EvalStats& e) const {
  return absl::StrFormat("eval masked-token accuracy %.4f (%d/%d), eval loss %.4f, perplexity %.2f", e.accuracy(),
                         e.correct, e.total, e.loss(), std::exp(e.loss()));
}

void MaskedLmObjective::AnnotateEval(const EvalStats& e, nlohmann::json* record) const {
  (*record)["eval_perplexity"] = std::exp(e.loss());
}

std::string ClassificationObjective::DescribeEval(const EvalStats& e) const {
  if (!e.regression) return Objective::DescribeEval(e);
  return absl::StrFormat("eval mse %.4f, pearson %.4f, spearmanr %.4f (%d examples)", e.mse(), e.pearson(),
                         e.spearmanr(), e.total);
}

absl::StatusOr<std::unique_ptr<ClassificationObjective>> ClassificationObjective::Create(
    model::SequenceClassifier model, ClassificationLoss loss, bool regression) {
  const int64_t k = model->config().num_labels;
  if (regression) {
    if (k != 1) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "regression (float labels) needs a model with one output, this one has %d (--num_labels=1)", k));
    }
    if (!loss.class_weights.empty() || loss.label_smoothing != 0) {
      return absl::InvalidArgumentError("--class_weights and --label_smoothing_factor apply to class labels, not "
                                        "regression");
    }
  }
  if (!loss.class_weights.empty()) {
    if (static_cast<int64_t>(loss.class_weights.size()) != k) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--class_weights has %d values but the model has %d labels", loss.class_weights.size(), k));
    }
    for (double w : loss.class_weights) {
      if (!(w >= 0) || !std::isfinite(w))
        return absl::InvalidArgumentError(absl::StrFormat("--class_weights must be finite and >= 0 (got %g)", w));
    }
  }
  if (!(loss.label_smoothing >= 0 && loss.label_smoothing < 1)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--label_smoothing_factor must be in [0, 1) (got %g)", loss.label_smoothing));
  }
  auto o = std::make_unique<ClassificationObjective>(std::move(model));
  o->loss_ = std::move(loss);
  o->regression_ = regression;
  return o;
}

double ClassificationObjective::Units(const data::HostBatch& b) const {
  if (loss_.class_weights.empty()) return static_cast<double>(b.rows);
  double sum = 0;
  for (int64_t label : b.labels) sum += loss_.class_weights[label];
  return sum;
}

absl::StatusOr<double> ClassificationObjective::GlobalUnits(absl::Span<const data::HostBatch> micro,
                                                            dist::Communicator& host) const {
  if (loss_.class_weights.empty()) return static_cast<double>(micro.front().global_examples);
  double sum = 0;
  for (const auto& b : micro) sum += Units(b);
  FTUNE_RETURN_IF_ERROR(host.AllReduce(&sum, 1, dist::DType::kFloat64, dist::ReduceOp::kSum));
  return sum;
}

int64_t ClassificationObjective::FrozenBlocks() {
  if (!frozen_blocks_) frozen_blocks_ = model::FrozenBlockPrefix(*model_).value_or(0);
  return *frozen_blocks_;
}

torch::Tensor ClassificationObjective::LossSum(const DeviceBatch& b) {
  torch::Tensor logits;
  if (train_cache_.defined()) {
    logits = train_cache_.Logits(*model_, b.indices, b.seq_len);
  } else if (const int64_t k = FrozenBlocks(); k > 0) {
    // head (k = n_layers) and last_k: the frozen embeddings and blocks [0, k) run without an
    // autograd graph (same kernels, same logits and gradients: methods.h).
    torch::Tensor hidden;
    {
      torch::NoGradGuard no_grad;
      hidden = model_->ForwardBelow(b.inputs(), k);
    }
    logits = model_->ClassifyFrom(hidden, b.attention_mask, k);
  } else {
    logits = model_->forward(b.inputs());
  }
  if (regression_) return SquaredErrorSum(logits, b.targets);
  if (!loss_.class_weights.empty() && !weights_.defined()) {
    weights_ = torch::tensor(loss_.class_weights, torch::kDouble).to(logits.device());
  }
  return CrossEntropySum(logits, b.labels, loss_.label_smoothing, weights_);
}

absl::StatusOr<EvalStats> ClassificationObjective::Evaluate(const data::TokenDataset& ds, dist::Communicator& host,
                                                            InferenceOptions options) {
  if (&ds == eval_cache_of_) options.cache = &eval_cache_;
  options.label_smoothing = loss_.label_smoothing;
  return EvaluateDataset(*model_, ds, &host, options);
}

absl::Status ClassificationObjective::CacheFrozenFeatures(const data::TokenDataset& train,
                                                          const data::TokenDataset* eval, dist::Communicator& comm,
                                                          const InferenceOptions& options) {
  if (FrozenBlocks() == 0)
    return absl::InvalidArgumentError("--cache_frozen_features needs a frozen bottom (--method=head or last_k)");
  FTUNE_ASSIGN_OR_RETURN(train_cache_, EncodeFrozen(*model_, train, FrozenBlocks(), &comm, options));
  if (eval != nullptr) {
    FTUNE_ASSIGN_OR_RETURN(eval_cache_, EncodeFrozen(*model_, *eval, FrozenBlocks(), &comm, options));
    eval_cache_of_ = eval;
  }
  return absl::OkStatus();
}

absl::StatusOr<double> MaskedLmObjective::GlobalUnits(absl::Span<const data::HostBatch> micro,
                                                      dist::Communicator& host) const {
  int64_t n = 0;
  for (const auto& b : micro) n += b.masked_tokens;
  FTUNE_RETURN_IF_ERROR(host.AllReduce(&n, 1, dist::DType::kInt64, dist::ReduceOp::kSum));
  return static_cast<double>(n);
}

torch::Tensor MaskedLmObjective::LossSum(const DeviceBatch& b) {
  return model_->ScoredLoss(b.inputs(), b.mlm_labels).first;
}

absl::StatusOr<EvalStats> MaskedLmObjective::Evaluate(const data::TokenDataset& ds, dist::Communicator& host,
                                                      InferenceOptions o) {
  const auto t0 = std::chrono::steady_clock::now();
  o.masking = &masking_;
  auto [begin, end] = data::BalancedRange(ds.size(), host.rank(), host.world_size());
  std::vector<int64_t> idx(end - begin);
  std::iota(idx.begin(), idx.end(), begin);
  // Summed on the device, read once at the end.
  torch::Tensor acc = torch::zeros({2}, torch::TensorOptions().dtype(torch::kDouble).device(o.device));
  int64_t scored = 0;
  FTUNE_RETURN_IF_ERROR(ForEachBatch(*model_, model_->config().max_position_embeddings, ds, idx, o,
                                     /*read_tokens=*/true, [&](data::HostBatch& b) {
                                       if (b.masked_tokens == 0) return absl::OkStatus();
                                       const DeviceBatch d = ToDevice(b, o.device);
                                       auto [loss, correct] = model_->ScoredLoss(d.inputs(), d.mlm_labels);
                                       acc.narrow(0, 0, 1).add_(correct.to(torch::kDouble));
                                       acc.narrow(0, 1, 1).add_(loss.to(torch::kDouble));
                                       scored += b.masked_tokens;
                                       return absl::OkStatus();
                                     },
                                     ShardRounds(ds.size(), host.world_size(), o.batch_size)));
  torch::Tensor h = acc.to(torch::kCPU);
  double sums[3] = {h[0].item<double>(), static_cast<double>(scored), h[1].item<double>()};
  FTUNE_RETURN_IF_ERROR(host.AllReduce(sums, 3, dist::DType::kFloat64, dist::ReduceOp::kSum));
  EvalStats e;
  e.correct = static_cast<int64_t>(sums[0]);
  e.total = static_cast<int64_t>(sums[1]);
  e.loss_sum = sums[2];
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return e;
}

}  // namespace ftune::train
