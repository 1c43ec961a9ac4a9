// Launched by CTest under mpirun: the last rank calls DistContext::Abort while the others wait in
// a collective it will never join. The test passes when mpirun reports the abort (and fails on
// its timeout if the waiting ranks hang), which is the "peers never hang" guarantee.
#include <cstdio>

#include "common/log.h"
#include "distributed/dist_context.h"

int main(int argc, char** argv) {
  absl::StatusOr<ftune::dist::DistContext> ctx = ftune::dist::DistContext::Init(&argc, &argv);
  if (!ctx.ok()) {
    std::fprintf(stderr, "DistContext::Init failed: %s\n", ctx.status().ToString().c_str());
    return 2;
  }
  if (ctx->world_size() < 2) {
    std::fprintf(stderr, "abort_probe needs at least 2 ranks (run it under mpirun -np 2)\n");
    return 2;
  }
  if (ctx->rank() == ctx->world_size() - 1) {
    ftune::LogError("abort_probe: rank %d aborts on purpose", ctx->rank());
    ctx->Abort(3);
  }
  // The other ranks block here: the aborting rank never joins this allgather.
  absl::Status s = ctx->CheckSameOnAllRanks(1, "abort probe");
  std::fprintf(stderr, "abort_probe: rank %d got past the collective (%s): abort did not work\n", ctx->rank(),
               s.ToString().c_str());
  (void)ctx->Finalize();
  return 0;
}
