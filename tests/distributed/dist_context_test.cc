// DistContext: identity (rank, node-local split, host), adopting a running MPI, the cross-rank
// agreement check, FNV-1a and the intra-op thread rule. Holds as one process and under mpirun.
#include "distributed/dist_context.h"

#include <thread>

#include "common/hash.h"
#include "common/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpi_test_env.h"

namespace ftune::dist {
namespace {

using ::ftune::dist::testing::TestContext;
using ::testing::HasSubstr;

TEST(DistContextTest, IdentityIsConsistent) {
  const DistContext& ctx = TestContext();
  EXPECT_GE(ctx.world_size(), 1);
  EXPECT_GE(ctx.rank(), 0);
  EXPECT_LT(ctx.rank(), ctx.world_size());
  EXPECT_GE(ctx.local_size(), 1);
  EXPECT_LE(ctx.local_size(), ctx.world_size());
  EXPECT_GE(ctx.local_rank(), 0);
  EXPECT_LT(ctx.local_rank(), ctx.local_size());
  EXPECT_EQ(ctx.is_root(), ctx.rank() == 0);
  EXPECT_FALSE(ctx.hostname().empty());
  EXPECT_EQ(LogRank(), ctx.rank());  // Init told the logger who we are
}

TEST(DistContextTest, RanksOnOneHostShareANode) {
  const DistContext& ctx = TestContext();
  // Collective on every rank; when all ranks run on one host (the CTest launches do), the
  // shared-memory split must put them all in one node group, in world-rank order.
  const bool one_host = ctx.CheckSameOnAllRanks(Fnv1a64(ctx.hostname()), "hostname").ok();
  if (one_host) {
    EXPECT_EQ(ctx.local_size(), ctx.world_size());
    EXPECT_EQ(ctx.local_rank(), ctx.rank());
  }
}

TEST(DistContextTest, SecondInitAdoptsRunningMpiAndDoesNotFinalizeIt) {
  const DistContext& ctx = TestContext();
  absl::StatusOr<DistContext> again = DistContext::Init(nullptr, nullptr);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->rank(), ctx.rank());
  EXPECT_EQ(again->world_size(), ctx.world_size());
  EXPECT_EQ(again->local_rank(), ctx.local_rank());
  EXPECT_TRUE(again->Finalize().ok());  // not the owner: a no-op
  // MPI is still up: a collective still works on every rank.
  EXPECT_TRUE(ctx.CheckSameOnAllRanks(42, "after adopted Finalize").ok());
}

TEST(DistContextTest, MovedContextKeepsIdentity) {
  absl::StatusOr<DistContext> adopted = DistContext::Init(nullptr, nullptr);
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  DistContext moved = std::move(*adopted);
  EXPECT_EQ(moved.rank(), TestContext().rank());
  EXPECT_EQ(moved.hostname(), TestContext().hostname());
}

TEST(DistContextTest, CheckSameOnAllRanksPassesForEqualHashes) {
  const DistContext& ctx = TestContext();
  EXPECT_TRUE(ctx.CheckSameOnAllRanks(0x1234abcdULL, "model config").ok());
  EXPECT_TRUE(ctx.CheckSameOnAllRanks(Fnv1a64("same on every rank"), "flags").ok());
}

TEST(DistContextTest, CheckSameOnAllRanksFailsOnEveryRankNamingWhatAndWho) {
  const DistContext& ctx = TestContext();
  absl::Status s = ctx.CheckSameOnAllRanks(static_cast<uint64_t>(ctx.rank()), "training flags");
  if (ctx.world_size() == 1) {
    EXPECT_TRUE(s.ok()) << s;  // one rank always agrees with itself
    return;
  }
  // Every rank (not only the odd one out) gets the same verdict: nobody is left waiting.
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("training flags differs across ranks"));
  EXPECT_THAT(s.message(), HasSubstr("rank 0: 0x0000000000000000"));
  EXPECT_THAT(s.message(), HasSubstr("rank 1: 0x0000000000000001"));
  EXPECT_THAT(s.message(), HasSubstr("HINT"));
  // ...and the job is still usable afterwards.
  EXPECT_TRUE(ctx.CheckSameOnAllRanks(7, "after a mismatch").ok());
}

TEST(DistContextTest, CheckSameOnAllRanksGroupsRanksByValue) {
  const DistContext& ctx = TestContext();
  // Rank 0 alone holds one value, everyone else shares another.
  absl::Status s = ctx.CheckSameOnAllRanks(ctx.rank() == 0 ? 5 : 9, "dataset fingerprint");
  if (ctx.world_size() == 1) {
    EXPECT_TRUE(s.ok()) << s;
    return;
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("2 distinct values"));
  EXPECT_THAT(s.message(), HasSubstr("rank 0: 0x0000000000000005"));
  EXPECT_THAT(s.message(), HasSubstr(": 0x0000000000000009"));
}

TEST(IntraOpThreadsTest, SharesNodeCpusAmongLocalRanksCappedByAffinity) {
  EXPECT_EQ(ComputeIntraOpThreads(16, 16, 2), 8);
  EXPECT_EQ(ComputeIntraOpThreads(16, 16, 1), 16);
  EXPECT_EQ(ComputeIntraOpThreads(16, 1, 2), 1);  // mpirun bound us to one core
  EXPECT_EQ(ComputeIntraOpThreads(16, 4, 2), 4);  // --map-by ...:PE=4
  EXPECT_EQ(ComputeIntraOpThreads(2, 2, 4), 1);   // oversubscribed: never 0
  EXPECT_EQ(ComputeIntraOpThreads(0, 0, 0), 1);   // unknown everything
  EXPECT_EQ(ComputeIntraOpThreads(-3, 8, -1), 1);
}

TEST(IntraOpThreadsTest, DefaultIsPositiveAndWithinTheNode) {
  const int n = TestContext().DefaultIntraOpThreads();
  EXPECT_GE(n, 1);
  const unsigned hw = std::thread::hardware_concurrency();
  if (hw > 0) {
    EXPECT_LE(n, static_cast<int>(hw));
  }
}

}  // namespace
}  // namespace ftune::dist
