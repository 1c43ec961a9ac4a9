#include "model/lora.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace ftune::model {
namespace {

bool MatchesTarget(const std::string& qualified, const std::string& target) {
  return qualified == target || absl::EndsWith(qualified, "." + target);
}

std::string Join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Calls fn(qualified_name, owner, child_name) for every linear slot under `root`.
template <typename Fn>
void ForEachLinearSlot(torch::nn::Module& root, Fn fn) {
  for (const auto& item : root.named_modules("", /*include_self=*/true)) {
    auto* owner = dynamic_cast<LinearOwner*>(item.value().get());
    if (owner == nullptr) continue;
    for (const std::string& child : owner->LinearNames()) fn(Join(item.key(), child), owner, child);
  }
}

}  // namespace

LoraLinearImpl::LoraLinearImpl(LinearLayer base, const LoraOptions& o) : rank_(o.rank), scaling_(o.scaling()) {
  base_layer = register_module("base_layer", base);
  if (o.dropout > 0.0) {
    lora_dropout = torch::nn::AnyModule(torch::nn::Dropout(o.dropout));
  } else {
    lora_dropout = torch::nn::AnyModule(torch::nn::Identity());
  }
  register_module("lora_dropout", lora_dropout.ptr());
  // Dense's default init is nn.Linear's kaiming_uniform_(a=sqrt(5)), which is PEFT's init of A.
  lora_A = register_module("lora_A", std::make_shared<DenseImpl>(base->in_features(), o.rank, /*bias=*/false));
  lora_B = register_module("lora_B", std::make_shared<DenseImpl>(o.rank, base->out_features(), /*bias=*/false));
  torch::NoGradGuard no_grad;
  lora_B->weight.zero_();
}

torch::Tensor LoraLinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor update = lora_B->forward(lora_A->forward(lora_dropout.forward(x)));
  return base_layer->forward(x) + update * scaling_;
}

Dense LoraLinearImpl::Merged() const {
  auto* base = base_layer->as<DenseImpl>();
  TORCH_CHECK(base != nullptr, "LoRA merge needs a plain Linear base layer");
  auto merged = std::make_shared<DenseImpl>(base->in_features(), base->out_features(), base->bias.defined());
  torch::NoGradGuard no_grad;
  merged->weight.copy_(base->weight + torch::matmul(lora_B->weight, lora_A->weight) * scaling_);
  if (base->bias.defined()) merged->bias.copy_(base->bias);
  merged->to(base->weight.device(), base->weight.scalar_type());
  return merged;
}

absl::StatusOr<std::vector<std::string>> ApplyLora(torch::nn::Module& root, const LoraOptions& o) {
  if (o.rank <= 0) return absl::InvalidArgumentError(absl::StrFormat("--lora_rank must be > 0 (got %d)", o.rank));
  if (!(o.alpha > 0.0)) return absl::InvalidArgumentError(absl::StrFormat("--lora_alpha must be > 0 (got %g)", o.alpha));
  if (!(o.dropout >= 0.0 && o.dropout < 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat("--lora_dropout must be in [0, 1) (got %g)", o.dropout));
  }
  if (o.targets.empty()) return absl::InvalidArgumentError("--lora_targets is empty");
  std::vector<std::tuple<std::string, LinearOwner*, std::string>> hits;
  std::vector<bool> used(o.targets.size(), false);
  ForEachLinearSlot(root, [&](const std::string& qualified, LinearOwner* owner, const std::string& child) {
    for (size_t t = 0; t < o.targets.size(); ++t) {
      if (MatchesTarget(qualified, o.targets[t])) {
        used[t] = true;
        hits.emplace_back(qualified, owner, child);
        return;
      }
    }
  });
  for (size_t t = 0; t < o.targets.size(); ++t) {
    if (!used[t]) {
      std::set<std::string> names;
      ForEachLinearSlot(root, [&](const std::string&, LinearOwner*, const std::string& c) { names.insert(c); });
      return absl::InvalidArgumentError(absl::StrFormat(
          "LoRA target \"%s\" matches no Linear layer (layer names: %s)", o.targets[t], absl::StrJoin(names, ", ")));
    }
  }
  std::vector<std::string> replaced;
  for (auto& [qualified, owner, child] : hits) {
    LinearLayer base = owner->GetLinear(child);
    if (dynamic_cast<LoraLinearImpl*>(base.get()) != nullptr) {
      return absl::FailedPreconditionError(absl::StrFormat("%s already has a LoRA layer", qualified));
    }
    auto lora = std::make_shared<LoraLinearImpl>(base, o);
    // New A/B parameters live where the base weights live.
    for (auto& p : base->parameters()) {
      lora->lora_A->to(p.device(), p.scalar_type());
      lora->lora_B->to(p.device(), p.scalar_type());
      break;
    }
    owner->ReplaceLinear(child, lora);
    replaced.push_back(qualified);
  }
  return replaced;
}

std::vector<std::pair<std::string, std::shared_ptr<LoraLinearImpl>>> FindLoraLayers(torch::nn::Module& root) {
  std::vector<std::pair<std::string, std::shared_ptr<LoraLinearImpl>>> out;
  ForEachLinearSlot(root, [&](const std::string& qualified, LinearOwner* owner, const std::string& child) {
    auto l = std::dynamic_pointer_cast<LoraLinearImpl>(owner->GetLinear(child));
    if (l) out.emplace_back(qualified, l);
  });
  return out;
}

int MergeLora(torch::nn::Module& root) {
  int n = 0;
  std::vector<std::tuple<LinearOwner*, std::string, Dense>> todo;
  ForEachLinearSlot(root, [&](const std::string&, LinearOwner* owner, const std::string& child) {
    auto l = std::dynamic_pointer_cast<LoraLinearImpl>(owner->GetLinear(child));
    if (l) todo.emplace_back(owner, child, l->Merged());
  });
  for (auto& [owner, child, merged] : todo) {
    owner->ReplaceLinear(child, merged);
    ++n;
  }
  return n;
}

}  // namespace ftune::model
