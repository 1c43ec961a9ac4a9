// NCCL transport for Communicator (compiled only with -DFTUNE_WITH_NCCL=ON): in-place
// ncclAllReduce / ncclBroadcast on device buffers, enqueued on the caller's CUDA stream.
// Bootstrap: cudaSetDevice, rank 0 makes the ncclUniqueId, MPI_Bcast shares it, ncclCommInitRank.
// Every NCCL failure aborts the NCCL communicator (ncclCommAbort) before the error is returned, so
// no kernel of ours is left waiting on a peer; the caller then takes the job down with
// DistContext::Abort().
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status.h"
#include "distributed/communicator.h"
#include "distributed/mpi_check.h"

#if !NCCL_VERSION_CODE || NCCL_VERSION_CODE < NCCL_VERSION(2, 10, 0)
#error "ftune's NCCL backend needs NCCL >= 2.10 (bfloat16, ncclGetLastError)"
#endif

namespace ftune::dist {
namespace {

absl::StatusCode CodeFor(ncclResult_t r) {
  switch (r) {
    case ncclInvalidArgument:
    case ncclInvalidUsage: return absl::StatusCode::kInvalidArgument;
    case ncclSystemError:
    case ncclRemoteError: return absl::StatusCode::kUnavailable;
    default: return absl::StatusCode::kInternal;
  }
}

absl::Status CudaError(cudaError_t e, const char* call, const char* file, int line, absl::string_view hint = {}) {
  return absl::InternalError(absl::StrCat(absl::StrFormat("CUDA error at %s:%d in %s: %s (%s)", file, line, call,
                                                          cudaGetErrorString(e), cudaGetErrorName(e)),
                                          hint.empty() ? "" : ". HINT: ", hint));
}

// NCCL call inside a NcclCommunicator method: on failure abort the communicator, return the error.
#define FTUNE_NCCL_RETURN_IF_ERROR(call)                                                             \
  do {                                                                                               \
    const ncclResult_t ftune_nccl_r_ = (call);                                                       \
    if (ftune_nccl_r_ != ncclSuccess) return FailAndAbort(ftune_nccl_r_, #call, __FILE__, __LINE__); \
  } while (0)

ncclDataType_t ToNcclType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return ncclFloat32;
    case DType::kFloat64: return ncclFloat64;
    case DType::kBFloat16: return ncclBfloat16;
    case DType::kFloat16: return ncclFloat16;
    case DType::kInt64: return ncclInt64;
    case DType::kInt32: return ncclInt32;
  }
  return ncclFloat32;  // unreachable: arguments are validated first
}

ncclRedOp_t ToNcclOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;  // unreachable: arguments are validated first
}

class NcclCommunicator final : public Communicator {
 public:
  // `comm` is null with one rank (no NCCL communicator is needed); `mpi_comm` is a private
  // duplicate of MPI_COMM_WORLD used for Barrier (MPI_COMM_NULL with one rank).
  NcclCommunicator(int rank, int world_size, int device, std::string host, ncclComm_t comm, MPI_Comm mpi_comm)
      : rank_(rank),
        world_size_(world_size),
        device_(device),
        host_(std::move(host)),
        comm_(comm),
        mpi_comm_(mpi_comm) {}

  ~NcclCommunicator() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
    if (mpi_comm_ != MPI_COMM_NULL && !internal::MpiFinalized()) MPI_Comm_free(&mpi_comm_);
  }

  const char* name() const override { return "nccl"; }
  Memory memory() const override { return Memory::kDevice; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }

  absl::Status AllReduce(void* data, size_t count, DType dtype, ReduceOp op, void* stream) override {
    FTUNE_RETURN_IF_ERROR(ValidateAllReduceArgs(data, count, dtype, op));
    const uint64_t bytes = static_cast<uint64_t>(count) * DTypeSize(dtype);
    if (world_size_ == 1 || count == 0) {
      RecordAllReduce(bytes, 0.0);
      return absl::OkStatus();
    }
    FTUNE_RETURN_IF_ERROR(CheckUsable());
    const auto start = std::chrono::steady_clock::now();
    FTUNE_NCCL_RETURN_IF_ERROR(
        ncclAllReduce(data, data, count, ToNcclType(dtype), ToNcclOp(op), comm_, static_cast<cudaStream_t>(stream)));
    FTUNE_RETURN_IF_ERROR(CheckAsyncError());
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    RecordAllReduce(bytes, took.count());
    return absl::OkStatus();
  }

  absl::Status Broadcast(void* data, size_t count, DType dtype, int root, void* stream) override {
    FTUNE_RETURN_IF_ERROR(ValidateBroadcastArgs(data, count, dtype, root, world_size_));
    if (world_size_ == 1 || count == 0) return absl::OkStatus();
    FTUNE_RETURN_IF_ERROR(CheckUsable());
    FTUNE_NCCL_RETURN_IF_ERROR(
        ncclBroadcast(data, data, count, ToNcclType(dtype), root, comm_, static_cast<cudaStream_t>(stream)));
    return CheckAsyncError();
  }

  absl::Status Barrier() override {
    if (world_size_ == 1) return absl::OkStatus();
    FTUNE_MPI_RETURN_IF_ERROR(MPI_Barrier(mpi_comm_));
    return absl::OkStatus();
  }

 private:
  absl::Status CheckUsable() const {
    if (comm_ != nullptr) return absl::OkStatus();
    return absl::FailedPreconditionError(
        "NCCL communicator was aborted after an earlier error; the job must stop "
        "(DistContext::Abort)");
  }

  // Network failures surface asynchronously; a cheap poll after each enqueue turns them into an
  // error here instead of a kernel that waits forever.
  absl::Status CheckAsyncError() {
    ncclResult_t async = ncclSuccess;
    FTUNE_NCCL_RETURN_IF_ERROR(ncclCommGetAsyncError(comm_, &async));
    if (async != ncclSuccess && async != ncclInProgress) {
      return FailAndAbort(async, "ncclCommGetAsyncError (asynchronous error)", __FILE__, __LINE__);
    }
    return absl::OkStatus();
  }

  absl::Status FailAndAbort(ncclResult_t r, const char* call, const char* file, int line) {
    const char* last = comm_ != nullptr ? ncclGetLastError(comm_) : ncclGetLastError(nullptr);
    absl::Status status(CodeFor(r),
                        absl::StrFormat("NCCL error at %s:%d in %s: %s%s%s [rank %d on %s, GPU %d]", file, line, call,
                                        ncclGetErrorString(r), (last && *last) ? "; last error: " : "",
                                        (last && *last) ? last : "", rank_, host_, device_));
    if (comm_ != nullptr) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    return status;
  }

  const int rank_;
  const int world_size_;
  const int device_;
  const std::string host_;
  ncclComm_t comm_;
  MPI_Comm mpi_comm_;
};

// Collective over MPI_COMM_WORLD: OK when every rank reports `ok`; otherwise the same
// FailedPrecondition on every rank naming the ranks that failed (so none goes on to wait in
// ncclCommInitRank for a peer that will never come). `local` is this rank's own error, if any.
absl::Status AgreeAllOk(const DistContext& ctx, const absl::Status& local, absl::string_view step) {
  int ok = local.ok() ? 1 : 0;
  std::vector<int> all(static_cast<size_t>(ctx.world_size()));
  FTUNE_MPI_RETURN_IF_ERROR(MPI_Allgather(&ok, 1, MPI_INT, all.data(), 1, MPI_INT, MPI_COMM_WORLD));
  std::vector<int> failed;
  for (int r = 0; r < ctx.world_size(); ++r) {
    if (!all[r]) failed.push_back(r);
  }
  if (failed.empty()) return absl::OkStatus();
  if (!local.ok()) return local;  // this rank's own, more detailed error
  return absl::FailedPreconditionError(absl::StrCat("NCCL setup (", step, ") failed on rank(s) ",
                                                    absl::StrJoin(failed, ","), "; see their error messages"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(const DistContext& ctx, int cuda_device) {
  const int rank = ctx.rank();
  const int world = ctx.world_size();

  // 1. Pick the device (and, on rank 0, make the id); every rank learns whether all succeeded.
  absl::Status local = absl::OkStatus();
  int device_count = 0;
  const cudaError_t count_error = cudaGetDeviceCount(&device_count);
  if (count_error != cudaSuccess) device_count = 0;
  if (cuda_device < 0 || cuda_device >= device_count) {
    local = absl::FailedPreconditionError(
        absl::StrFormat("NCCL backend: GPU %d requested on rank %d (local rank %d of %d on %s) but this process "
                        "sees %d CUDA device(s)%s%s. HINT: run one rank per GPU (mpirun -np <#GPUs per node> "
                        "per node), check CUDA_VISIBLE_DEVICES, or use the MPI backend on CPUs",
                        cuda_device, rank, ctx.local_rank(), ctx.local_size(), ctx.hostname(), device_count,
                        count_error != cudaSuccess ? ": cudaGetDeviceCount: " : "",
                        count_error != cudaSuccess ? cudaGetErrorString(count_error) : ""));
  } else if (const cudaError_t e = cudaSetDevice(cuda_device); e != cudaSuccess) {
    local = CudaError(e, "cudaSetDevice", __FILE__, __LINE__);
  }
  ncclUniqueId id{};
  if (local.ok() && rank == 0 && world > 1) {
    if (const ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
      local = absl::Status(CodeFor(r), absl::StrFormat("NCCL error at %s:%d in ncclGetUniqueId: %s", __FILE__, __LINE__,
                                                       ncclGetErrorString(r)));
    }
  }
  if (world == 1) {
    if (!local.ok()) return local;
    // One rank: collectives return at once, so no NCCL communicator (and no NCCL init cost).
    return std::unique_ptr<Communicator>(
        new NcclCommunicator(rank, world, cuda_device, ctx.hostname(), nullptr, MPI_COMM_NULL));
  }
  FTUNE_RETURN_IF_ERROR(AgreeAllOk(ctx, local, "device selection / unique id"));

  // 2. Share rank 0's id and join. (Timeout seam: a later issue can switch to non-blocking init,
  //    ncclConfig_t.blocking = 0, and poll ncclCommGetAsyncError against a deadline.)
  FTUNE_MPI_RETURN_IF_ERROR(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD));
  ncclComm_t comm = nullptr;
  if (const ncclResult_t r = ncclCommInitRank(&comm, world, id, rank); r != ncclSuccess) {
    const char* last = ncclGetLastError(comm);
    local = absl::Status(
        CodeFor(r), absl::StrFormat("NCCL error at %s:%d in ncclCommInitRank (rank %d of %d on %s, GPU %d): "
                                    "%s%s%s. HINT: rerun with NCCL_DEBUG=INFO",
                                    __FILE__, __LINE__, rank, world, ctx.hostname(), cuda_device, ncclGetErrorString(r),
                                    (last && *last) ? "; last error: " : "", (last && *last) ? last : ""));
    if (comm != nullptr) ncclCommAbort(comm);
    comm = nullptr;
  }
  if (absl::Status agreed = AgreeAllOk(ctx, local, "ncclCommInitRank"); !agreed.ok()) {
    if (comm != nullptr) ncclCommAbort(comm);
    return agreed;
  }

  MPI_Comm mpi_comm = MPI_COMM_NULL;
  if (const int rc = MPI_Comm_dup(MPI_COMM_WORLD, &mpi_comm); rc != MPI_SUCCESS) {
    ncclCommAbort(comm);
    return internal::MpiError(rc, "MPI_Comm_dup", __FILE__, __LINE__);
  }
  LogInfo("NCCL communicator ready: %d ranks, NCCL %d.%d.%d", world, NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
  return std::unique_ptr<Communicator>(new NcclCommunicator(rank, world, cuda_device, ctx.hostname(), comm, mpi_comm));
}

}  // namespace ftune::dist
