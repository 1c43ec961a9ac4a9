// DistContext: the one owner of MPI in ftune. It initialises MPI (or joins an MPI that is already
// up), learns who this process is (rank, world size, rank on the node, processes on the node,
// host), tells the logger, and offers the two job-wide checks the trainer needs before any heavy
// work: "do all ranks agree on X?" and "how many intra-op threads may this rank use?".
//
// Contract (see also communicator.h):
//   * Init() once, from the main thread, before any other thread starts. MPI runs at
//     MPI_THREAD_FUNNELED: only the thread that called Init() may call into dist/ (a background
//     data-reader thread never does).
//   * Without mpirun the process is an MPI singleton: world_size() == 1 and every collective in
//     dist/ returns at once, so unit tests and single-process runs need no launcher.
//   * Finalize() is explicit and must be called on the success path after every Communicator has
//     been destroyed. The destructor never finalizes: a rank that fails must call Abort() instead,
//     so its peers are killed rather than left waiting in a collective.
//
// This header is MPI-free on purpose (only src/distributed/*.cc include mpi.h).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ftune::dist {

class DistContext {
 public:
  // Initialises MPI with MPI_THREAD_FUNNELED (or adopts it if something already initialised it;
  // such a context does not own MPI and its Finalize() is a no-op). Calls SetLogRank(rank, world).
  // Collective (the node-local split): every rank calls it. `argc`/`argv` may be null.
  // Fails with FailedPrecondition if MPI was already finalized.
  static absl::StatusOr<DistContext> Init(int* argc, char*** argv);

  DistContext(DistContext&& other) noexcept;
  DistContext& operator=(DistContext&& other) noexcept;
  DistContext(const DistContext&) = delete;
  DistContext& operator=(const DistContext&) = delete;
  ~DistContext();  // never finalizes; see the contract above

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }  // rank among the processes on this node
  int local_size() const { return local_size_; }  // processes of this job on this node
  bool is_root() const { return rank_ == 0; }
  const std::string& hostname() const { return hostname_; }

  // Collective: every rank must call it with its own `hash` of the same thing (config, model
  // shape, dataset fingerprint, ...). OK when all hashes are equal; otherwise FailedPrecondition
  // on every rank, naming `what`, the distinct values and which ranks hold each, so a mismatch
  // stops the job at startup instead of hanging or silently diverging later. World size 1: OK.
  absl::Status CheckSameOnAllRanks(uint64_t hash, absl::string_view what) const;

  // Threads this rank should give LibTorch's intra-op pool: the node's CPUs shared evenly among
  // the ranks on this node, capped by the CPUs this process may run on (mpirun's binding), >= 1.
  // Note: Open MPI binds to a core by default for -np <= 2, which caps this at 1; launch with
  // `--bind-to none` or `--map-by ...:PE=<n>` to give each rank more cores.
  int DefaultIntraOpThreads() const;

  // Calls MPI_Finalize if this context initialised MPI (idempotent). Destroy every Communicator
  // first. Collective: all ranks must reach it.
  absl::Status Finalize();

  // Kills the whole job (MPI_Abort on MPI_COMM_WORLD) so no peer hangs in a collective. Use it
  // whenever a rank hits an error that its peers cannot see. Without MPI, exits with `code`.
  [[noreturn]] void Abort(int code) const;

 private:
  DistContext() = default;

  int rank_ = 0;
  int world_size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  std::string hostname_;
  bool owns_mpi_ = false;  // this context called MPI_Init_thread, so it calls MPI_Finalize
};

// The rule behind DefaultIntraOpThreads(), exposed for tests:
// max(1, min(node_cpus / local_size, allowed_cpus)); non-positive inputs count as 1.
int ComputeIntraOpThreads(int node_cpus, int allowed_cpus, int local_size);

}  // namespace ftune::dist
