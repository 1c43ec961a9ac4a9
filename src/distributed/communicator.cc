// Communicator base: dtype/op tables, shared argument checks, statistics, and the NCCL stand-in
// for builds without NCCL.
#include "distributed/communicator.h"

#include "absl/strings/str_format.h"

namespace ftune::dist {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return 4;
    case DType::kFloat64: return 8;
    case DType::kBFloat16: return 2;
    case DType::kFloat16: return 2;
    case DType::kInt64: return 8;
    case DType::kInt32: return 4;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat16: return "float16";
    case DType::kInt64: return "int64";
    case DType::kInt32: return "int32";
  }
  return "unknown-dtype";
}

const char* ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "unknown-op";
}

Communicator::~Communicator() = default;

void Communicator::RecordAllReduce(uint64_t bytes, double seconds) {
  ++stats_.allreduce_calls;
  stats_.allreduce_bytes += bytes;
  stats_.allreduce_seconds += seconds;
}

absl::Status ValidateAllReduceArgs(const void* data, size_t count, DType dtype, ReduceOp op) {
  if (DTypeSize(dtype) == 0) {
    return absl::InvalidArgumentError(absl::StrFormat("AllReduce: unknown dtype %d", static_cast<int>(dtype)));
  }
  if (op != ReduceOp::kSum && op != ReduceOp::kMax && op != ReduceOp::kMin) {
    return absl::InvalidArgumentError(absl::StrFormat("AllReduce: unknown reduce op %d", static_cast<int>(op)));
  }
  if (data == nullptr && count > 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("AllReduce: null buffer for %d %s elements", count, DTypeName(dtype)));
  }
  return absl::OkStatus();
}

absl::Status ValidateBroadcastArgs(const void* data, size_t count, DType dtype, int root, int world_size) {
  if (DTypeSize(dtype) == 0) {
    return absl::InvalidArgumentError(absl::StrFormat("Broadcast: unknown dtype %d", static_cast<int>(dtype)));
  }
  if (root < 0 || root >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Broadcast: root %d is not a rank (world size %d)", root, world_size));
  }
  if (data == nullptr && count > 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Broadcast: null buffer for %d %s elements", count, DTypeName(dtype)));
  }
  return absl::OkStatus();
}

#if defined(FTUNE_HAVE_NCCL) && FTUNE_HAVE_NCCL
bool NcclCompiledIn() { return true; }
// MakeNcclCommunicator lives in nccl_communicator.cc.
#else
bool NcclCompiledIn() { return false; }

absl::StatusOr<std::unique_ptr<Communicator> > MakeNcclCommunicator(const DistContext& ctx, int cuda_device) {
  return absl::UnimplementedError(
      "this ftune was built without the NCCL communicator; reconfigure with "
      "-DFTUNE_WITH_NCCL=ON (needs nccl.h and the CUDA runtime) or use the MPI backend");
}
#endif

}  // namespace ftune::dist
