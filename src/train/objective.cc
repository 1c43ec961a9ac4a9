#include "train/objective.h"

#include <chrono>
#include <cmath>
#include <numeric>

#include "absl/strings/str_format.h"

#include "data/sampler.h"

namespace ftune::train {

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

bool ClassificationObjective::EncoderFrozen() {
  if (!encoder_frozen_) {
    bool frozen = true;
    for (const auto& p : model_->distilbert->parameters()) frozen = frozen && !p.requires_grad();
    encoder_frozen_ = frozen;
  }
  return *encoder_frozen_;
}

torch::Tensor ClassificationObjective::LossSum(const DeviceBatch& b) {
  torch::Tensor logits;
  if (train_features_.defined()) {
    logits = model_->ClassifyFeatures(train_features_.index_select(0, b.indices));
  } else if (EncoderFrozen()) {
    // Method head: the encoder runs without an autograd graph.
    torch::Tensor cls;
    {
      torch::NoGradGuard no_grad;
      cls = model_->distilbert(b.input_ids, b.attention_mask).select(1, 0);
    }
    logits = model_->ClassifyFeatures(cls);
  } else {
    logits = model_(b.input_ids, b.attention_mask);
  }
  return CrossEntropySum(logits, b.labels);
}

absl::StatusOr<EvalStats> ClassificationObjective::Evaluate(const data::TokenDataset& ds, dist::Communicator& host,
                                                            InferenceOptions options) {
  if (&ds == eval_features_of_) options.features = eval_features_;
  return EvaluateDataset(model_, ds, &host, options);
}

absl::Status ClassificationObjective::CacheFrozenFeatures(const data::TokenDataset& train,
                                                          const data::TokenDataset* eval, dist::Communicator& comm,
                                                          const InferenceOptions& options) {
  if (!EncoderFrozen())
    return absl::InvalidArgumentError("--cache_frozen_features needs a frozen encoder (--method=head)");
  FTUNE_ASSIGN_OR_RETURN(train_features_, EncodeFeatures(model_, train, &comm, options));
  if (eval != nullptr) {
    FTUNE_ASSIGN_OR_RETURN(eval_features_, EncodeFeatures(model_, *eval, &comm, options));
    eval_features_of_ = eval;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> MaskedLmObjective::GlobalUnits(const data::HostBatch& b, dist::Communicator& host) const {
  int64_t n = b.masked_tokens;
  FTUNE_RETURN_IF_ERROR(host.AllReduce(&n, 1, dist::DType::kInt64, dist::ReduceOp::kSum));
  return n;
}

torch::Tensor MaskedLmObjective::LossSum(const DeviceBatch& b) {
  return model_->ScoredLoss(b.input_ids, b.attention_mask, b.mlm_labels).first;
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
                                       auto [loss, correct] =
                                           model_->ScoredLoss(d.input_ids, d.attention_mask, d.mlm_labels);
                                       acc.narrow(0, 0, 1).add_(correct.to(torch::kDouble));
                                       acc.narrow(0, 1, 1).add_(loss.to(torch::kDouble));
                                       scored += b.masked_tokens;
                                       return absl::OkStatus();
                                     }));
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
