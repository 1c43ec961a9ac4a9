// What a run learns: the model, what a batch's loss is, and what evaluation measures. The Trainer
// is the same for every objective (ranks, gradient buckets, AdamW, schedule, checkpoints,
// signals); an Objective holds only what differs:
//   ClassificationObjective  a SequenceClassifier (any family); cross-entropy per example;
//                            accuracy; the frozen-encoder feature cache (head, last_k)
//   MaskedLmObjective        a MaskedLanguageModel; cross-entropy per masked token (HF's
//                            DataCollatorForLanguageModeling); masked-token accuracy, perplexity
// A step's loss is the sum over this rank's units divided by the units of the whole global batch,
// so the sum of the ranks' gradients is exactly the global batch's mean-loss gradient.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <torch/torch.h>

#include "absl/types/span.h"
#include "common/status.h"
#include "data/batch_loader.h"
#include "data/masking.h"
#include "data/token_dataset.h"
#include "distributed/communicator.h"
#include "model/sequence_classifier.h"
#include "train/device_batch.h"
#include "train/inference.h"

namespace ftune::train {

// --objective: classification (a SequenceClassifier on labelled data) or mlm (masked-LM pretraining).
enum class ObjectiveKind { kClassification, kMaskedLm };
const char* ObjectiveName(ObjectiveKind k);  // "classification" | "mlm"
bool AbslParseFlag(absl::string_view text, ObjectiveKind* out, std::string* error);
std::string AbslUnparseFlag(ObjectiveKind k);

// The classification loss (training, and the eval loss). HF's label_smoothing_factor: the target is
// (1 - e) on the label plus e / num_labels on every class (torch's cross_entropy label_smoothing,
// which HF's LabelSmoother equals). class_weights (one per label, optional): torch's
// CrossEntropyLoss(weight=...): each example's loss times its label's weight, and the batch mean
// divides by the summed weights of the global batch (the trainer's units); the eval loss stays
// unweighted so runs with and without weights compare.
struct ClassificationLoss {
  double label_smoothing = 0.0;
  std::vector<double> class_weights;  // empty: all 1
};

class Objective {
 public:
  virtual ~Objective() = default;
  virtual const char* name() const = 0;  // "classification" | "mlm"
  virtual torch::nn::Module& module() = 0;
  virtual model::ModelConfig config() const = 0;

  // Loss units of micro-batch `b` (examples, class-weighted examples, or masked tokens).
  virtual double Units(const data::HostBatch& b) const = 0;
  // Loss units of the whole global batch, whose part on this rank is `micro` (one step's
  // micro-batches). Collective over `host` where ranks cannot know it alone.
  virtual absl::StatusOr<double> GlobalUnits(absl::Span<const data::HostBatch> micro,
                                             dist::Communicator& host) const = 0;
  // Sum of this rank's per-unit losses (a scalar on the device; fp32 even under autocast).
  virtual torch::Tensor LossSum(const DeviceBatch& b) = 0;
  // Over all of `ds`: each rank scores its share, the sums are combined over `host`.
  virtual absl::StatusOr<EvalStats> Evaluate(const data::TokenDataset& ds, dist::Communicator& host,
                                             InferenceOptions options) = 0;
  // The evaluation for humans ("eval accuracy 0.8420 (421/500), eval loss 0.3812"), and extra
  // fields for its metrics.jsonl record (perplexity for MLM).
  virtual std::string DescribeEval(const EvalStats& e) const;
  virtual void AnnotateEval(const EvalStats& e, nlohmann::json* record) const {}
  // How the loader prepares batches: masking (MLM), and whether token ids are read at all (not
  // when the classifier trains on cached features).
  virtual std::optional<data::MaskingOptions> Masking() const { return std::nullopt; }
  virtual bool ReadsTokens() const { return true; }
  // --cache_frozen_features: encode `train` (and `eval`) once with the frozen encoder.
  virtual absl::Status CacheFrozenFeatures(const data::TokenDataset& train, const data::TokenDataset* eval,
                                           dist::Communicator& comm, const InferenceOptions& options) {
    return absl::InvalidArgumentError(absl::StrCat("--cache_frozen_features does not apply to --objective=", name()));
  }
};

// HF's *ForSequenceClassification losses: cross-entropy over the labels, or, for a one-output
// model on float labels (problem_type "regression"), the squared error (MSELoss).
class ClassificationObjective : public Objective {
 public:
  // Errors (InvalidArgument) when `loss` has class weights of the wrong count or sign, or asks for
  // label smoothing or class weights with `regression`, or `regression` without one output.
  static absl::StatusOr<std::unique_ptr<ClassificationObjective>> Create(model::SequenceClassifier model,
                                                                         ClassificationLoss loss,
                                                                         bool regression = false);
  explicit ClassificationObjective(model::SequenceClassifier model) : model_(std::move(model)) {}
  const char* name() const override { return "classification"; }
  torch::nn::Module& module() override { return *model_; }
  model::ModelConfig config() const override { return model_->config(); }
  double Units(const data::HostBatch& b) const override;
  // Unweighted: the global batch's examples, which every rank knows from the sampler; weighted: the
  // global sum of the examples' class weights (one all-reduce).
  absl::StatusOr<double> GlobalUnits(absl::Span<const data::HostBatch> micro, dist::Communicator& host) const override;
  torch::Tensor LossSum(const DeviceBatch& b) override;
  absl::StatusOr<EvalStats> Evaluate(const data::TokenDataset& ds, dist::Communicator& host,
                                     InferenceOptions options) override;
  bool ReadsTokens() const override { return !train_cache_.defined(); }
  absl::Status CacheFrozenFeatures(const data::TokenDataset& train, const data::TokenDataset* eval,
                                   dist::Communicator& comm, const InferenceOptions& options) override;
  std::string DescribeEval(const EvalStats& e) const override;

  model::SequenceClassifier& model() { return model_; }
  bool regression() const { return regression_; }

 private:
  // Embedding + blocks below the first trainable one (n_layers: the whole encoder is frozen).
  int64_t FrozenBlocks();

  model::SequenceClassifier model_;
  ClassificationLoss loss_;
  bool regression_ = false;
  torch::Tensor weights_;  // loss_.class_weights on the model's device (undefined: unweighted)
  std::optional<int64_t> frozen_blocks_;
  FrozenCache train_cache_, eval_cache_;  // --cache_frozen_features
  const data::TokenDataset* eval_cache_of_ = nullptr;
};

class MaskedLmObjective : public Objective {
 public:
  MaskedLmObjective(model::MaskedLanguageModel model, data::MaskingOptions masking)
      : model_(std::move(model)), masking_(std::move(masking)) {}
  const char* name() const override { return "mlm"; }
  torch::nn::Module& module() override { return *model_; }
  model::ModelConfig config() const override { return model_->config(); }
  double Units(const data::HostBatch& b) const override { return static_cast<double>(b.masked_tokens); }
  absl::StatusOr<double> GlobalUnits(absl::Span<const data::HostBatch> micro, dist::Communicator& host) const override;
  torch::Tensor LossSum(const DeviceBatch& b) override;
  absl::StatusOr<EvalStats> Evaluate(const data::TokenDataset& ds, dist::Communicator& host,
                                     InferenceOptions options) override;
  std::optional<data::MaskingOptions> Masking() const override { return masking_; }
  std::string DescribeEval(const EvalStats& e) const override;
  void AnnotateEval(const EvalStats& e, nlohmann::json* record) const override;

  model::MaskedLanguageModel& model() { return model_; }

 private:
  model::MaskedLanguageModel model_;
  data::MaskingOptions masking_;
};

}  // namespace ftune::train
