// (IA)^3 (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
// In-Context Learning") as PEFT 0.2x implements it (peft/tuners/ia3/layer.py): a frozen Linear W
// (bias b) and a trainable vector l, initialised to ones, that rescales
//   - the output, for ordinary targets:          y = l * (W x + b),  l: [out, 1]   (bias scaled too)
//   - the input, for `feedforward` targets:      y = W (l * x) + b,  l: [1, in]
// Default targets are the family's (family.h). The parameter is named like PEFT's saved key
// without "base_model.model.": "<layer>.ia3_l" (the base stays "<layer>.base_layer.*").
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "common/status.h"
#include "model/layers.h"

namespace ftune::model {

struct Ia3Options {
  // PEFT's target_modules rule (see MatchesTarget). Empty: the model family's defaults, with its
  // feedforward modules (methods.h WithFamilyDefaults; distilbert: k_lin, v_lin, lin2).
  std::vector<std::string> targets;
  // PEFT's feedforward_modules: targets whose vector scales the input. A layer is feedforward when
  // its qualified name ends with one of these (PEFT's plain endswith); each must also be a target.
  std::vector<std::string> feedforward;
};

class Ia3LinearImpl : public LinearLayerImpl {
 public:
  Ia3LinearImpl(LinearLayer base, bool is_feedforward);
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t in_features() const override { return base_layer->in_features(); }
  int64_t out_features() const override { return base_layer->out_features(); }
  void pretty_print(std::ostream& os) const override { os << "ia3.Linear"; }

  // The layer folded into a plain Linear (PEFT's merge): W * l (rows scaled, bias too) or, for a
  // feedforward layer, columns of W scaled by l and the bias kept.
  Dense Merged() const;
  bool is_feedforward() const { return is_feedforward_; }

  LinearLayer base_layer;
  torch::Tensor ia3_l;  // [out, 1], or [1, in] for a feedforward layer

 private:
  bool is_feedforward_;
};

// Replaces every matching Linear under `root` with an Ia3Linear; returns the qualified names
// replaced, in model order. Errors like ApplyLora, and when a feedforward module is not a target.
absl::StatusOr<std::vector<std::string>> ApplyIa3(torch::nn::Module& root, const Ia3Options& options);

// Replaces every Ia3Linear under `root` with its merged Dense; returns how many were merged.
int MergeIa3(torch::nn::Module& root);

// Every (qualified name, Ia3Linear) under `root`.
std::vector<std::pair<std::string, std::shared_ptr<Ia3LinearImpl>>> FindIa3Layers(torch::nn::Module& root);

}  // namespace ftune::model
