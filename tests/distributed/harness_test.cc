// Checks on the test harness itself (mpi_test_main.cc), driven by environment variables that
// tests/distributed/CMakeLists.txt sets for the mpirun runs:
//   FTUNE_DIST_EXPECT_WORLD_SIZE=n   the launcher really started n ranks (not n singletons)
//   FTUNE_DIST_FAIL_ON_RANK=r        this test fails on rank r only; the run must then fail
//                                    on every rank, with rank r's failure printed
#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "mpi_test_env.h"

namespace ftune::dist {
namespace {

using ::ftune::dist::testing::TestContext;

TEST(HarnessTest, WorldSizeMatchesLauncher) {
  const char* want = std::getenv("FTUNE_DIST_EXPECT_WORLD_SIZE");
  if (want == nullptr) GTEST_SKIP() << "FTUNE_DIST_EXPECT_WORLD_SIZE not set";
  EXPECT_EQ(TestContext().world_size(), std::stoi(want));
}

TEST(HarnessTest, InjectedFailureOnOneRank) {
  const char* rank = std::getenv("FTUNE_DIST_FAIL_ON_RANK");
  if (rank == nullptr) GTEST_SKIP() << "FTUNE_DIST_FAIL_ON_RANK not set";
  EXPECT_NE(TestContext().rank(), std::stoi(rank)) << "injected failure (expected by the harness test)";
}

}  // namespace
}  // namespace ftune::dist
