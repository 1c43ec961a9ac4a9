#include "model/ia3.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace ftune::model {

Ia3LinearImpl::Ia3LinearImpl(LinearLayer base, bool is_feedforward) : is_feedforward_(is_feedforward) {
  base_layer = register_module("base_layer", base);
  std::vector<int64_t> shape =
      is_feedforward ? std::vector<int64_t>{1, base->in_features()} : std::vector<int64_t>{base->out_features(), 1};
  // PEFT's reset_ia3_parameters: ones, so a fresh adapter leaves the model unchanged.
  ia3_l = register_parameter("ia3_l", torch::ones(shape, ParameterOptions(*base)));
}

torch::Tensor Ia3LinearImpl::forward(const torch::Tensor& x) {
  // PEFT casts back to the dtype the base layer saw / produced (the fp32 vector would otherwise
  // promote a reduced-precision activation under autocast).
  torch::Tensor l = ia3_l.flatten();
  if (is_feedforward_) return base_layer->forward((x * l).to(x.scalar_type()));
  torch::Tensor result = base_layer->forward(x);
  return (result * l).to(result.scalar_type());
}

Dense Ia3LinearImpl::Merged() const {
  auto* base = base_layer->as<DenseImpl>();
  TORCH_CHECK(base != nullptr, "IA3 merge needs a plain Linear base layer");
  auto merged = std::make_shared<DenseImpl>(base->in_features(), base->out_features(), base->bias.defined());
  merged->to(base->weight.device(), base->weight.scalar_type());  // before the copy: a double model stays exact
  torch::NoGradGuard no_grad;
  // [out, in] * [out, 1] scales rows; * [1, in] scales columns.
  merged->weight.copy_(base->weight * ia3_l);
  if (base->bias.defined()) merged->bias.copy_(is_feedforward_ ? base->bias : base->bias * ia3_l.flatten());
  return merged;
}

absl::StatusOr<std::vector<std::string>> ApplyIa3(torch::nn::Module& root, const Ia3Options& o) {
  for (const std::string& ff : o.feedforward) {
    if (std::find(o.targets.begin(), o.targets.end(), ff) == o.targets.end()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("IA3 feedforward module \"%s\" is not one of the targets (PEFT: feedforward_modules must "
                          "be a subset of target_modules)",
                          ff));
    }
  }
  FTUNE_ASSIGN_OR_RETURN(std::vector<LinearSlot> hits, FindTargetSlots(root, o.targets, "IA3"));
  std::vector<std::string> replaced;
  for (const LinearSlot& slot : hits) {
    const bool feedforward = std::any_of(o.feedforward.begin(), o.feedforward.end(),
                                         [&](const std::string& ff) { return absl::EndsWith(slot.qualified, ff); });
    slot.owner->ReplaceLinear(slot.child,
                              std::make_shared<Ia3LinearImpl>(slot.owner->GetLinear(slot.child), feedforward));
    replaced.push_back(slot.qualified);
  }
  return replaced;
}

std::vector<std::pair<std::string, std::shared_ptr<Ia3LinearImpl>>> FindIa3Layers(torch::nn::Module& root) {
  std::vector<std::pair<std::string, std::shared_ptr<Ia3LinearImpl>>> out;
  for (const LinearSlot& slot : LinearSlots(root)) {
    auto l = std::dynamic_pointer_cast<Ia3LinearImpl>(slot.owner->GetLinear(slot.child));
    if (l) out.emplace_back(slot.qualified, l);
  }
  return out;
}

int MergeIa3(torch::nn::Module& root) {
  int n = 0;
  for (const LinearSlot& slot : LinearSlots(root)) {
    auto l = std::dynamic_pointer_cast<Ia3LinearImpl>(slot.owner->GetLinear(slot.child));
    if (!l) continue;
    slot.owner->ReplaceLinear(slot.child, l->Merged());
    ++n;
  }
  return n;
}

}  // namespace ftune::model
