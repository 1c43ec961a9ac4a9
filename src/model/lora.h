// LoRA (Hu et al. 2021) and DoRA (Liu et al. 2024) as PEFT 0.2x implements them.
//
// LoRA: a frozen Linear W (bias b) plus a trainable low-rank update,
//   y = W x + b + s * B(A(dropout(x))),   s = alpha / r,  A: in -> r (Kaiming-uniform), B: r -> out (zeros).
// DoRA (use_dora): the same A, B plus a trainable magnitude m [out], initialised to the row norms of
// W (B = 0 at init, so ||W + s B A|| = ||W||), the output rescaled per output feature:
//   y = b + (m / n) * (W x + s B A x),        n = ||W + s B A||_row, treated as a constant
// (no gradient flows through n: DoRA section 4.3, and PEFT's DoraLinearLayer.forward, which
// calls weight_norm.detach()). With lora_dropout active (training, p > 0) PEFT applies the
// rescaling to the dropped input and keeps the undropped base output, and so does ftune:
//   y = W x + b + (m / n - 1) * W d(x) + (m / n) * s * B A d(x),   d = dropout.
//
// Layers are swapped in by qualified name after the model is built (the assignment's
// replace_layers), so the model code never branches on the method. Parameter names are PEFT's
// saved-adapter keys without the "base_model.model." prefix: "<layer>.base_layer.weight",
// "<layer>.lora_A.weight", "<layer>.lora_B.weight", "<layer>.lora_magnitude_vector".
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/status.h"
#include "model/layers.h"

namespace ftune::model {

struct LoraOptions {
  int64_t rank = 12;
  double alpha = 24.0;
  double dropout = 0.0;
  // A Linear is replaced when its qualified name equals a target or ends with "." + target (PEFT's
  // rule). Empty: the model family's defaults (methods.h WithFamilyDefaults; distilbert: q_lin, v_lin).
  std::vector<std::string> targets;
  // DoRA: add the magnitude vector (PEFT's LoraConfig.use_dora).
  bool use_dora = false;
  double scaling() const { return alpha / static_cast<double>(rank); }
};

class LoraLinearImpl : public LinearLayerImpl {
 public:
  // `base` must be a Dense when options.use_dora (DoRA needs its weight).
  LoraLinearImpl(LinearLayer base, const LoraOptions& options);
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t in_features() const override { return base_layer->in_features(); }
  int64_t out_features() const override { return base_layer->out_features(); }
  void pretty_print(std::ostream& os) const override { os << "lora.Linear"; }

  // The layer folded into a plain Linear (PEFT's merge_and_unload for this layer):
  // LoRA W + s B A; DoRA (m / ||W + s B A||_row) * (W + s B A). The bias is kept as is.
  Dense Merged() const;
  // ||W + s B A|| per output row [out] (DoRA's n), computed without autograd.
  torch::Tensor WeightNorm() const;
  double scaling() const { return scaling_; }
  int64_t rank() const { return rank_; }
  bool use_dora() const { return lora_magnitude_vector.defined(); }

  LinearLayer base_layer;
  torch::nn::AnyModule lora_dropout;
  Dense lora_A, lora_B;
  torch::Tensor lora_magnitude_vector;  // [out]; DoRA only (undefined for plain LoRA)

 private:
  torch::Tensor DoraForward(const torch::Tensor& x, const torch::Tensor& base_result);
  DenseImpl* Base() const;  // the base as a Dense (DoRA and merging need its weight)

  int64_t rank_;
  double scaling_;
  bool has_dropout_;
};

// Replaces every matching Linear under `root` with a LoraLinear (with DoRA's magnitude when
// options.use_dora); returns the qualified names replaced, in model order. Errors when a target
// matches nothing (a typo would otherwise train only the head) or when options are invalid.
absl::StatusOr<std::vector<std::string>> ApplyLora(torch::nn::Module& root, const LoraOptions& options);

// Replaces every LoraLinear (LoRA or DoRA) under `root` with its merged Dense; returns how many were merged.
int MergeLora(torch::nn::Module& root);

// Every (qualified name, LoraLinear) under `root`.
std::vector<std::pair<std::string, std::shared_ptr<LoraLinearImpl>>> FindLoraLayers(torch::nn::Module& root);

}  // namespace ftune::model
