// Building blocks shared by the DistilBERT modules and LoRA:
//  - LinearLayer: the interface of every replaceable y = f(x) projection (q_lin, ..., classifier);
//  - Dense: a plain Linear whose parameters are named `weight` and `bias` like torch.nn.Linear;
//  - LinearOwner: a module that holds LinearLayer slots by name and can swap one for another
//    (how LoRA replaces q_lin/v_lin after the model is built, without branching in forward()).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

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
