#include "model/distilbert/modeling.h"

#include "common/torch_compat.h"
#include "model/distilbert/family.h"

namespace ftune::model {

torch::nn::LayerNorm MakeLayerNorm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-12));
}

EmbeddingsImpl::EmbeddingsImpl(const DistilBertConfig& c) {
  word_embeddings = register_module(
      "word_embeddings",
      torch::nn::Embedding(torch::nn::EmbeddingOptions(c.vocab_size, c.dim).padding_idx(c.pad_token_id)));
  position_embeddings = register_module("position_embeddings", torch::nn::Embedding(c.max_position_embeddings, c.dim));
  LayerNorm = register_module("LayerNorm", MakeLayerNorm(c.dim));
  dropout = register_module("dropout", torch::nn::Dropout(c.dropout));
}

torch::Tensor EmbeddingsImpl::forward(const torch::Tensor& input_ids) {
  const int64_t seq = input_ids.size(1);
  TORCH_CHECK(seq <= position_embeddings->weight.size(0), "sequence of ", seq,
              " tokens is longer than max_position_embeddings (", position_embeddings->weight.size(0), ")");
  torch::Tensor pos = torch::arange(seq, input_ids.options().dtype(torch::kLong));
  torch::Tensor x = word_embeddings(input_ids) + position_embeddings(pos).unsqueeze(0);
  return dropout(LayerNorm(x));
}

MultiHeadSelfAttentionImpl::MultiHeadSelfAttentionImpl(const DistilBertConfig& c, const ModelOptions& o)
    : n_heads_(c.n_heads), dropout_p_(c.attention_dropout), fused_(o.fused_attention) {
  dropout = register_module("dropout", torch::nn::Dropout(c.attention_dropout));
  RegisterLinear(this, "q_lin", &q_lin, std::make_shared<DenseImpl>(c.dim, c.dim));
  RegisterLinear(this, "k_lin", &k_lin, std::make_shared<DenseImpl>(c.dim, c.dim));
  RegisterLinear(this, "v_lin", &v_lin, std::make_shared<DenseImpl>(c.dim, c.dim));
  RegisterLinear(this, "out_lin", &out_lin, std::make_shared<DenseImpl>(c.dim, c.dim));
}

torch::Tensor MultiHeadSelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const int64_t b = x.size(0), t = x.size(1), dim = x.size(2), dh = dim / n_heads_;
  auto heads = [&](const torch::Tensor& y) { return y.view({b, t, n_heads_, dh}).transpose(1, 2); };
  torch::Tensor q = heads(q_lin->forward(x));
  torch::Tensor k = heads(k_lin->forward(x));
  torch::Tensor v = heads(v_lin->forward(x));
  torch::Tensor ctx = compat::Attention(q, k, v, mask, dropout_p_, is_training(), fused_);
  return out_lin->forward(ctx.transpose(1, 2).reshape({b, t, dim}));
}

FFNImpl::FFNImpl(const DistilBertConfig& c) {
  dropout = register_module("dropout", torch::nn::Dropout(c.dropout));
  RegisterLinear(this, "lin1", &lin1, std::make_shared<DenseImpl>(c.dim, c.hidden_dim));
  RegisterLinear(this, "lin2", &lin2, std::make_shared<DenseImpl>(c.hidden_dim, c.dim));
  activation = register_module("activation", Activation(c.activation));
}

torch::Tensor FFNImpl::forward(const torch::Tensor& x) { return dropout(lin2->forward(activation(lin1->forward(x)))); }

TransformerBlockImpl::TransformerBlockImpl(const DistilBertConfig& c, const ModelOptions& o) {
  attention = register_module("attention", MultiHeadSelfAttention(c, o));
  sa_layer_norm = register_module("sa_layer_norm", MakeLayerNorm(c.dim));
  ffn = register_module("ffn", FFN(c));
  output_layer_norm = register_module("output_layer_norm", MakeLayerNorm(c.dim));
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  torch::Tensor sa = sa_layer_norm(attention(x, mask) + x);
  return output_layer_norm(ffn(sa) + sa);
}

TransformerImpl::TransformerImpl(const DistilBertConfig& c, const ModelOptions& o) {
  layer = register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_layers; ++i) {
    blocks_.push_back(TransformerBlock(c, o));
    layer->push_back(blocks_.back());
  }
}

torch::Tensor TransformerImpl::forward(torch::Tensor x, const torch::Tensor& mask, std::vector<torch::Tensor>* hidden,
                                       int64_t begin, int64_t end) {
  const int64_t n = static_cast<int64_t>(blocks_.size());
  if (end < 0) end = n;
  TORCH_CHECK(0 <= begin && begin <= end && end <= n, "blocks [", begin, ", ", end, ") out of range for ", n,
              " layers");
  for (int64_t i = begin; i < end; ++i) {
    x = blocks_[i](x, mask);
    if (hidden) hidden->push_back(x);
  }
  return x;
}

DistilBertModelImpl::DistilBertModelImpl(const DistilBertConfig& c, const ModelOptions& o)
    : compute_dtype_(o.compute_dtype), fused_attention_(o.fused_attention) {
  embeddings = register_module("embeddings", Embeddings(c));
  transformer = register_module("transformer", Transformer(c, o));
}

torch::Tensor DistilBertModelImpl::AttentionMask(const torch::Tensor& attention_mask) const {
  // Under bf16 autocast the eager scores are bf16, else fp32.
  return compat::AttentionMask(attention_mask, fused_attention_,
                               compute_dtype_ == torch::kBFloat16 ? torch::kBFloat16 : torch::kFloat);
}

torch::Tensor DistilBertModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                           std::vector<torch::Tensor>* hidden) {
  TORCH_CHECK(input_ids.dim() == 2 && attention_mask.sizes() == input_ids.sizes(),
              "input_ids and attention_mask must both be [batch, seq]");
  compat::AutocastGuard autocast(input_ids.device(), compute_dtype_);
  torch::Tensor x = embeddings(input_ids);
  if (hidden) hidden->push_back(x);
  return transformer(x, AttentionMask(attention_mask), hidden);
}

torch::Tensor DistilBertModelImpl::ForwardBelow(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                                int64_t k) {
  TORCH_CHECK(input_ids.dim() == 2 && attention_mask.sizes() == input_ids.sizes(),
              "input_ids and attention_mask must both be [batch, seq]");
  compat::AutocastGuard autocast(input_ids.device(), compute_dtype_);
  return transformer->forward(embeddings(input_ids), AttentionMask(attention_mask), nullptr, 0, k);
}

torch::Tensor DistilBertModelImpl::ForwardFrom(const torch::Tensor& hidden, const torch::Tensor& attention_mask,
                                               int64_t k) {
  TORCH_CHECK(hidden.dim() == 3 && attention_mask.dim() == 2 && hidden.size(0) == attention_mask.size(0) &&
                  hidden.size(1) == attention_mask.size(1),
              "hidden must be [batch, seq, dim] and attention_mask [batch, seq]");
  compat::AutocastGuard autocast(hidden.device(), compute_dtype_);
  return transformer->forward(hidden, AttentionMask(attention_mask), nullptr, k);
}

DistilBertForSequenceClassificationImpl::DistilBertForSequenceClassificationImpl(const DistilBertConfig& c,
                                                                                 const ModelOptions& o)
    : config_(c), compute_dtype_(o.compute_dtype) {
  distilbert = register_module("distilbert", DistilBertModel(c, o));
  RegisterLinear(this, "pre_classifier", &pre_classifier, std::make_shared<DenseImpl>(c.dim, c.dim));
  RegisterLinear(this, "classifier", &classifier, std::make_shared<DenseImpl>(c.dim, c.num_labels));
  dropout = register_module("dropout", torch::nn::Dropout(c.seq_classif_dropout));
  InitWeights();
}

torch::Tensor DistilBertForSequenceClassificationImpl::ClassifyFeatures(const torch::Tensor& cls) {
  compat::AutocastGuard autocast(cls.device(), compute_dtype_);
  return classifier->forward(dropout(torch::relu(pre_classifier->forward(cls))));
}

const ModelFamily& DistilBertForSequenceClassificationImpl::family() const { return DistilBertFamily(); }

ModelConfig DistilBertForSequenceClassificationImpl::config() const { return ToModelConfig(config_); }

ModelConfig ToModelConfig(const DistilBertConfig& c) {
  ModelConfig m;
  m.model_type = "distilbert";
  m.vocab_size = c.vocab_size;
  m.max_position_embeddings = c.max_position_embeddings;
  m.hidden_size = c.dim;
  m.num_hidden_layers = c.n_layers;
  m.num_attention_heads = c.n_heads;
  m.intermediate_size = c.hidden_dim;
  m.pad_token_id = c.pad_token_id;
  m.num_labels = c.num_labels;
  m.id2label = c.id2label;
  return m;
}

torch::Tensor DistilBertForSequenceClassificationImpl::forward(const EncoderInputs& in) {
  return ClassifyFeatures(EncodeFeatures(in));
}

torch::Tensor DistilBertForSequenceClassificationImpl::EncodeFeatures(const EncoderInputs& in) {
  return distilbert(in.input_ids, in.attention_mask).select(1, 0);
}

torch::Tensor DistilBertForSequenceClassificationImpl::ForwardBelow(const EncoderInputs& in, int64_t k) {
  return distilbert->ForwardBelow(in.input_ids, in.attention_mask, k);
}

std::vector<std::shared_ptr<torch::nn::Module>> DistilBertForSequenceClassificationImpl::blocks() {
  return distilbert->transformer->layer->children();
}

torch::Tensor DistilBertForSequenceClassificationImpl::ClassifyFrom(const torch::Tensor& hidden,
                                                                    const torch::Tensor& attention_mask, int64_t k) {
  return ClassifyFeatures(distilbert->ForwardFrom(hidden, attention_mask, k).select(1, 0));
}

void DistilBertForSequenceClassificationImpl::InitWeights() {
  torch::NoGradGuard no_grad;
  const double std = config_.initializer_range;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* d = m->as<DenseImpl>()) {
      d->ResetParameters(std);
    } else if (auto* e = m->as<torch::nn::EmbeddingImpl>()) {
      e->weight.normal_(0.0, std);
      if (e->options.padding_idx()) e->weight[*e->options.padding_idx()].zero_();
    } else if (auto* ln = m->as<torch::nn::LayerNormImpl>()) {
      ln->weight.fill_(1.0);
      ln->bias.zero_();
    }
  }
}

void DistilBertForSequenceClassificationImpl::InitHead() {
  for (auto* layer : {&pre_classifier, &classifier}) {
    if (auto* d = (*layer)->as<DenseImpl>()) d->ResetParameters(config_.initializer_range);
  }
}

}  // namespace ftune::model
