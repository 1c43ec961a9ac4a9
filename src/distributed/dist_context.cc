// DistContext: MPI bootstrap (init, rank discovery, node-local split), job-wide agreement checks
// and the intra-op thread rule. See dist_context.h for the contract.
#include "distributed/dist_context.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status.h"
#include "distributed/mpi_check.h"

namespace ftune::dist {
namespace {

std::string LocalHostname() {
  char buf[HOST_NAME_MAX + 1] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

// CPUs this process may run on (its affinity mask); 0 when unknown.
int AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
  return CPU_COUNT(&set);
}

}  // namespace

int ComputeIntraOpThreads(int node_cpus, int allowed_cpus, int local_size) {
  node_cpus = std::max(node_cpus, 1);
  allowed_cpus = std::max(allowed_cpus, 1);
  local_size = std::max(local_size, 1);
  return std::max(1, std::min(node_cpus / local_size, allowed_cpus));
}

absl::StatusOr<DistContext> DistContext::Init(int* argc, char*** argv) {
  int finalized = 0;
  FTUNE_MPI_RETURN_IF_ERROR(MPI_Finalized(&finalized));
  if (finalized) {
    return absl::FailedPreconditionError(
        "DistContext::Init: MPI was already finalized in this process and cannot be restarted");
  }
  DistContext ctx;
  int initialized = 0;
  FTUNE_MPI_RETURN_IF_ERROR(MPI_Initialized(&initialized));
  if (!initialized) {
    int provided = MPI_THREAD_SINGLE;
    FTUNE_MPI_RETURN_IF_ERROR(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    ctx.owns_mpi_ = true;
    if (provided < MPI_THREAD_FUNNELED) {
      LogWarn(
          "MPI provides thread level %d < MPI_THREAD_FUNNELED; keep every MPI call on the "
          "main thread (ftune does)",
          provided);
    }
  }
  FTUNE_MPI_RETURN_IF_ERROR(MPI_Comm_rank(MPI_COMM_WORLD, &ctx.rank_));
  FTUNE_MPI_RETURN_IF_ERROR(MPI_Comm_size(MPI_COMM_WORLD, &ctx.world_size_));

  // Ranks that share memory (one node) form one group; our rank in it picks our GPU.
  MPI_Comm local = MPI_COMM_NULL;
  FTUNE_MPI_RETURN_IF_ERROR(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, ctx.rank_, MPI_INFO_NULL, &local));
  FTUNE_MPI_RETURN_IF_ERROR(MPI_Comm_rank(local, &ctx.local_rank_));
  FTUNE_MPI_RETURN_IF_ERROR(MPI_Comm_size(local, &ctx.local_size_));
  FTUNE_MPI_RETURN_IF_ERROR(MPI_Comm_free(&local));

  ctx.hostname_ = LocalHostname();
  SetLogRank(ctx.rank_, ctx.world_size_);
  return ctx;
}

DistContext::DistContext(DistContext&& other) noexcept { *this = std::move(other); }

DistContext& DistContext::operator=(DistContext&& other) noexcept {
  if (this != &other) {
    rank_ = other.rank_;
    world_size_ = other.world_size_;
    local_rank_ = other.local_rank_;
    local_size_ = other.local_size_;
    hostname_ = std::move(other.hostname_);
    owns_mpi_ = std::exchange(other.owns_mpi_, false);
  }
  return *this;
}

DistContext::~DistContext() = default;

absl::Status DistContext::CheckSameOnAllRanks(uint64_t hash, absl::string_view what) const {
  if (world_size_ == 1) return absl::OkStatus();
  // One allgather answers both "do we agree?" and "who differs?", identically on every rank, so
  // every rank returns the same verdict and none is left waiting.
  std::vector<uint64_t> all(static_cast<size_t>(world_size_));
  FTUNE_MPI_RETURN_IF_ERROR(MPI_Allgather(&hash, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD));
  if (std::all_of(all.begin(), all.end(), [&](uint64_t h) { return h == all[0]; })) {
    return absl::OkStatus();
  }
  // Group ranks by value, in order of first appearance (rank 0's value first).
  std::vector<std::pair<uint64_t, std::vector<int>>> groups;
  std::map<uint64_t, size_t> index;
  for (int r = 0; r < world_size_; ++r) {
    auto [it, inserted] = index.emplace(all[r], groups.size());
    if (inserted) groups.push_back({all[r], {}});
    groups[it->second].second.push_back(r);
  }
  constexpr size_t kMaxGroupsShown = 8;
  std::vector<std::string> parts;
  for (size_t g = 0; g < groups.size() && g < kMaxGroupsShown; ++g) {
    const auto& ranks = groups[g].second;
    parts.push_back(
        absl::StrFormat("rank%s %s: 0x%016x", ranks.size() > 1 ? "s" : "", absl::StrJoin(ranks, ","), groups[g].first));
  }
  if (groups.size() > kMaxGroupsShown) {
    parts.push_back(absl::StrCat("... and ", groups.size() - kMaxGroupsShown, " more values"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat(what, " differs across ranks (", groups.size(), " distinct values among ", world_size_,
                   " ranks): ", absl::StrJoin(parts, "; "),
                   ". HINT: every rank must run the same ftune build with the same flags and input files; "
                   "compare what each rank resolved (a shared file system that is stale on one node is a "
                   "common cause)."));
}

int DistContext::DefaultIntraOpThreads() const {
  return ComputeIntraOpThreads(static_cast<int>(std::thread::hardware_concurrency()), AllowedCpus(), local_size_);
}

absl::Status DistContext::Finalize() {
  if (!owns_mpi_) return absl::OkStatus();
  owns_mpi_ = false;
  if (internal::MpiFinalized()) return absl::OkStatus();
  FTUNE_MPI_RETURN_IF_ERROR(MPI_Finalize());
  return absl::OkStatus();
}

void DistContext::Abort(int code) const {
  std::fflush(stdout);
  std::fflush(stderr);
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized && !internal::MpiFinalized()) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this covers "no MPI" and a broken MPI_Abort
}

}  // namespace ftune::dist
