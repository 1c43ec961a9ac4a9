// LoRA (Hu et al. 2021) as PEFT implements it: a frozen Linear W plus a trainable low-rank update,
//   y = W x + (alpha / r) * B(A(dropout(x))),   A: in -> r (Kaiming-uniform), B: r -> out (zeros).
// Layers are swapped in by qualified name after the model is built (the assignment's
// replace_layers), so the model code never branches on LoRA. Parameter names follow PEFT's saved
// adapters: "<layer>.base_layer.weight", "<layer>.lora_A.weight", "<layer>.lora_B.weight".
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
  // A Linear is replaced when its qualified name equals a target or ends with "." + target (PEFT's rule).
  std::vector<std::string> targets = {"q_lin", "v_lin"};
  double scaling() const { return alpha / static_cast<double>(rank); }
};

class LoraLinearImpl : public LinearLayerImpl {
 public:
  LoraLinearImpl(LinearLayer base, const LoraOptions& options);
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t in_features() const override { return base_layer->in_features(); }
  int64_t out_features() const override { return base_layer->out_features(); }
  void pretty_print(std::ostream& os) const override { os << "lora.Linear"; }

  // W + scaling * B @ A as a plain Linear (PEFT's merge_and_unload for this layer).
  Dense Merged() const;
  double scaling() const { return scaling_; }
  int64_t rank() const { return rank_; }

  LinearLayer base_layer;
  torch::nn::AnyModule lora_dropout;
  Dense lora_A, lora_B;

 private:
  int64_t rank_;
  double scaling_;
};

// Replaces every matching Linear under `root` with a LoraLinear; returns the qualified names
// replaced, in model order. Errors when a target matches nothing (a typo would otherwise train
// only the head) or when options are invalid.
absl::StatusOr<std::vector<std::string>> ApplyLora(torch::nn::Module& root, const LoraOptions& options);

// Replaces every LoraLinear under `root` with its merged Dense; returns how many were merged.
int MergeLora(torch::nn::Module& root);

// Every (qualified name, LoraLinear) under `root`.
std::vector<std::pair<std::string, std::shared_ptr<LoraLinearImpl>>> FindLoraLayers(torch::nn::Module& root);

}  // namespace ftune::model
