#include "train/gradient_reducer.h"

#include <thread>
#include <vector>

#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "absl/strings/str_format.h"
#include "common/torch_compat.h"
#include "train/collectives.h"

namespace ftune::train {

struct OverlapState {
  struct Bucket {
    size_t group = 0;
    int64_t begin = 0, numel = 0;  // range of the group's flat gradient buffer
    int params = 0;                // parameters whose gradients it holds
  };
  dist::Communicator* comm = nullptr;
  std::thread::id owner;  // hooks on this thread may start buckets (MPI is called from it only)
  std::vector<Bucket> buckets;
  std::vector<torch::Tensor> grads;                                  // flat gradient buffer per group
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;  // keeps the hooks alive
  std::vector<std::string> names;                                    // per hooked parameter, for messages
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
    if (++arrivals[param] > 1) return;  // reported by Finish
    --remaining[bucket];
    if (std::this_thread::get_id() != owner || !status.ok()) return;
    while (next < buckets.size() && remaining[next] == 0 && status.ok()) {
      status = Start(next++);
      ++started_in_hooks;
    }
    if (status.ok()) status = comm->Progress();
  }
  void Begin() {
    remaining.clear();
    for (const auto& b : buckets) remaining.push_back(b.params);
    arrivals.assign(names.size(), 0);
    next = 0;
    status = absl::OkStatus();
    active = true;
  }
  absl::Status Finish() {
    active = false;
    while (next < buckets.size() && status.ok()) status = Start(next++);
    FTUNE_RETURN_IF_ERROR(status);
    FTUNE_RETURN_IF_ERROR(comm->WaitAll());
    for (size_t i = 0; i < arrivals.size(); ++i) {
      if (arrivals[i] > 1) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "parameter %s received its gradient %d times in one backward pass (it is used more than once per "
            "forward), so its bucket was all-reduced early; train with --overlap_comm=false",
            names[i], arrivals[i]));
      }
    }
    return absl::OkStatus();
  }
};

namespace {

// Buckets of whole parameters, from the last parameter of the last group backwards (the order in
// which the backward pass produces gradients), with a hook on every parameter's accumulator.
std::shared_ptr<OverlapState> InstallOverlap(std::vector<ParamGroup>& groups, dist::Communicator* comm,
                                             size_t bucket_bytes) {
  auto st = std::make_shared<OverlapState>();
  st->comm = comm;
  st->owner = std::this_thread::get_id();
  for (size_t gi = groups.size(); gi-- > 0;) {
    const ParamGroup& g = groups[gi];
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
  return st;
}

}  // namespace

GradientReducer::GradientReducer(FlatParameters* flat, dist::Communicator* comm, const torch::Device& device,
                                 Options options)
    : flat_(flat), comm_(comm), device_(device), options_(options) {
  // Overlap needs the gradients where a non-blocking host transport reads them. NCCL needs no
  // help: its all-reduce is queued on the stream after the backward kernels without the host waiting.
  if (comm_ != nullptr && options_.overlap && device_.is_cpu() &&
      comm_->memory() == dist::Communicator::Memory::kHost) {
    overlap_ = InstallOverlap(flat_->groups(), comm_, options_.bucket_bytes);
  }
}

GradientReducer::~GradientReducer() = default;
GradientReducer::GradientReducer(GradientReducer&&) noexcept = default;
GradientReducer& GradientReducer::operator=(GradientReducer&&) noexcept = default;

absl::Status GradientReducer::BroadcastParameters(int root) {
  if (comm_ == nullptr) return absl::OkStatus();
  for (auto& g : flat_->groups())
    FTUNE_RETURN_IF_ERROR(Broadcast(*comm_, g.params, root, compat::CurrentCudaStream(device_)));
  return absl::OkStatus();
}

void GradientReducer::BeginStep() {
  if (comm_ == nullptr) return;
  // Between BeginStep and FinishStep only gradients use the communicator (the backward pass).
  step_start_seconds_ = comm_->stats().allreduce_seconds;
  if (overlap_) overlap_->Begin();
}

absl::Status GradientReducer::FinishStep() {
  if (comm_ == nullptr) return absl::OkStatus();
  absl::Status st = overlap_ ? overlap_->Finish() : AllReduceBuckets();
  seconds_ += comm_->stats().allreduce_seconds - step_start_seconds_;
  return st;
}

absl::Status GradientReducer::AllReduceBuckets() {
  void* stream = compat::CurrentCudaStream(device_);
  for (auto& g : flat_->groups()) {
    const int64_t per_bucket =
        std::max<int64_t>(1, static_cast<int64_t>(options_.bucket_bytes) / g.grads.element_size());
    for (int64_t off = 0; off < g.grads.numel(); off += per_bucket) {
      FTUNE_RETURN_IF_ERROR(
          AllReduceSum(*comm_, g.grads.narrow(0, off, std::min(per_bucket, g.grads.numel() - off)), stream));
    }
  }
  return absl::OkStatus();
}

int64_t GradientReducer::num_buckets() const { return overlap_ ? static_cast<int64_t>(overlap_->buckets.size()) : 0; }

int64_t GradientReducer::buckets_started_in_backward() const { return overlap_ ? overlap_->started_in_hooks : 0; }

}  // namespace ftune::train
