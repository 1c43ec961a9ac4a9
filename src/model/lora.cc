#include "model/lora.h"

#include "absl/strings/str_format.h"

namespace ftune::model {

LoraLinearImpl::LoraLinearImpl(LinearLayer base, const LoraOptions& o)
    : rank_(o.rank), scaling_(o.scaling()), has_dropout_(o.dropout > 0.0) {
  base_layer = register_module("base_layer", base);
  if (has_dropout_) {
    lora_dropout = torch::nn::AnyModule(torch::nn::Dropout(o.dropout));
  } else {
    lora_dropout = torch::nn::AnyModule(torch::nn::Identity());
  }
  register_module("lora_dropout", lora_dropout.ptr());
  // Dense's default init is nn.Linear's kaiming_uniform_(a=sqrt(5)), which is PEFT's init of A.
  lora_A = register_module("lora_A", std::make_shared<DenseImpl>(base->in_features(), o.rank, /*bias=*/false));
  lora_B = register_module("lora_B", std::make_shared<DenseImpl>(o.rank, base->out_features(), /*bias=*/false));
  // New parameters live where the base weights live.
  const torch::TensorOptions where = ParameterOptions(*base);
  lora_A->to(where.device(), where.dtype().toScalarType());
  lora_B->to(where.device(), where.dtype().toScalarType());
  torch::NoGradGuard no_grad;
  lora_B->weight.zero_();
  if (o.use_dora) {
    TORCH_CHECK(Base() != nullptr, "DoRA needs a plain Linear base layer");
    // PEFT's DoraLinearLayer.update_layer, after the LoRA init: m = ||W + s B A||_row = ||W||_row.
    lora_magnitude_vector = register_parameter("lora_magnitude_vector", WeightNorm());
  }
}

DenseImpl* LoraLinearImpl::Base() const { return base_layer->as<DenseImpl>(); }

torch::Tensor LoraLinearImpl::WeightNorm() const {
  torch::NoGradGuard no_grad;
  const torch::Tensor& w = Base()->weight;
  return (w + torch::matmul(lora_B->weight, lora_A->weight) * scaling_).norm(2, {1});
}

torch::Tensor LoraLinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor result = base_layer->forward(x);
  // Back to the base output's dtype, as PEFT does (under autocast the fp32 magnitude would promote it).
  if (use_dora()) return (result + DoraForward(x, result)).to(result.scalar_type());
  return result + lora_B->forward(lora_A->forward(lora_dropout.forward(x))) * scaling_;
}

// PEFT's DoraLinearVariant.forward + DoraLinearLayer.forward: the term added to the base output.
torch::Tensor LoraLinearImpl::DoraForward(const torch::Tensor& x, const torch::Tensor& base_result) {
  DenseImpl* base = Base();
  const bool dropped = has_dropout_ && is_training();
  const torch::Tensor in = dropped ? lora_dropout.forward(x) : x;
  // n = ||W + s B A||_row of the current weights, a constant for autograd (detached twice in
  // PEFT: B A before the sum and the norm after it; one guard does both).
  torch::Tensor norm = WeightNorm();
  torch::Tensor scale = (lora_magnitude_vector / norm).view({1, -1});
  torch::Tensor lora_result = lora_B->forward(lora_A->forward(in));
  torch::Tensor plain;  // W x (without bias) on the input the LoRA branch saw
  if (dropped) {
    plain = torch::nn::functional::linear(in, base->weight);
  } else {
    plain = base->bias.defined() ? base_result - base->bias : base_result;
  }
  return (scale - 1) * plain + scale * lora_result * scaling_;
}

Dense LoraLinearImpl::Merged() const {
  DenseImpl* base = Base();
  TORCH_CHECK(base != nullptr, "LoRA merge needs a plain Linear base layer");
  auto merged = std::make_shared<DenseImpl>(base->in_features(), base->out_features(), base->bias.defined());
  merged->to(base->weight.device(), base->weight.scalar_type());  // before the copy: a double model stays exact
  torch::NoGradGuard no_grad;
  torch::Tensor w = base->weight + torch::matmul(lora_B->weight, lora_A->weight) * scaling_;
  if (use_dora()) w = (lora_magnitude_vector / w.norm(2, {1})).view({-1, 1}) * w;
  merged->weight.copy_(w);
  if (base->bias.defined()) merged->bias.copy_(base->bias);
  return merged;
}

absl::StatusOr<std::vector<std::string>> ApplyLora(torch::nn::Module& root, const LoraOptions& o) {
  if (o.rank <= 0) return absl::InvalidArgumentError(absl::StrFormat("--lora_rank must be > 0 (got %d)", o.rank));
  if (!(o.alpha > 0.0))
    return absl::InvalidArgumentError(absl::StrFormat("--lora_alpha must be > 0 (got %g)", o.alpha));
  if (!(o.dropout >= 0.0 && o.dropout < 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat("--lora_dropout must be in [0, 1) (got %g)", o.dropout));
  }
  if (o.targets.empty()) return absl::InvalidArgumentError("--lora_targets is empty");
  FTUNE_ASSIGN_OR_RETURN(std::vector<LinearSlot> hits, FindTargetSlots(root, o.targets, o.use_dora ? "DoRA" : "LoRA"));
  std::vector<std::string> replaced;
  for (const LinearSlot& slot : hits) {
    slot.owner->ReplaceLinear(slot.child, std::make_shared<LoraLinearImpl>(slot.owner->GetLinear(slot.child), o));
    replaced.push_back(slot.qualified);
  }
  return replaced;
}

std::vector<std::pair<std::string, std::shared_ptr<LoraLinearImpl>>> FindLoraLayers(torch::nn::Module& root) {
  std::vector<std::pair<std::string, std::shared_ptr<LoraLinearImpl>>> out;
  for (const LinearSlot& slot : LinearSlots(root)) {
    auto l = std::dynamic_pointer_cast<LoraLinearImpl>(slot.owner->GetLinear(slot.child));
    if (l) out.emplace_back(slot.qualified, l);
  }
  return out;
}

int MergeLora(torch::nn::Module& root) {
  int n = 0;
  for (const LinearSlot& slot : LinearSlots(root)) {
    auto l = std::dynamic_pointer_cast<LoraLinearImpl>(slot.owner->GetLinear(slot.child));
    if (!l) continue;
    slot.owner->ReplaceLinear(slot.child, l->Merged());
    ++n;
  }
  return n;
}

}  // namespace ftune::model
