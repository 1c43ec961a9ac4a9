#include "model/layers.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace ftune::model {

DenseImpl::DenseImpl(int64_t in, int64_t out, bool with_bias) {
  weight = register_parameter("weight", torch::empty({out, in}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({out}));
  // torch.nn.Linear's default init (kaiming-uniform weight, uniform bias), so a Dense built on its
  // own behaves like nn.Linear; models overwrite it with their own scheme (ResetParameters).
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (with_bias) {
    double bound = 1.0 / std::sqrt(static_cast<double>(in));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

torch::Tensor DenseImpl::forward(const torch::Tensor& x) { return torch::nn::functional::linear(x, weight, bias); }

void DenseImpl::ResetParameters(double std) {
  torch::NoGradGuard no_grad;
  weight.normal_(0.0, std);
  if (bias.defined()) bias.zero_();
}

void DenseImpl::pretty_print(std::ostream& os) const {
  os << absl::StrFormat("Linear(in_features=%d, out_features=%d, bias=%s)", weight.size(1), weight.size(0),
                        bias.defined() ? "True" : "False");
}

std::vector<std::string> LinearOwner::LinearNames() const {
  std::vector<std::string> names;
  for (const auto& s : slots_) names.push_back(s.first);
  return names;
}

LinearLayer LinearOwner::GetLinear(const std::string& name) const {
  for (const auto& s : slots_) {
    if (s.first == name) return *s.second;
  }
  return nullptr;
}

void LinearOwner::ReplaceLinear(const std::string& name, LinearLayer layer) {
  for (auto& s : slots_) {
    if (s.first == name) {
      *s.second = layer;
      self_->replace_module(name, layer);
      return;
    }
  }
  TORCH_CHECK(false, "no linear slot named ", name);
}

void LinearOwner::RegisterLinear(torch::nn::Module* self, const std::string& name, LinearLayer* slot,
                                 LinearLayer layer) {
  self_ = self;
  *slot = self->register_module(name, layer);
  slots_.emplace_back(name, slot);
}

std::vector<LinearSlot> LinearSlots(torch::nn::Module& root) {
  std::vector<LinearSlot> out;
  for (const auto& item : root.named_modules("", /*include_self=*/true)) {
    auto* owner = dynamic_cast<LinearOwner*>(item.value().get());
    if (owner == nullptr) continue;
    for (const std::string& child : owner->LinearNames()) {
      out.push_back({item.key().empty() ? child : item.key() + "." + child, owner, child});
    }
  }
  return out;
}

bool MatchesTarget(const std::string& qualified, const std::string& target) {
  return qualified == target || absl::EndsWith(qualified, "." + target);
}

absl::StatusOr<std::vector<LinearSlot>> FindTargetSlots(torch::nn::Module& root,
                                                        const std::vector<std::string>& targets,
                                                        const std::string& what) {
  if (targets.empty()) return absl::InvalidArgumentError(absl::StrFormat("%s targets are empty", what));
  const std::vector<LinearSlot> slots = LinearSlots(root);
  std::vector<LinearSlot> hits;
  std::vector<bool> used(targets.size(), false);
  for (const LinearSlot& slot : slots) {
    for (size_t t = 0; t < targets.size(); ++t) {
      if (MatchesTarget(slot.qualified, targets[t])) {
        used[t] = true;
        hits.push_back(slot);
        break;
      }
    }
  }
  for (size_t t = 0; t < targets.size(); ++t) {
    if (used[t]) continue;
    std::set<std::string> names;
    for (const LinearSlot& slot : slots) names.insert(slot.child);
    return absl::InvalidArgumentError(absl::StrFormat("%s target \"%s\" matches no Linear layer (layer names: %s)",
                                                      what, targets[t], absl::StrJoin(names, ", ")));
  }
  for (const LinearSlot& slot : hits) {
    if (slot.owner->GetLinear(slot.child)->as<DenseImpl>() == nullptr) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s already has an adapter layer; apply or load one adapter on a base model", slot.qualified));
    }
  }
  return hits;
}

torch::TensorOptions ParameterOptions(const torch::nn::Module& layer) {
  for (const auto& p : layer.parameters()) return p.options().requires_grad(false);
  return torch::TensorOptions();
}

}  // namespace ftune::model
