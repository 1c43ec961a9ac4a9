// MPI transport for Communicator: in-place MPI_Allreduce / MPI_Bcast on host buffers over a
// private duplicate of MPI_COMM_WORLD, split into chunks of at most INT_MAX elements.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/status.h"
#include "distributed/communicator.h"
#include "distributed/mpi_check.h"

namespace ftune::dist {
namespace {

// Element type for reductions; nullptr where MPI has no arithmetic type (bf16, f16).
MPI_Datatype ReduceType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return MPI_FLOAT;
    case DType::kFloat64: return MPI_DOUBLE;
    case DType::kInt64: return MPI_INT64_T;
    case DType::kInt32: return MPI_INT32_T;
    case DType::kBFloat16:
    case DType::kFloat16: return MPI_DATATYPE_NULL;
  }
  return MPI_DATATYPE_NULL;
}

// Element type for copies (broadcast): any 16-bit payload travels as MPI_UINT16_T.
MPI_Datatype CopyType(DType dtype) {
  if (dtype == DType::kBFloat16 || dtype == DType::kFloat16) return MPI_UINT16_T;
  return ReduceType(dtype);
}

MPI_Op ToMpiOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_OP_NULL;
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int rank, int world_size, MPI_Comm comm, size_t max_elements_per_call, double timeout)
      : rank_(rank), world_size_(world_size), comm_(comm), chunk_(max_elements_per_call), timeout_(timeout) {}

  ~MpiCommunicator() override {
    if (comm_ != MPI_COMM_NULL && !internal::MpiFinalized()) MPI_Comm_free(&comm_);
  }

  const char* name() const override { return "mpi"; }
  Memory memory() const override { return Memory::kHost; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }

  absl::Status AllReduce(void* data, size_t count, DType dtype, ReduceOp op, void* /*stream*/) override {
    FTUNE_RETURN_IF_ERROR(ValidateAllReduceArgs(data, count, dtype, op));
    const MPI_Datatype type = ReduceType(dtype);
    if (type == MPI_DATATYPE_NULL) {
      // Checked before the world-size-1 shortcut so a single-process test catches the misuse.
      return absl::UnimplementedError(
          absl::StrFormat("MPI AllReduce of %s: MPI has no %s arithmetic; all-reduce float32 gradients on CPU "
                          "(or use the NCCL backend, which reduces bf16/fp16 natively)",
                          DTypeName(dtype), DTypeName(dtype)));
    }
    const uint64_t bytes = static_cast<uint64_t>(count) * DTypeSize(dtype);
    if (world_size_ == 1 || count == 0) {
      RecordAllReduce(bytes, 0.0);
      return absl::OkStatus();
    }
    const auto start = std::chrono::steady_clock::now();
    FTUNE_RETURN_IF_ERROR(ForEachChunk(data, count, dtype, [&](char* p, int n) -> absl::Status {
      if (timeout_ > 0) {
        MPI_Request req;
        FTUNE_MPI_RETURN_IF_ERROR(MPI_Iallreduce(MPI_IN_PLACE, p, n, type, ToMpiOp(op), comm_, &req));
        return Wait(&req, "AllReduce", n * DTypeSize(dtype));
      }
      FTUNE_MPI_RETURN_IF_ERROR(MPI_Allreduce(MPI_IN_PLACE, p, n, type, ToMpiOp(op), comm_));
      return absl::OkStatus();
    }));
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    RecordAllReduce(bytes, took.count());
    return absl::OkStatus();
  }

  absl::Status Broadcast(void* data, size_t count, DType dtype, int root, void* /*stream*/) override {
    FTUNE_RETURN_IF_ERROR(ValidateBroadcastArgs(data, count, dtype, root, world_size_));
    if (world_size_ == 1 || count == 0) return absl::OkStatus();
    const MPI_Datatype type = CopyType(dtype);
    return ForEachChunk(data, count, dtype, [&](char* p, int n) -> absl::Status {
      if (timeout_ > 0) {
        MPI_Request req;
        FTUNE_MPI_RETURN_IF_ERROR(MPI_Ibcast(p, n, type, root, comm_, &req));
        return Wait(&req, "Broadcast", n * DTypeSize(dtype));
      }
      FTUNE_MPI_RETURN_IF_ERROR(MPI_Bcast(p, n, type, root, comm_));
      return absl::OkStatus();
    });
  }

  absl::Status StartAllReduce(void* data, size_t count, DType dtype, ReduceOp op, void* /*stream*/) override {
    FTUNE_RETURN_IF_ERROR(ValidateAllReduceArgs(data, count, dtype, op));
    const MPI_Datatype type = ReduceType(dtype);
    if (type == MPI_DATATYPE_NULL) return AllReduce(data, count, dtype, op, nullptr);  // its error
    const uint64_t bytes = static_cast<uint64_t>(count) * DTypeSize(dtype);
    if (world_size_ == 1 || count == 0) {
      RecordAllReduce(bytes, 0.0);
      return absl::OkStatus();
    }
    pending_bytes_ += bytes;
    ++pending_calls_;
    return ForEachChunk(data, count, dtype, [&](char* p, int n) -> absl::Status {
      pending_.emplace_back();
      FTUNE_MPI_RETURN_IF_ERROR(MPI_Iallreduce(MPI_IN_PLACE, p, n, type, ToMpiOp(op), comm_, &pending_.back()));
      return absl::OkStatus();
    });
  }

  absl::Status Progress() override {
    if (pending_.empty()) return absl::OkStatus();
    int done = 0;
    FTUNE_MPI_RETURN_IF_ERROR(
        MPI_Testall(static_cast<int>(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE));
    return absl::OkStatus();
  }

  absl::Status WaitAll() override {
    if (pending_calls_ == 0) return absl::OkStatus();
    const auto start = std::chrono::steady_clock::now();
    for (MPI_Request& req : pending_) {
      if (req == MPI_REQUEST_NULL) continue;
      if (timeout_ > 0) {
        FTUNE_RETURN_IF_ERROR(Wait(&req, "AllReduce", pending_bytes_));
      } else {
        FTUNE_MPI_RETURN_IF_ERROR(MPI_Wait(&req, MPI_STATUS_IGNORE));
      }
    }
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    // One record per started operation; the blocked time goes to the first.
    for (uint64_t i = 0; i < pending_calls_; ++i)
      RecordAllReduce(i == 0 ? pending_bytes_ : 0, i == 0 ? took.count() : 0.0);
    pending_.clear();
    pending_bytes_ = 0;
    pending_calls_ = 0;
    return absl::OkStatus();
  }

  absl::Status Barrier() override {
    if (world_size_ == 1) return absl::OkStatus();
    if (timeout_ > 0) {
      MPI_Request req;
      FTUNE_MPI_RETURN_IF_ERROR(MPI_Ibarrier(comm_, &req));
      return Wait(&req, "Barrier", 0);
    }
    FTUNE_MPI_RETURN_IF_ERROR(MPI_Barrier(comm_));
    return absl::OkStatus();
  }

 private:
  // Calls fn(pointer, n) for consecutive chunks of at most chunk_ elements (MPI counts are int).
  template <typename Fn>
  absl::Status ForEachChunk(void* data, size_t count, DType dtype, Fn fn) {
    char* p = static_cast<char*>(data);
    for (size_t done = 0; done < count;) {
      const size_t n = std::min(chunk_, count - done);
      FTUNE_RETURN_IF_ERROR(fn(p, static_cast<int>(n)));
      p += n * DTypeSize(dtype);
      done += n;
    }
    return absl::OkStatus();
  }

  // Polls `req` until it completes or the timeout passes. Spins briefly (collectives on a node
  // finish in microseconds), then sleeps between tests so a long wait does not burn a core.
  absl::Status Wait(MPI_Request* req, const char* what, size_t bytes) {
    const auto start = std::chrono::steady_clock::now();
    for (int spins = 0;; ++spins) {
      int done = 0;
      FTUNE_MPI_RETURN_IF_ERROR(MPI_Test(req, &done, MPI_STATUS_IGNORE));
      if (done) return absl::OkStatus();
      if (spins > 2000) std::this_thread::sleep_for(std::chrono::microseconds(spins > 100000 ? 1000 : 50));
      const std::chrono::duration<double> waited = std::chrono::steady_clock::now() - start;
      if (waited.count() > timeout_) {
        return absl::DeadlineExceededError(absl::StrFormat(
            "rank %d: %s of %d bytes did not complete within --comm_timeout=%gs; a peer is stuck, dead or "
            "much slower (see the other ranks' messages)",
            rank_, what, bytes, timeout_));
      }
    }
  }

  const int rank_;
  const int world_size_;
  MPI_Comm comm_;  // MPI_COMM_NULL with one rank
  const size_t chunk_;
  const double timeout_;
  std::vector<MPI_Request> pending_;  // started by StartAllReduce, not yet waited for
  uint64_t pending_bytes_ = 0, pending_calls_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> MakeMpiCommunicator(const DistContext& ctx, const MpiCommunicatorOptions& options) {
  const size_t chunk = std::clamp<size_t>(options.max_elements_per_call, 1, static_cast<size_t>(INT_MAX));
  MPI_Comm comm = MPI_COMM_NULL;
  if (ctx.world_size() > 1) {
    const int rc = MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    if (rc != MPI_SUCCESS) {
      // Cannot happen under MPI_ERRORS_ARE_FATAL; if it does, peers are inside the same
      // collective, so the only safe exit is to take the whole job down.
      LogError("%s", internal::MpiError(rc, "MPI_Comm_dup", __FILE__, __LINE__).ToString());
      ctx.Abort(1);
    }
  }
  return std::make_unique<MpiCommunicator>(ctx.rank(), ctx.world_size(), comm, chunk, options.timeout_seconds);
}

}  // namespace ftune::dist
