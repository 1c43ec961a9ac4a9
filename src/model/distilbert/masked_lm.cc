#include "model/distilbert/masked_lm.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "common/files.h"
#include "common/torch_compat.h"
#include "model/distilbert/family.h"
#include "nlohmann/json.hpp"

namespace ftune::model {
namespace {

constexpr int64_t kIgnoreIndex = -100;

}  // namespace

bool IsMaskedLmHeadKey(const std::string& name) {
  return absl::StartsWith(name, "vocab_transform.") || absl::StartsWith(name, "vocab_layer_norm.") ||
         absl::StartsWith(name, "vocab_projector.");
}

bool IsClassifierHeadKey(const std::string& key) {
  return absl::StartsWith(key, "pre_classifier.") || absl::StartsWith(key, "classifier.");
}

const ModelFamily& DistilBertForMaskedLMImpl::family() const { return DistilBertFamily(); }

std::string DistilBertForMaskedLMImpl::ConfigJson() const {
  nlohmann::json config = nlohmann::json::parse(io::DistilBertConfigToJson(config_));
  config["architectures"] = {"DistilBertForMaskedLM"};
  config["tie_word_embeddings"] = true;
  config.erase("id2label");
  config.erase("label2id");
  config.erase("tie_weights_");
  return config.dump(2) + "\n";
}

TiedProjectionImpl::TiedProjectionImpl(torch::Tensor tied_weight, int64_t vocab_size)
    : weight_(std::move(tied_weight)) {
  bias = register_parameter("bias", torch::zeros({vocab_size}));
}

void TiedProjectionImpl::pretty_print(std::ostream& os) const {
  os << absl::StrFormat("Linear(in_features=%d, out_features=%d, bias=True)", weight_.size(1), weight_.size(0));
}

DistilBertForMaskedLMImpl::DistilBertForMaskedLMImpl(const DistilBertConfig& c, const ModelOptions& o)
    : config_(c), compute_dtype_(o.compute_dtype) {
  distilbert = register_module("distilbert", DistilBertModel(c, o));
  vocab_transform = register_module("vocab_transform", torch::nn::Linear(c.dim, c.dim));
  activation = register_module("activation", Activation(c.activation));
  vocab_layer_norm = register_module("vocab_layer_norm", MakeLayerNorm(c.dim));
  vocab_projector =
      register_module("vocab_projector", TiedProjection(distilbert->embeddings->word_embeddings->weight, c.vocab_size));
  InitWeights();
}

torch::Tensor DistilBertForMaskedLMImpl::Head(const torch::Tensor& hidden) {
  compat::AutocastGuard autocast(hidden.device(), compute_dtype_);
  return vocab_projector(vocab_layer_norm(activation(vocab_transform(hidden))));
}

torch::Tensor DistilBertForMaskedLMImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  return Head(distilbert(input_ids, attention_mask));
}

std::pair<torch::Tensor, torch::Tensor> DistilBertForMaskedLMImpl::ScoredLoss(const EncoderInputs& in,
                                                                              const torch::Tensor& labels) {
  torch::Tensor hidden = distilbert(in.input_ids, in.attention_mask);
  torch::Tensor scored = labels.reshape({-1}).ne(kIgnoreIndex).nonzero().squeeze(1);
  torch::Tensor targets = labels.reshape({-1}).index_select(0, scored);
  torch::Tensor logits = Head(hidden.reshape({-1, hidden.size(-1)}).index_select(0, scored));
  if (logits.scalar_type() != torch::kFloat && logits.scalar_type() != torch::kDouble)
    logits = logits.to(torch::kFloat);
  torch::Tensor loss = torch::nn::functional::cross_entropy(
      logits, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  torch::Tensor correct = logits.detach().argmax(-1).eq(targets).sum();
  return {loss, correct};
}

void DistilBertForMaskedLMImpl::InitWeights() {
  torch::NoGradGuard no_grad;
  const double std = config_.initializer_range;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* d = m->as<DenseImpl>()) {
      d->ResetParameters(std);
    } else if (auto* l = m->as<torch::nn::LinearImpl>()) {
      l->weight.normal_(0.0, std);
      l->bias.zero_();
    } else if (auto* e = m->as<torch::nn::EmbeddingImpl>()) {
      e->weight.normal_(0.0, std);
      if (e->options.padding_idx()) e->weight[*e->options.padding_idx()].zero_();
    } else if (auto* ln = m->as<torch::nn::LayerNormImpl>()) {
      ln->weight.fill_(1.0);
      ln->bias.zero_();
    }
  }
  vocab_projector->bias.zero_();
}

void DistilBertForMaskedLMImpl::InitHead() {
  torch::NoGradGuard no_grad;
  vocab_transform->weight.normal_(0.0, config_.initializer_range);
  vocab_transform->bias.zero_();
  vocab_layer_norm->weight.fill_(1.0);
  vocab_layer_norm->bias.zero_();
  vocab_projector->bias.zero_();
}

}  // namespace ftune::model
