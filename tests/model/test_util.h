// Test helpers for the adapter layers: finite-difference gradients and a tiny random model.
#pragma once

#include <functional>

#include <torch/torch.h>

#include "model/distilbert/family.h"
#include "model/distilbert/masked_lm.h"
#include "model/distilbert/modeling.h"
#include "model/hf_checkpoint.h"
#include "model/methods.h"

namespace ftune::testing {

// The model tests are the DistilBERT family's tests: its classes behind the interfaces.
inline model::DistilBertForSequenceClassificationImpl& AsDistilBert(const model::SequenceClassifier& m) {
  return dynamic_cast<model::DistilBertForSequenceClassificationImpl&>(*m);
}
inline model::DistilBertForMaskedLMImpl& AsDistilBertMlm(const model::MaskedLanguageModel& m) {
  return dynamic_cast<model::DistilBertForMaskedLMImpl&>(*m);
}
inline model::LoadedMaskedLm BuildDistilBertMlm(const io::DistilBertConfig& c, const model::ModelOptions& o = {}) {
  model::LoadedMaskedLm m;
  m.model = model::DistilBertForMaskedLM(c, o).ptr();
  m.source = "random init";
  return m;
}
// Logits of any classifier on (ids, mask).
inline torch::Tensor Logits(model::SequenceClassifierImpl& m, const torch::Tensor& ids, const torch::Tensor& mask) {
  return m.forward(model::EncoderInputs{ids, mask, {}});
}
// A random-init classifier of `c` (HF's init), as LoadPretrained returns models.
inline model::LoadedModel BuildDistilBert(const io::DistilBertConfig& c, const model::ModelOptions& o = {}) {
  model::LoadedModel m;
  m.model = model::DistilBertForSequenceClassification(c, o).ptr();
  m.source = "random init";
  return m;
}
// The family's adapter targets (LoRA q_lin, v_lin; IA3 k_lin, v_lin, lin2 feedforward).
inline model::LoraOptions DistilBertLora() {
  return model::WithFamilyDefaults({}, model::DistilBertFamily()).lora;
}
inline model::Ia3Options DistilBertIa3() { return model::WithFamilyDefaults({}, model::DistilBertFamily()).ia3; }

// Central differences of the scalar `f` w.r.t. every element of `p` (modified in place and
// restored), in p's dtype: use float64 tensors with h ~ 1e-6.
inline torch::Tensor FiniteDifferenceGrad(torch::Tensor p, const std::function<double()>& f, double h = 1e-6) {
  torch::NoGradGuard no_grad;
  torch::Tensor grad = torch::zeros_like(p);
  torch::Tensor flat = p.view({-1});
  torch::Tensor g = grad.view({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double orig = flat[i].item<double>();
    flat[i] = orig + h;
    const double up = f();
    flat[i] = orig - h;
    const double down = f();
    flat[i] = orig;
    g[i] = (up - down) / (2 * h);
  }
  return grad;
}

// A 2-layer DistilBERT (dim 8, 2 heads, ffn 16, vocab 50) in float64 with dropouts 0, weights
// N(0, 0.3) so every output depends on every weight.
inline model::DistilBertForSequenceClassification TinyDoubleModel() {
  io::DistilBertConfig c = io::DefaultDistilBertConfig();
  c.vocab_size = 50;
  c.max_position_embeddings = 16;
  c.dim = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.hidden_dim = 16;
  c.dropout = c.attention_dropout = c.seq_classif_dropout = 0.0;
  torch::manual_seed(3);
  model::DistilBertForSequenceClassification m(c, model::ModelOptions{/*fused_attention=*/false});
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.normal_(0.0, 0.3);
  m->to(torch::kDouble);
  return m;
}

// A batch for TinyDoubleModel: 3 sequences of 6 tokens, the last two padded.
struct TinyBatch {
  torch::Tensor ids, mask, labels;
};
inline TinyBatch MakeTinyBatch() {
  TinyBatch b;
  b.ids = torch::tensor({{1, 7, 9, 12, 30, 4}, {1, 8, 40, 2, 0, 0}, {1, 33, 0, 0, 0, 0}}, torch::kLong);
  b.mask = (b.ids != 0).to(torch::kLong);
  b.labels = torch::tensor({0, 1, 1}, torch::kLong);
  return b;
}

}  // namespace ftune::testing
