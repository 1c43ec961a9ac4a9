#include "train/flat_params.h"

#include <set>

#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

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

struct OverlapState {
  struct Bucket {
    size_t group = 0;
    int64_t begin = 0, numel = 0;  // range of the group's flat gradient buffer
    int params = 0;                // parameters whose gradients it holds
  };
  dist::Communicator* comm = nullptr;
  std::thread::id owner;  // hooks on this thread may start buckets (MPI is called from it only)
  std::vector<Bucket> buckets;
  std::vector<torch::Tensor> grads;  // flat gradient buffer per group
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;  // keeps the hooks alive
  std::vector<std::string> names;    // per hooked parameter, for messages
  // Per step.
  bool active = false;
  std::vector<int> remaining;  // per bucket: gradients still to arrive
  std::vector<int> arrivals;   // per parameter
  size_t next = 0;             // buckets [0, next) have been started
  absl::Status status;
  int64_t started_in_hooks = 0;  // over all steps

  absl::Status Start(size_t b) {
    const Bucket& k = buckets[b];
    torch::Tensor t = grads[k.group].narrow(0, k.begin, k.numel);
    FTUNE_ASSIGN_OR_RETURN(dist::DType dt, CommDType(t));
    return comm->StartAllReduce(t.data_ptr(), static_cast<size_t>(k.numel), dt, dist::ReduceOp::kSum);
  }
  // A parameter's gradient has been accumulated (the hook).
  void Arrived(int param, int bucket) {
    if (!active) return;
    if (++arrivals[param] > 1) return;  // reported by FinishOverlapped
    --remaining[bucket];
    if (std::this_thread::get_id() != owner || !status.ok()) return;
    while (next < buckets.size() && remaining[next] == 0 && status.ok()) {
      status = Start(next++);
      ++started_in_hooks;
    }
    if (status.ok()) status = comm->Progress();
  }
};

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

void FlatParameters::EnableOverlap(dist::Communicator* comm, size_t bucket_bytes) {
  auto st = std::make_shared<OverlapState>();
  st->comm = comm;
  st->owner = std::this_thread::get_id();
  // Buckets of whole parameters, from the last parameter of the last group backwards: the order in
  // which the backward pass produces gradients.
  for (size_t gi = groups_.size(); gi-- > 0;) {
    const ParamGroup& g = groups_[gi];
    st->grads.push_back(g.grads);
    const size_t flat_index = st->grads.size() - 1;
    const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(bucket_bytes) / g.grads.element_size());
    OverlapState::Bucket open;
    bool has_open = false;
    for (size_t pi = g.variables.size(); pi-- > 0;) {
      const int64_t n = g.variables[pi].numel();
      if (has_open && open.numel + n > cap) {
        st->buckets.push_back(open);
        has_open = false;
      }
      if (!has_open) {
        open = OverlapState::Bucket{flat_index, 0, 0, 0};
        has_open = true;
      }
      open.begin = g.offsets[pi];
      open.numel += n;
      ++open.params;
      const int param = static_cast<int>(st->names.size());
      const int bucket = static_cast<int>(st->buckets.size());
      st->names.push_back(g.names[pi]);
      std::weak_ptr<OverlapState> weak = st;
      auto acc = torch::autograd::impl::grad_accumulator(g.variables[pi]);
      acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
          [weak, param, bucket](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
            if (auto s = weak.lock()) s->Arrived(param, bucket);
            return outputs;
          }));
      st->accumulators.push_back(std::move(acc));
    }
    if (has_open) st->buckets.push_back(open);
  }
  overlap_ = std::move(st);
}

int64_t FlatParameters::num_buckets() const { return overlap_ ? static_cast<int64_t>(overlap_->buckets.size()) : 0; }

int64_t FlatParameters::buckets_started_in_backward() const { return overlap_ ? overlap_->started_in_hooks : 0; }

void FlatParameters::BeginOverlappedStep() {
  OverlapState& s = *overlap_;
  s.remaining.clear();
  for (const auto& b : s.buckets) s.remaining.push_back(b.params);
  s.arrivals.assign(s.names.size(), 0);
  s.next = 0;
  s.status = absl::OkStatus();
  s.active = true;
}

absl::Status FlatParameters::FinishOverlapped() {
  OverlapState& s = *overlap_;
  s.active = false;
  while (s.next < s.buckets.size() && s.status.ok()) s.status = s.Start(s.next++);
  FTUNE_RETURN_IF_ERROR(s.status);
  FTUNE_RETURN_IF_ERROR(s.comm->WaitAll());
  for (size_t i = 0; i < s.arrivals.size(); ++i) {
    if (s.arrivals[i] > 1) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "parameter %s received its gradient %d times in one backward pass (it is used more than once per "
          "forward), so its bucket was all-reduced early; train with --overlap_comm=false",
          s.names[i], s.arrivals[i]));
    }
  }
  return absl::OkStatus();
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
