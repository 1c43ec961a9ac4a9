// DistilBERT for sequence classification, module for module and name for name Hugging Face's
// DistilBertForSequenceClassification, so named_parameters() are HF's state-dict keys:
//   distilbert.embeddings.{word_embeddings,position_embeddings,LayerNorm}.*
//   distilbert.transformer.layer.<i>.attention.{q_lin,k_lin,v_lin,out_lin}.*
//   distilbert.transformer.layer.<i>.{sa_layer_norm,ffn.lin1,ffn.lin2,output_layer_norm}.*
//   pre_classifier.*, classifier.*
// Learned positions, LayerNorm eps 1e-12, post-norm residuals, exact-erf GELU, [CLS] pooling.
// The first family behind the SequenceClassifier interface (sequence_classifier.h); its descriptor
// (names, defaults, checkpoint keys) is distilbert/family.cc.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "io/hf_config.h"
#include "model/layers.h"
#include "model/sequence_classifier.h"

namespace ftune::model {

using io::DistilBertConfig;

// nn.LayerNorm(dim, eps=1e-12), as every LayerNorm in DistilBERT (and its MLM head) is built.
torch::nn::LayerNorm MakeLayerNorm(int64_t dim);

class EmbeddingsImpl : public torch::nn::Module {
 public:
  explicit EmbeddingsImpl(const DistilBertConfig& c);
  torch::Tensor forward(const torch::Tensor& input_ids);
  void pretty_print(std::ostream& os) const override { os << "Embeddings"; }

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(Embeddings);

class MultiHeadSelfAttentionImpl : public torch::nn::Module, public LinearOwner {
 public:
  MultiHeadSelfAttentionImpl(const DistilBertConfig& c, const ModelOptions& o);
  // x: [B, T, dim]; mask: compat::AttentionMask() of the batch, made once per forward pass.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  void pretty_print(std::ostream& os) const override { os << "MultiHeadSelfAttention"; }

  torch::nn::Dropout dropout{nullptr};
  LinearLayer q_lin, k_lin, v_lin, out_lin;

 private:
  int64_t n_heads_;
  double dropout_p_;
  bool fused_;
};
TORCH_MODULE(MultiHeadSelfAttention);

class FFNImpl : public torch::nn::Module, public LinearOwner {
 public:
  explicit FFNImpl(const DistilBertConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& os) const override { os << "FFN"; }

  torch::nn::Dropout dropout{nullptr};
  LinearLayer lin1, lin2;
  Activation activation{nullptr};
};
TORCH_MODULE(FFN);

class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(const DistilBertConfig& c, const ModelOptions& o);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  void pretty_print(std::ostream& os) const override { os << "TransformerBlock"; }

  MultiHeadSelfAttention attention{nullptr};
  torch::nn::LayerNorm sa_layer_norm{nullptr};
  FFN ffn{nullptr};
  torch::nn::LayerNorm output_layer_norm{nullptr};
};
TORCH_MODULE(TransformerBlock);

class TransformerImpl : public torch::nn::Module {
 public:
  TransformerImpl(const DistilBertConfig& c, const ModelOptions& o);
  // Runs blocks [begin, end) (all of them by default); appends each block's output to `hidden` when given.
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& mask, std::vector<torch::Tensor>* hidden,
                        int64_t begin = 0, int64_t end = -1);
  void pretty_print(std::ostream& os) const override { os << "Transformer"; }

  torch::nn::ModuleList layer{nullptr};

 private:
  std::vector<TransformerBlock> blocks_;
};
TORCH_MODULE(Transformer);

class DistilBertModelImpl : public torch::nn::Module {
 public:
  DistilBertModelImpl(const DistilBertConfig& c, const ModelOptions& o);
  // input_ids [B, T] int64, attention_mask [B, T] (1 = token, 0 = padding) -> last hidden [B, T, dim].
  // `hidden`, when given, receives the embedding output and every block's output (HF hidden_states).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                        std::vector<torch::Tensor>* hidden = nullptr);
  // The encoder cut before block k (0 <= k <= n_layers), so a frozen bottom can run without
  // autograd or be computed once (see FrozenBlockPrefix in methods.h):
  //   forward(ids, mask) == ForwardFrom(ForwardBelow(ids, mask, k), mask, k), bit for bit.
  // ForwardBelow: embeddings + blocks [0, k) -> the hidden states entering block k, [B, T, dim].
  torch::Tensor ForwardBelow(const torch::Tensor& input_ids, const torch::Tensor& attention_mask, int64_t k);
  // ForwardFrom: blocks [k, n_layers) on those hidden states -> last hidden [B, T, dim].
  torch::Tensor ForwardFrom(const torch::Tensor& hidden, const torch::Tensor& attention_mask, int64_t k);
  void pretty_print(std::ostream& os) const override { os << "DistilBertModel"; }

  Embeddings embeddings{nullptr};
  Transformer transformer{nullptr};

 private:
  // The batch's [B, T] mask as every block's attention takes it (compat::AttentionMask).
  torch::Tensor AttentionMask(const torch::Tensor& attention_mask) const;

  torch::ScalarType compute_dtype_;
  bool fused_attention_;
};
TORCH_MODULE(DistilBertModel);

class DistilBertForSequenceClassificationImpl : public SequenceClassifierImpl, public LinearOwner {
 public:
  explicit DistilBertForSequenceClassificationImpl(const DistilBertConfig& c, const ModelOptions& o = {});
  const ModelFamily& family() const override;
  ModelConfig config() const override;
  std::string ConfigJson() const override { return io::DistilBertConfigToJson(config_); }
  void SetLabelNames(std::vector<std::string> names) override { config_.id2label = std::move(names); }
  const DistilBertConfig& distilbert_config() const { return config_; }

  // -> logits [B, num_labels] (token_type_ids: DistilBERT has none, ignored).
  torch::Tensor forward(const EncoderInputs& in) override;
  torch::Tensor ForwardBelow(const EncoderInputs& in, int64_t k) override;
  // blocks [k, n_layers), then the head on [CLS].
  torch::Tensor ClassifyFrom(const torch::Tensor& hidden, const torch::Tensor& attention_mask, int64_t k) override;
  // The [CLS] row of the last hidden state, [B, dim].
  torch::Tensor EncodeFeatures(const EncoderInputs& in) override;
  // The head alone, on [CLS] features [B, dim]: pre_classifier -> ReLU -> dropout -> classifier.
  torch::Tensor ClassifyFeatures(const torch::Tensor& cls) override;
  torch::nn::Module& embeddings() override { return *distilbert->embeddings; }
  std::vector<std::shared_ptr<torch::nn::Module>> blocks() override;
  void pretty_print(std::ostream& os) const override { os << "DistilBertForSequenceClassification"; }

  // Hugging Face's _init_weights for a fresh model: Linear/Embedding ~ N(0, initializer_range),
  // zero biases and padding row, LayerNorm = (1, 0).
  void InitWeights();
  // Fresh pre_classifier/classifier (HF init), used when a checkpoint has no head.
  void InitHead() override;

  DistilBertModel distilbert{nullptr};
  LinearLayer pre_classifier, classifier;
  torch::nn::Dropout dropout{nullptr};

 private:
  DistilBertConfig config_;
  torch::ScalarType compute_dtype_;
};
TORCH_MODULE(DistilBertForSequenceClassification);

// The family-independent view of a DistilBERT config.
ModelConfig ToModelConfig(const DistilBertConfig& c);

}  // namespace ftune::model
