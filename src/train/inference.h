// Running a model over a dataset without training: evaluation (classification accuracy + loss,
// masked-LM token accuracy + loss; sums over ranks, every example exactly once), predictions, and
// the frozen-encoder feature cache for `head` and `last_k`.
#pragma once

#include <functional>
#include <optional>

#include <torch/torch.h>

#include "common/status.h"
#include "data/batch_loader.h"
#include "data/token_dataset.h"
#include "distributed/communicator.h"
#include "model/sequence_classifier.h"
#include "nlohmann/json.hpp"
#include "train/device_batch.h"

namespace ftune::train {

// Classification: examples, with the confusion matrix (rows: true label, columns: prediction),
// from which per-class precision/recall/F1 and macro-F1 follow exactly (summed counts over ranks,
// no logits gathered). Masked LM: scored (masked) tokens, so accuracy is the masked-token accuracy
// and exp(loss()) the perplexity; no confusion matrix. Regression (one output, float labels, HF's
// problem_type "regression"): loss() is the MSE, Pearson's r from the moments summed over ranks,
// Spearman's rho from the gathered predictions (scipy's: ranks with ties averaged).
struct RegressionStats {
  double sum_x = 0, sum_y = 0, sum_xx = 0, sum_yy = 0, sum_xy = 0;  // x: prediction, y: label
  double spearman = 0;
  double Pearson(int64_t n) const;
};

struct EvalStats {
  int64_t correct = 0;
  int64_t total = 0;
  double loss_sum = 0.0;
  double seconds = 0.0;
  int64_t num_labels = 0;          // 0: no confusion matrix (masked LM, regression)
  std::vector<int64_t> confusion;  // num_labels x num_labels, row-major [true][pred]
  std::optional<RegressionStats> regression;
  double accuracy() const { return total ? static_cast<double>(correct) / total : 0.0; }
  double loss() const { return total ? loss_sum / total : 0.0; }
  // Per class k, as scikit-learn's precision_recall_fscore_support with zero_division=0: precision
  // = C[k][k] / column sum, recall = C[k][k] / row sum (support), F1 their harmonic mean; 0 where a
  // denominator is 0.
  int64_t support(int64_t k) const;
  double precision(int64_t k) const;
  double recall(int64_t k) const;
  double f1(int64_t k) const;
  double macro_f1() const;  // unweighted mean of the per-class F1 (f1_score(average="macro"))
  double mse() const { return loss(); }  // regression
  double pearson() const { return regression ? regression->Pearson(total) : 0.0; }
  double spearmanr() const { return regression ? regression->spearman : 0.0; }
  // The metric named `name` ("accuracy", "loss", "macro_f1"; regression: "loss", "mse", "pearson",
  // "spearmanr"; with or without HF's "eval_" prefix), for metric_for_best_model; NotFound for a
  // name this evaluation does not have.
  absl::StatusOr<double> Metric(const std::string& name) const;
  // eval_loss, eval_total, eval_loss_sum, eval_seconds (HF's "eval_" prefix) and: classification
  // and MLM eval_accuracy, eval_correct; classification eval_macro_f1, eval_per_class {precision,
  // recall, f1, support} and eval_confusion_matrix; regression eval_mse, eval_pearson,
  // eval_spearmanr and the moments; as in metrics.jsonl, results.json and checkpoints.
  nlohmann::json ToJson() const;
  static EvalStats FromJson(const nlohmann::json& j);
};

// The frozen bottom of the encoder computed once (--cache_frozen_features), for every example of a
// dataset: what enters the first trainable block k. k == num_blocks (head): the head's input
// features (EncodeFeatures: DistilBERT's [CLS] row), [N, F]. k < num_blocks (last_k): each
// example's hidden states, packed [total tokens, hidden] at
// `offsets`. Computed in eval mode (no dropout in the frozen blocks: cached training differs from
// uncached training by that noise only; the logits of a batch are those of the full forward).
struct FrozenCache {
  int64_t k = 0;
  torch::Tensor values;
  torch::Tensor offsets, lengths;  // [N] int64 on the device (k < num_blocks)
  bool defined() const { return values.defined(); }
  // `model`'s logits for the dataset rows `indices` (on the device), padded to `seq_len` tokens:
  // the head on the cached features, or the trainable blocks on the cached hidden states with
  // zeros in the padding (masked, so the [CLS] output is exact).
  torch::Tensor Logits(model::SequenceClassifierImpl& model, const torch::Tensor& indices, int64_t seq_len) const;
};

struct InferenceOptions {
  int64_t batch_size = 8;
  int64_t pad_token_id = 0;
  int64_t pad_to_multiple_of = 1;  // see data::Collate (capped at the model's max_position_embeddings)
  torch::Device device = torch::kCPU;
  // Checked before every batch; returning true abandons the pass with a Cancelled status. It may
  // be collective (the trainer's: any rank signalled?): every rank then checks in as many rounds,
  // a rank with fewer examples than its peers in empty ones (see ShardRounds).
  std::function<absl::StatusOr<bool>()> should_stop;
  // The dataset's cached frozen bottom (EncodeFrozen): when set, only the blocks above it and the
  // head run (exact for a frozen bottom in eval mode).
  const FrozenCache* cache = nullptr;
  // Masked LM: every batch is masked with data::kEvalMaskEpoch (the same positions every time).
  const data::MaskingOptions* masking = nullptr;
  // Classification: label smoothing of the eval loss (class weights are not applied: ClassificationLoss).
  double label_smoothing = 0.0;
};

// The batch rounds of a pass over `n` examples split over `world` ranks (data::BalancedRange):
// those of the largest share, so every rank makes the same stop checks.
int64_t ShardRounds(int64_t n, int world, int64_t batch_size);

// The batching every inference pass shares: `model` in eval mode and no autograd, `indices` longest
// first (less padding; per-example results do not depend on the order), batches padded at most to
// `max_positions`, the stop check before each of `rounds` rounds (at least this rank's batches; the
// rounds past them run no batch) (Cancelled when it says stop). `read_tokens` false yields indices
// and labels only (the feature-cache path). Restores train mode afterwards.
absl::Status ForEachBatch(torch::nn::Module& model, int64_t max_positions, const data::TokenDataset& ds,
                          std::vector<int64_t> indices, const InferenceOptions& options, bool read_tokens,
                          const std::function<absl::Status(data::HostBatch&)>& fn, int64_t rounds = 0);

// Calls `sink(batch, on_device, logits)` for `indices` of `ds` in eval mode, batched longest-first
// (less padding; per-example results do not depend on the order). Restores train mode afterwards.
absl::Status ForEachLogits(
    model::SequenceClassifierImpl& model, const data::TokenDataset& ds, std::vector<int64_t> indices,
    const InferenceOptions& options,
    const std::function<absl::Status(const data::HostBatch&, const DeviceBatch&, const torch::Tensor&)>& sink,
    int64_t rounds = 0);

// Accuracy and mean loss over all of `ds`: each rank scores its contiguous share, the counts are
// summed over ranks, and the total is checked against the dataset size. Identical on every rank.
absl::StatusOr<EvalStats> EvaluateDataset(model::SequenceClassifierImpl& model, const data::TokenDataset& ds,
                                          dist::Communicator* comm, const InferenceOptions& options);

// The frozen bottom (embeddings + blocks [0, k)) for every example of `ds` on options.device, in
// eval mode (no dropout). With several ranks each computes its share and they are broadcast.
absl::StatusOr<FrozenCache> EncodeFrozen(model::SequenceClassifierImpl& model, const data::TokenDataset& ds,
                                         int64_t k, dist::Communicator* comm, const InferenceOptions& options);

// Sum of per-example cross-entropies (fp32 for reduced-precision logits), smoothed and weighted per
// `loss` (`weights`: loss.class_weights as a tensor on the logits' device, or undefined).
torch::Tensor CrossEntropySum(const torch::Tensor& logits, const torch::Tensor& labels, double label_smoothing = 0.0,
                              const torch::Tensor& weights = {});
// Regression: the sum of squared errors of the one-output `logits` [B, 1] against `targets` [B]
// (HF's MSELoss on logits.squeeze(), times B), fp32.
torch::Tensor SquaredErrorSum(const torch::Tensor& logits, const torch::Tensor& targets);

// Spearman's rank correlation of x and y (scipy.stats.spearmanr: Pearson's r of the ranks, ties
// given their average rank); 0 when either is constant.
double SpearmanRho(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace ftune::train
