// DistilBERT for masked language modelling (pretraining and domain-adaptive continued
// pretraining), module for module and name for name Hugging Face's DistilBertForMaskedLM, so a
// checkpoint saved here is the hub's distilbert-base-uncased layout (and `ftune train` for
// classification loads it like the hub's, with a fresh head):
//   distilbert.*                     the encoder (distilbert.h)
//   vocab_transform.{weight,bias}    Linear(dim, dim)
//   activation                       GELU (config.activation)
//   vocab_layer_norm.{weight,bias}   LayerNorm(dim, eps 1e-12)
//   vocab_projector.bias             the output bias; the projection's weight IS the word
//                                    embedding matrix (tie_word_embeddings), so, as in HF's
//                                    named_parameters() and saved files, it is no parameter of its own
// logits = LayerNorm(GELU(h W_t^T + b_t)) E^T + b_p.
#pragma once

#include <string>

#include <torch/torch.h>

#include "common/status.h"
#include "model/distilbert/modeling.h"
#include "model/family.h"

namespace ftune::model {

// The tied output projection: only its bias is a parameter.
class TiedProjectionImpl : public torch::nn::Module {
 public:
  TiedProjectionImpl(torch::Tensor tied_weight, int64_t vocab_size);
  torch::Tensor forward(const torch::Tensor& x) { return torch::nn::functional::linear(x, weight_, bias); }
  void pretty_print(std::ostream& os) const override;

  torch::Tensor bias;

 private:
  torch::Tensor weight_;  // [vocab, dim], owned by the word embeddings
};
TORCH_MODULE(TiedProjection);

class DistilBertForMaskedLMImpl : public MaskedLanguageModelImpl {
 public:
  explicit DistilBertForMaskedLMImpl(const DistilBertConfig& c, const ModelOptions& o = {});
  const ModelFamily& family() const override;
  ModelConfig config() const override { return ToModelConfig(config_); }
  // config.json ("architectures": ["DistilBertForMaskedLM"]).
  std::string ConfigJson() const override;
  // Logits [B, T, vocab] (what HF's forward returns).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);
  // The head on hidden states [..., dim] -> [..., vocab].
  torch::Tensor Head(const torch::Tensor& hidden);
  // Sum of the cross-entropies at the positions where `labels` (same shape as input_ids) is not
  // -100, computing the vocabulary projection only there (the other positions would be computed
  // and thrown away), and the number of correct argmax predictions there: {loss_sum, correct}.
  std::pair<torch::Tensor, torch::Tensor> ScoredLoss(const EncoderInputs& in, const torch::Tensor& labels) override;
  void pretty_print(std::ostream& os) const override { os << "DistilBertForMaskedLM"; }

  // Hugging Face's _init_weights for every module (the tied projection follows the embeddings).
  void InitWeights();
  // A fresh MLM head (HF init), for continued pretraining from an encoder without one.
  void InitHead();
  const DistilBertConfig& distilbert_config() const { return config_; }

  DistilBertModel distilbert{nullptr};
  torch::nn::Linear vocab_transform{nullptr};
  Activation activation{nullptr};
  torch::nn::LayerNorm vocab_layer_norm{nullptr};
  TiedProjection vocab_projector{nullptr};

 private:
  DistilBertConfig config_;
  torch::ScalarType compute_dtype_;
};
TORCH_MODULE(DistilBertForMaskedLM);

// The masked-LM head's parameters (vocab_transform, vocab_layer_norm, vocab_projector).
bool IsMaskedLmHeadKey(const std::string& name);
// The classifier's head (pre_classifier, classifier).
bool IsClassifierHeadKey(const std::string& name);

}  // namespace ftune::model
