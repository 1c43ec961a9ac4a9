// main() for the trainer tests: MPI is initialised once per process (a singleton, world size 1,
// unless run under mpirun) and finalized after all tests.
#include <cstdlib>

#include "distributed/dist_context.h"
#include "gtest/gtest.h"
#include "tests/train/train_test_env.h"

namespace ftune::train::testing {
namespace {
dist::DistContext* g_ctx = nullptr;
}
const dist::DistContext& Context() { return *g_ctx; }
}  // namespace ftune::train::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto ctx = ftune::dist::DistContext::Init(&argc, &argv);
  if (!ctx.ok()) {
    std::fprintf(stderr, "MPI init failed: %s\n", std::string(ctx.status().message()).c_str());
    return 1;
  }
  ftune::train::testing::g_ctx = &*ctx;
  int rc = RUN_ALL_TESTS();
  (void)ctx->Finalize();
  return rc;
}
