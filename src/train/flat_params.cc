#include "train/flat_params.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ftune::train {

absl::StatusOr<FlatParameters> FlatParameters::Build(torch::nn::Module& model, double weight_decay) {
  std::set<std::string> no_decay;
  for (const auto& m : model.named_modules()) {
    if (m.value()->as<torch::nn::LayerNormImpl>()) {
      for (const auto& p : m.value()->named_parameters(false)) {
        no_decay.insert(m.key().empty() ? p.key() : m.key() + "." + p.key());
      }
    }
  }
  struct Pending {
    std::string name;
    torch::Tensor param;
  };
  std::vector<Pending> decay, plain;
  for (const auto& p : model.named_parameters()) {
    if (!p.value().requires_grad()) continue;
    bool wd = weight_decay != 0.0 && !no_decay.count(p.key()) && !absl::StrContains(p.key(), "bias");
    (wd ? decay : plain).push_back({p.key(), p.value()});
  }
  FlatParameters flat;
  torch::NoGradGuard no_grad;
  for (auto* list : {&plain, &decay}) {
    if (list->empty()) continue;
    const torch::Tensor& first = list->front().param;
    int64_t total = 0;
    for (const auto& e : *list) {
      if (e.param.scalar_type() != first.scalar_type() || e.param.device() != first.device()) {
        return absl::FailedPreconditionError(
            absl::StrFormat("trainable parameter %s differs in dtype/device from %s", e.name, list->front().name));
      }
      total += e.param.numel();
    }
    ParamGroup g;
    g.weight_decay = list == &decay ? weight_decay : 0.0;
    g.params = torch::empty({total}, first.options());
    g.grads = torch::zeros({total}, first.options());
    int64_t off = 0;
    for (auto& e : *list) {
      const int64_t n = e.param.numel();
      torch::Tensor pv = g.params.narrow(0, off, n).view(e.param.sizes());
      pv.copy_(e.param);
      e.param.set_data(pv);
      e.param.mutable_grad() = g.grads.narrow(0, off, n).view(e.param.sizes());
      g.names.push_back(e.name);
      g.variables.push_back(e.param);
      g.offsets.push_back(off);
      off += n;
    }
    flat.groups_.push_back(std::move(g));
  }
  return flat;
}

int64_t FlatParameters::numel() const {
  int64_t n = 0;
  for (const auto& g : groups_) n += g.params.numel();
  return n;
}

int64_t FlatParameters::bytes() const {
  int64_t n = 0;
  for (const auto& g : groups_) n += g.grads.numel() * g.grads.element_size();
  return n;
}

void FlatParameters::ZeroGrad() {
  for (auto& g : groups_) g.grads.zero_();
}

torch::Tensor FlatParameters::GradNorm() const {
  torch::NoGradGuard no_grad;
  if (groups_.size() == 1) return groups_.front().grads.norm().to(torch::kFloat);
  // torch.nn.utils.clip_grad_norm_: the norm of the per-tensor norms.
  std::vector<torch::Tensor> norms;
  for (const auto& g : groups_) norms.push_back(g.grads.norm().to(torch::kFloat));
  return torch::stack(norms).norm();
}

void FlatParameters::ClipGradNorm(const torch::Tensor& norm, double max_norm) {
  torch::NoGradGuard no_grad;
  // torch.nn.utils.clip_grad_norm_: always multiplies by the clamped coefficient (on the device).
  torch::Tensor coef = (max_norm / (norm + 1e-6)).clamp_max(1.0);
  for (auto& g : groups_) g.grads.mul_(coef);
}

std::string FlatParameters::Layout() const {
  std::string s;
  for (const auto& g : groups_) {
    absl::StrAppend(&s, "group wd=", g.weight_decay, ":");
    for (const auto& n : g.names) absl::StrAppend(&s, n, ",");
    absl::StrAppend(&s, ";");
  }
  return s;
}

}  // namespace ftune::train
