// GoogleTest main that works under mpirun: initialises MPI once (DistContext), lets only rank 0
// print the usual GoogleTest report, prints other ranks' failures tagged "[rank r]" on stderr,
// and makes every rank exit non-zero when any rank failed (so mpirun and CTest report it).
#include <cstdio>
#include <memory>

#include "distributed/communicator.h"
#include "distributed/dist_context.h"
#include "gtest/gtest.h"
#include "mpi_test_env.h"

namespace ftune::dist::testing {
namespace {

DistContext* g_context = nullptr;

// Replaces GoogleTest's printer on ranks other than 0: silent unless something fails.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}

  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, result.file_name() ? result.file_name() : "?",
                 result.line_number(), result.message());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::fprintf(stderr, "[rank %d] [  FAILED  ] %s.%s\n", rank_, info.test_suite_name(), info.name());
    }
  }

 private:
  int rank_;
};

}  // namespace

const DistContext& TestContext() { return *g_context; }

}  // namespace ftune::dist::testing

#if defined(FTUNE_DISTRIBUTED_TEST_UNDER_ASAN)
// Open MPI never frees part of what MPI_Init allocates (some of it from plugins it has unloaded,
// so suppressions cannot name them); LeakSanitizer would fail every run, including CTest's test
// discovery, which no ENVIRONMENT property reaches. Address and UB checks stay on.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }
#endif

int main(int argc, char** argv) {
  using ftune::dist::DistContext;
  ::testing::InitGoogleTest(&argc, argv);
  absl::StatusOr<DistContext> ctx = DistContext::Init(&argc, &argv);
  if (!ctx.ok()) {
    std::fprintf(stderr, "DistContext::Init failed: %s\n", ctx.status().ToString().c_str());
    return 1;
  }
  ftune::dist::testing::g_context = &*ctx;

  ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (ctx->rank() != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new ftune::dist::testing::RankFailurePrinter(ctx->rank()));
  }

  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;

  // Every rank learns whether any rank failed, so the job's exit code cannot hide a failure.
  int any_failed = failed;
  {
    std::unique_ptr<ftune::dist::Communicator> comm = ftune::dist::MakeMpiCommunicator(*ctx);
    absl::Status s = comm->AllReduce(&any_failed, 1, ftune::dist::DType::kInt32, ftune::dist::ReduceOp::kMax);
    if (!s.ok()) {
      std::fprintf(stderr, "[rank %d] agreeing on the test outcome failed: %s\n", ctx->rank(), s.ToString().c_str());
      ctx->Abort(1);
    }
  }
  if (ctx->is_root() && any_failed && !failed) {
    std::fprintf(stderr, "[  FAILED  ] on another rank: see the [rank N] lines above\n");
  }
  if (absl::Status s = ctx->Finalize(); !s.ok()) {
    std::fprintf(stderr, "Finalize failed: %s\n", s.ToString().c_str());
    return 1;
  }
  return any_failed;
}
