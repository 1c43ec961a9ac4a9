#include "train/flat_params.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace ftune::train {
namespace {

absl::StatusOr<dist::DType> CommDType(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return dist::DType::kFloat32;
    case torch::kDouble: return dist::DType::kFloat64;
    case torch::kBFloat16: return dist::DType::kBFloat16;
    case torch::kHalf: return dist::DType::kFloat16;
    default: return absl::InvalidArgumentError("unsupported gradient dtype for all-reduce");
  }
}

// Runs `fn(ptr, count)` on host memory: directly for CPU tensors, or through a host copy when a
// host-only backend (MPI) meets device memory.
template <typename Fn>
absl::Status OnHost(torch::Tensor t, bool backend_is_host, Fn fn) {
  if (t.is_cpu() || !backend_is_host) return fn(t.data_ptr(), static_cast<size_t>(t.numel()));
  torch::Tensor host = t.to(torch::kCPU);
  absl::Status st = fn(host.data_ptr(), static_cast<size_t>(host.numel()));
  if (st.ok()) t.copy_(host);
  return st;
}

}  // namespace

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
        return absl::FailedPreconditionError(absl::StrFormat(
            "trainable parameter %s differs in dtype/device from %s", e.name, list->front().name));
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

absl::Status FlatParameters::AllReduceGrads(dist::Communicator* comm, size_t bucket_bytes, void* stream) {
  const bool host = std::string(comm->name()) != "nccl";
  for (auto& g : groups_) {
    FTUNE_ASSIGN_OR_RETURN(dist::DType dt, CommDType(g.grads));
    const int64_t per_bucket = std::max<int64_t>(1, static_cast<int64_t>(bucket_bytes) / g.grads.element_size());
    for (int64_t off = 0; off < g.grads.numel(); off += per_bucket) {
      torch::Tensor bucket = g.grads.narrow(0, off, std::min(per_bucket, g.grads.numel() - off));
      FTUNE_RETURN_IF_ERROR(OnHost(bucket, host, [&](void* ptr, size_t count) {
        return comm->AllReduce(ptr, count, dt, dist::ReduceOp::kSum, stream);
      }));
    }
  }
  return absl::OkStatus();
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

absl::Status FlatParameters::BroadcastParams(dist::Communicator* comm, int root, void* stream) {
  const bool host = std::string(comm->name()) != "nccl";
  torch::NoGradGuard no_grad;
  for (auto& g : groups_) {
    FTUNE_ASSIGN_OR_RETURN(dist::DType dt, CommDType(g.params));
    FTUNE_RETURN_IF_ERROR(OnHost(g.params, host, [&](void* ptr, size_t count) {
      return comm->Broadcast(ptr, count, dt, root, stream);
    }));
  }
  return absl::OkStatus();
}

}  // namespace ftune::train
