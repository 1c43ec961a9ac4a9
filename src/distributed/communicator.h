// Communicator: the collective operations the trainer uses (gradient buckets, metric reductions),
// behind one interface with two transports: MPI (host buffers, CPUs) and NCCL (device buffers).
// Torch-free: it moves raw buffers described by (pointer, count, DType).
//
// Contract shared by every implementation:
//   * Collective: every rank calls the same operations in the same order with the same count,
//     dtype, op and root. Only the thread that initialised DistContext may call (FUNNELED).
//   * In place: the result replaces the input at `data`.
//   * World size 1 is a real path: each call validates its arguments, updates the statistics and
//     returns without touching MPI/NCCL, so single-process runs and unit tests need no launcher.
//   * Statistics count what the caller asked for ("logical" traffic), independent of world size
//     and transport: one call and count*DTypeSize(dtype) bytes per successful AllReduce, so
//     "bytes all-reduced per step" equals the trainable gradient bytes even with one rank.
//     Seconds are wall time spent inside the call (0 with one rank; for NCCL only the host-side
//     enqueue, since the call is asynchronous on the stream).
//   * Errors: InvalidArgument for bad arguments (identical on all ranks, so no one hangs),
//     Unimplemented for a dtype/op the transport lacks, and for transport failures an error that
//     carries file:line and the library's message. After a transport error the job cannot
//     continue consistently: call DistContext::Abort().
//   * Host scalars (evaluation metrics, loss sums) are host memory: reduce them with the MPI
//     communicator (AllReduce(values, n, DType::kFloat64, ReduceOp::kSum)) even in NCCL runs.
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "distributed/dist_context.h"

namespace ftune::dist {

enum class DType { kFloat32, kFloat64, kBFloat16, kFloat16, kInt64, kInt32 };
enum class ReduceOp { kSum, kMax, kMin };

// Bytes per element (0 for a value outside the enum), and names for messages.
size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);
const char* ReduceOpName(ReduceOp op);

class Communicator {
 public:
  struct Stats {
    uint64_t allreduce_calls = 0;
    uint64_t allreduce_bytes = 0;
    double allreduce_seconds = 0.0;
  };

  virtual ~Communicator();

  // For logs and results.json only ("mpi" | "nccl"); code asks for capabilities below, never names.
  virtual const char* name() const = 0;
  // Where the buffers handed to this transport must live: host memory (MPI) or the CUDA device
  // the communicator was made for (NCCL). Callers with data elsewhere stage it through a copy.
  enum class Memory { kHost, kDevice };
  virtual Memory memory() const = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // In-place all-reduce of `count` elements at `data` (host memory for MPI, device memory for
  // NCCL). `stream` is a cudaStream_t for NCCL (nullptr = the default stream); MPI ignores it.
  // MPI: bf16/f16 are Unimplemented (MPI has no such types; ftune keeps fp32 gradients).
  virtual absl::Status AllReduce(void* data, size_t count, DType dtype, ReduceOp op, void* stream = nullptr) = 0;
  // Copies `count` elements at `data` on `root` to `data` on every other rank (any dtype).
  virtual absl::Status Broadcast(void* data, size_t count, DType dtype, int root, void* stream = nullptr) = 0;
  // Host-side barrier: returns once every rank has entered it. Does not synchronise CUDA streams.
  virtual absl::Status Barrier() = 0;

  // Asynchronous all-reduce, for overlapping gradient buckets with the backward pass: starts an
  // in-place all-reduce and returns; `data` must stay untouched until WaitAll() returns. Every
  // rank must start the same operations in the same order. Default: the blocking AllReduce (NCCL
  // is asynchronous on its stream anyway).
  virtual absl::Status StartAllReduce(void* data, size_t count, DType dtype, ReduceOp op, void* stream = nullptr) {
    return AllReduce(data, count, dtype, op, stream);
  }
  // Lets started operations advance without blocking (MPI moves non-blocking collectives forward
  // only inside MPI calls).
  virtual absl::Status Progress() { return absl::OkStatus(); }
  // Blocks until every started operation has completed (MPI: within the timeout). The statistics
  // count each operation's bytes, and as seconds only the time spent blocked here.
  virtual absl::Status WaitAll() { return absl::OkStatus(); }

  // AllReduce totals since construction or the last ResetStats().
  Stats stats() const { return stats_; }
  void ResetStats() { stats_ = Stats(); }

 protected:
  Communicator() = default;
  void RecordAllReduce(uint64_t bytes, double seconds);

 private:
  Stats stats_;
};

// Shared argument checks (same verdict on every rank): known dtype/op, `data` non-null when
// count > 0, 0 <= root < world_size.
absl::Status ValidateAllReduceArgs(const void* data, size_t count, DType dtype, ReduceOp op);
absl::Status ValidateBroadcastArgs(const void* data, size_t count, DType dtype, int root, int world_size);

struct MpiCommunicatorOptions {
  // Most elements handed to one MPI call (MPI counts are int). Larger buffers are split into
  // consecutive chunks; tests shrink this to exercise the split. Clamped to [1, INT_MAX].
  size_t max_elements_per_call = static_cast<size_t>(INT_MAX);
  // > 0: every collective must complete within this many seconds, else it returns
  // DeadlineExceeded (the caller then aborts the job), so a stuck or dead peer becomes an error
  // instead of a hang. Implemented with non-blocking collectives polled by MPI_Test.
  double timeout_seconds = 0.0;
};

// MPI transport on a private duplicate of MPI_COMM_WORLD (so its traffic never matches anyone
// else's). Collective when world_size > 1. Destroy it before DistContext::Finalize().
std::unique_ptr<Communicator> MakeMpiCommunicator(const DistContext& ctx, const MpiCommunicatorOptions& options = {});

// True when this build has the NCCL transport (configured with -DFTUNE_WITH_NCCL=ON).
bool NcclCompiledIn();

// NCCL transport on `cuda_device` (usually ctx.local_rank()). Calls cudaSetDevice; with more than
// one rank, rank 0 makes the ncclUniqueId, MPI_Bcast shares it and ncclCommInitRank joins. All
// ranks agree (over MPI) that their device and the id are fine before joining, so a bad device
// fails on every rank instead of hanging the others. Without NCCL compiled in: Unimplemented.
// A failed NCCL call aborts the NCCL communicator (ncclCommAbort) before the error returns.
absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(const DistContext& ctx, int cuda_device);

}  // namespace ftune::dist
