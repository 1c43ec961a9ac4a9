// Building blocks shared by the DistilBERT modules and the adapters (LoRA, DoRA, IA3):
//  - LinearLayer: the interface of every replaceable y = f(x) projection (q_lin, ..., classifier);
//  - Dense: a plain Linear whose parameters are named `weight` and `bias` like torch.nn.Linear;
//  - LinearOwner: a module that holds LinearLayer slots by name and can swap one for another
//    (how adapters replace q_lin/v_lin/... after the model is built, without branching in forward());
//  - FindTargetSlots: PEFT's target_modules rule, resolved against every slot under a module.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "common/status.h"

namespace ftune::model {

class LinearLayerImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
};
using LinearLayer = std::shared_ptr<LinearLayerImpl>;

class DenseImpl : public LinearLayerImpl {
 public:
  DenseImpl(int64_t in, int64_t out, bool bias = true);
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t in_features() const override { return weight.size(1); }
  int64_t out_features() const override { return weight.size(0); }
  // Hugging Face's _init_weights for Linear: weight ~ N(0, std), bias = 0.
  void ResetParameters(double std);
  void pretty_print(std::ostream& os) const override;

  torch::Tensor weight;  // [out, in]
  torch::Tensor bias;    // [out] or undefined
};
using Dense = std::shared_ptr<DenseImpl>;

class LinearOwner {
 public:
  virtual ~LinearOwner() = default;
  // Names of this module's linear slots (child names, e.g. "q_lin").
  std::vector<std::string> LinearNames() const;
  LinearLayer GetLinear(const std::string& name) const;
  // Swaps the child `name` for `layer` (also in the module's children, so names and printing follow).
  void ReplaceLinear(const std::string& name, LinearLayer layer);

 protected:
  // Registers `layer` as child `name` of `self` and remembers `*slot` as where forward() reads it.
  void RegisterLinear(torch::nn::Module* self, const std::string& name, LinearLayer* slot, LinearLayer layer);

 private:
  torch::nn::Module* self_ = nullptr;
  std::vector<std::pair<std::string, LinearLayer*>> slots_;
};

// One linear slot under a root module: `owner->GetLinear(child)` is the layer named `qualified`.
struct LinearSlot {
  std::string qualified;  // e.g. "distilbert.transformer.layer.0.attention.q_lin"
  LinearOwner* owner;
  std::string child;  // e.g. "q_lin"
};

// Every linear slot under `root`, in model order.
std::vector<LinearSlot> LinearSlots(torch::nn::Module& root);

// PEFT's rule for a list of target_modules: a layer matches when its qualified name equals the
// target or ends with "." + target.
bool MatchesTarget(const std::string& qualified, const std::string& target);

// The slots an adapter named `what` (e.g. "LoRA") would wrap: those matching any of `targets`, in
// model order. An empty list, or a target that matches nothing (a typo would otherwise silently
// train only the head), is an InvalidArgument error listing the layer names there are; a match
// that is not a plain Linear (already wrapped by an adapter) is FailedPrecondition.
absl::StatusOr<std::vector<LinearSlot>> FindTargetSlots(torch::nn::Module& root,
                                                        const std::vector<std::string>& targets,
                                                        const std::string& what);

// The device and dtype of `layer`'s first parameter (where an adapter's new parameters must live).
torch::TensorOptions ParameterOptions(const torch::nn::Module& layer);

// The activation of DistilBERT's FFN as a module, so the tree prints like Hugging Face's.
class ActivationImpl : public torch::nn::Module {
 public:
  explicit ActivationImpl(std::string kind) : kind_(std::move(kind)) {}
  torch::Tensor forward(const torch::Tensor& x) { return kind_ == "relu" ? torch::relu(x) : torch::gelu(x); }
  void pretty_print(std::ostream& os) const override { os << (kind_ == "relu" ? "ReLU()" : "GELUActivation()"); }

 private:
  std::string kind_;
};
TORCH_MODULE(Activation);

}  // namespace ftune::model
