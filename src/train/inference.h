// Running a model over a dataset without training: evaluation (classification accuracy + loss,
// masked-LM token accuracy + loss; sums over ranks, every example exactly once), predictions, and
// the frozen-encoder feature cache for `head`.
#pragma once

#include <functional>

#include <torch/torch.h>

#include "common/status.h"
#include "data/batch_loader.h"
#include "data/token_dataset.h"
#include "distributed/communicator.h"
#include "model/distilbert.h"
#include "nlohmann/json.hpp"
#include "train/device_batch.h"

namespace ftune::train {

// Classification: examples. Masked LM: scored (masked) tokens, so accuracy is the masked-token
// accuracy and exp(loss()) the perplexity.
struct EvalStats {
  int64_t correct = 0;
  int64_t total = 0;
  double loss_sum = 0.0;
  double seconds = 0.0;
  double accuracy() const { return total ? static_cast<double>(correct) / total : 0.0; }
  double loss() const { return total ? loss_sum / total : 0.0; }
  // eval_accuracy, eval_loss, eval_correct, eval_total, eval_loss_sum, eval_seconds (HF's
  // "eval_" prefix), as in metrics.jsonl, results.json and checkpoints.
  nlohmann::json ToJson() const;
  static EvalStats FromJson(const nlohmann::json& j);
};

struct InferenceOptions {
  int64_t batch_size = 8;
  int64_t pad_token_id = 0;
  int64_t pad_to_multiple_of = 1;  // see data::Collate (capped at the model's max_position_embeddings)
  torch::Device device = torch::kCPU;
  // Checked before every batch; returning true abandons the pass with a Cancelled status.
  std::function<absl::StatusOr<bool>()> should_stop;
  // [N, dim] [CLS] features of every example of the dataset (from EncodeFeatures): when set, only
  // the classification head runs (exact for a frozen encoder in eval mode).
  torch::Tensor features;
  // Masked LM: every batch is masked with data::kEvalMaskEpoch (the same positions every time).
  const data::MaskingOptions* masking = nullptr;
};

// The batching every inference pass shares: `model` in eval mode and no autograd, `indices` longest
// first (less padding; per-example results do not depend on the order), batches padded at most to
// `max_positions`, the stop check before each batch (Cancelled when it says stop). `read_tokens`
// false yields indices and labels only (the feature-cache path). Restores train mode afterwards.
absl::Status ForEachBatch(torch::nn::Module& model, int64_t max_positions, const data::TokenDataset& ds,
                          std::vector<int64_t> indices, const InferenceOptions& options, bool read_tokens,
                          const std::function<absl::Status(data::HostBatch&)>& fn);

// Calls `sink(batch, on_device, logits)` for `indices` of `ds` in eval mode, batched longest-first
// (less padding; per-example results do not depend on the order). Restores train mode afterwards.
absl::Status ForEachLogits(
    model::DistilBertForSequenceClassification& model, const data::TokenDataset& ds, std::vector<int64_t> indices,
    const InferenceOptions& options,
    const std::function<absl::Status(const data::HostBatch&, const DeviceBatch&, const torch::Tensor&)>& sink);

// Accuracy and mean loss over all of `ds`: each rank scores its contiguous share, the counts are
// summed over ranks, and the total is checked against the dataset size. Identical on every rank.
absl::StatusOr<EvalStats> EvaluateDataset(model::DistilBertForSequenceClassification& model,
                                          const data::TokenDataset& ds, dist::Communicator* comm,
                                          const InferenceOptions& options);

// [CLS] features of the encoder for every example of `ds`, [N, dim] on options.device, computed
// in eval mode (no dropout). With several ranks each computes its share and they are broadcast.
absl::StatusOr<torch::Tensor> EncodeFeatures(model::DistilBertForSequenceClassification& model,
                                             const data::TokenDataset& ds, dist::Communicator* comm,
                                             const InferenceOptions& options);

// Sum of per-example cross-entropies (fp32 for reduced-precision logits).
torch::Tensor CrossEntropySum(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace ftune::train
