// The model interfaces every family implements, and the only model types src/train and src/cli
// see: a SequenceClassifier (fine-tuning) and a MaskedLanguageModel (pretraining). Each family
// (src/model/<family>/, described by a ModelFamily in family.h) builds its modules under the names
// of Hugging Face's classes, so named_parameters() are HF's state-dict keys.
//
// A classifier is cut into roles, so that methods and the trainer work on any family:
//   embeddings()                    token (+ position, type) embeddings
//   blocks()                        the transformer blocks, bottom first
//   pooling                         everything between the last block and the head: DistilBERT's
//                                   [CLS] row; a pooler, a final norm or mean pooling elsewhere
//   head                            family().head_modules: new for every task, trained by every method
// and the forward pass can be cut before any block k, so a frozen bottom runs without autograd or
// is computed once (the feature cache):
//   forward(in) == ClassifyFrom(ForwardBelow(in, k), in.attention_mask, k)      bit for bit
//   forward(in) == ClassifyFeatures(EncodeFeatures(in))                        bit for bit
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace ftune::model {

struct ModelFamily;

// What a forward pass reads: [B, T] int64 token ids, attention mask (1 = token, 0 = padding) and,
// for families that have them, token type ids (undefined: all zero).
struct EncoderInputs {
  torch::Tensor input_ids, attention_mask, token_type_ids;
};

struct ModelOptions {
  // Use fused scaled_dot_product_attention where LibTorch has it (>= 2.1); eager math otherwise.
  bool fused_attention = true;
  // kBFloat16 / kHalf: forward passes run under autocast to that type (mixed precision: matmuls
  // in 16 bits, parameters, LayerNorm and the loss in fp32). kFloat: plain fp32.
  torch::ScalarType compute_dtype = torch::kFloat;
};

// The family-independent view of a model's config.json, in Hugging Face's generic names (BERT's):
// what data checks, logs, results.json and the benchmark's FLOP count need.
struct ModelConfig {
  std::string model_type;  // config.json's model_type: "distilbert"
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t intermediate_size = 0;
  int64_t pad_token_id = 0;
  int64_t num_labels = 0;
  std::vector<std::string> id2label;  // num_labels names (config.json's id2label)
};

class SequenceClassifierImpl : public torch::nn::Module {
 public:
  virtual const ModelFamily& family() const = 0;
  virtual ModelConfig config() const = 0;
  // config.json for save_pretrained (a *ForSequenceClassification of the family, this config).
  virtual std::string ConfigJson() const = 0;
  // Names of the classes; must have num_labels entries.
  virtual void SetLabelNames(std::vector<std::string> names) = 0;

  // -> logits [B, num_labels].
  virtual torch::Tensor forward(const EncoderInputs& in) = 0;
  // The hidden states entering block k (0 <= k <= num_blocks()): embeddings + blocks [0, k), [B, T, H].
  virtual torch::Tensor ForwardBelow(const EncoderInputs& in, int64_t k) = 0;
  // Logits from those hidden states: blocks [k, num_blocks()), pooling, head.
  virtual torch::Tensor ClassifyFrom(const torch::Tensor& hidden, const torch::Tensor& attention_mask, int64_t k) = 0;
  // The head's input (the encoder and pooling), [B, hidden_size], and the head alone on it.
  virtual torch::Tensor EncodeFeatures(const EncoderInputs& in) = 0;
  virtual torch::Tensor ClassifyFeatures(const torch::Tensor& features) = 0;

  virtual torch::nn::Module& embeddings() = 0;
  virtual std::vector<std::shared_ptr<torch::nn::Module>> blocks() = 0;
  int64_t num_blocks() { return static_cast<int64_t>(blocks().size()); }

  // Hugging Face's _init_weights for the head alone (a checkpoint without one gets a fresh head).
  virtual void InitHead() = 0;
};
using SequenceClassifier = std::shared_ptr<SequenceClassifierImpl>;

class MaskedLanguageModelImpl : public torch::nn::Module {
 public:
  virtual const ModelFamily& family() const = 0;
  virtual ModelConfig config() const = 0;
  virtual std::string ConfigJson() const = 0;  // a *ForMaskedLM of the family
  // Sum of the cross-entropies at the positions where `labels` ([B, T]) is not -100, and the number
  // of correct argmax predictions there: {loss_sum, correct}.
  virtual std::pair<torch::Tensor, torch::Tensor> ScoredLoss(const EncoderInputs& in, const torch::Tensor& labels) = 0;
  // A fresh MLM head (HF init), for continued pretraining from an encoder without one.
  virtual void InitHead() = 0;
};
using MaskedLanguageModel = std::shared_ptr<MaskedLanguageModelImpl>;

// Mean cross-entropy over the batch (HF's single_label_classification loss); reduced-precision
// logits are upcast so the loss (and its gradient) is fp32. (Training sums per example instead:
// train::CrossEntropySum.)
inline torch::Tensor ClassificationLoss(const torch::Tensor& logits, const torch::Tensor& labels) {
  const bool low = logits.scalar_type() == torch::kBFloat16 || logits.scalar_type() == torch::kHalf;
  return torch::nn::functional::cross_entropy(low ? logits.to(torch::kFloat) : logits, labels);
}

}  // namespace ftune::model
