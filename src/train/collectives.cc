#include "train/collectives.h"

namespace ftune::train {
namespace {

// Runs `fn(ptr, count)` on memory the transport can read: `t` itself, or a host copy of a device
// tensor for a host transport (copied back afterwards).
template <typename Fn>
absl::Status OnTransportMemory(dist::Communicator& comm, torch::Tensor t, Fn fn) {
  if (t.is_cpu() || comm.memory() == dist::Communicator::Memory::kDevice) {
    return fn(t.data_ptr(), static_cast<size_t>(t.numel()));
  }
  torch::Tensor host = t.to(torch::kCPU);
  FTUNE_RETURN_IF_ERROR(fn(host.data_ptr(), static_cast<size_t>(host.numel())));
  t.copy_(host);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<dist::DType> CommDType(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return dist::DType::kFloat32;
    case torch::kDouble: return dist::DType::kFloat64;
    case torch::kBFloat16: return dist::DType::kBFloat16;
    case torch::kHalf: return dist::DType::kFloat16;
    case torch::kLong: return dist::DType::kInt64;
    case torch::kInt: return dist::DType::kInt32;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("no collective for tensors of type ", c10::toString(t.scalar_type())));
  }
}

absl::Status AllReduceSum(dist::Communicator& comm, torch::Tensor t, void* stream) {
  FTUNE_ASSIGN_OR_RETURN(dist::DType dt, CommDType(t));
  torch::NoGradGuard no_grad;
  return OnTransportMemory(
      comm, t, [&](void* ptr, size_t n) { return comm.AllReduce(ptr, n, dt, dist::ReduceOp::kSum, stream); });
}

absl::Status Broadcast(dist::Communicator& comm, torch::Tensor t, int root, void* stream) {
  FTUNE_ASSIGN_OR_RETURN(dist::DType dt, CommDType(t));
  torch::NoGradGuard no_grad;
  return OnTransportMemory(comm, t, [&](void* ptr, size_t n) { return comm.Broadcast(ptr, n, dt, root, stream); });
}

}  // namespace ftune::train
