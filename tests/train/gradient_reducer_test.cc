// GradientReducer in one process: with one rank nothing is communicated ("none"); with an
// explicit host transport the overlap hooks start buckets during the backward pass in order, and
// a parameter used twice per forward is caught. (Sums over 2 ranks, overlapped or not, are
// checked end to end under mpirun in tests/cli.)
#include "train/gradient_reducer.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/train/train_test_env.h"

namespace ftune::train {
namespace {

struct Net {
  torch::nn::Sequential seq{torch::nn::Linear(8, 16), torch::nn::Tanh(), torch::nn::Linear(16, 16), torch::nn::Tanh(),
                            torch::nn::Linear(16, 2)};
};

torch::Tensor Loss(torch::nn::Sequential& m) {
  torch::manual_seed(3);
  return m->forward(torch::randn({4, 8})).pow(2).sum();
}

TEST(GradientReducer, OneRankSendsNothing) {
  Net net;
  auto flat = FlatParameters::Build(*net.seq, 0.0);
  ASSERT_TRUE(flat.ok());
  GradientReducer r(&*flat, /*comm=*/nullptr, torch::kCPU, {});
  EXPECT_STREQ(r.transport(), "none");
  EXPECT_FALSE(r.overlapped());
  flat->ZeroGrad();
  r.BeginStep();
  Loss(net.seq).backward();
  const torch::Tensor before = flat->groups()[0].grads.clone();
  ASSERT_TRUE(r.FinishStep().ok());
  EXPECT_TRUE(torch::equal(flat->groups()[0].grads, before));
  EXPECT_TRUE(r.BroadcastParameters(0).ok());
  EXPECT_EQ(r.seconds(), 0.0);
  EXPECT_EQ(r.bytes_per_step(), static_cast<uint64_t>(flat->numel()) * 4u);  // what would cross per rank
}

TEST(GradientReducer, OverlapStartsBucketsInsideTheBackwardPass) {
  auto comm = dist::MakeMpiCommunicator(testing::Context());
  if (comm->world_size() != 1) GTEST_SKIP() << "single-process test";
  Net net;
  auto flat = FlatParameters::Build(*net.seq, 0.0);
  ASSERT_TRUE(flat.ok());
  // Buckets of whole parameters, at most 64 floats unless one parameter is larger, last parameters
  // first: {2, 32, 16} (the last layer's bias and weight, the middle bias), {256}, {16}, {128}.
  GradientReducer r(&*flat, comm.get(), torch::kCPU, {64 * 4, /*overlap=*/true});
  ASSERT_TRUE(r.overlapped());
  EXPECT_STREQ(r.transport(), "mpi");
  EXPECT_EQ(r.num_buckets(), 4);
  for (int step = 1; step <= 2; ++step) {
    flat->ZeroGrad();
    r.BeginStep();
    Loss(net.seq).backward();
    ASSERT_TRUE(r.FinishStep().ok());
    // Each bucket starts from the hook of its last gradient, so all 4 start inside backward().
    EXPECT_EQ(r.buckets_started_in_backward(), 4 * step);
  }
}

TEST(GradientReducer, AParameterUsedTwiceIsAnErrorWhenOverlapping) {
  auto comm = dist::MakeMpiCommunicator(testing::Context());
  if (comm->world_size() != 1) GTEST_SKIP() << "single-process test";
  auto lin = torch::nn::Linear(4, 4);
  auto flat = FlatParameters::Build(*lin, 0.0);
  ASSERT_TRUE(flat.ok());
  GradientReducer r(&*flat, comm.get(), torch::kCPU, {1 << 20, true});
  flat->ZeroGrad();
  r.BeginStep();
  // Two backward passes into the same parameters within one step: each gradient arrives twice.
  lin->forward(torch::ones({1, 4})).sum().backward();
  lin->forward(torch::ones({1, 4})).sum().backward();
  absl::Status st = r.FinishStep();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("--overlap_comm=false"));
}

TEST(GradientReducer, AfterBackwardPathLeavesOneRankSumsUnchanged) {
  auto comm = dist::MakeMpiCommunicator(testing::Context());
  if (comm->world_size() != 1) GTEST_SKIP() << "single-process test";
  Net net;
  auto flat = FlatParameters::Build(*net.seq, 0.0);
  ASSERT_TRUE(flat.ok());
  GradientReducer r(&*flat, comm.get(), torch::kCPU, {64 * 4, /*overlap=*/false});
  EXPECT_FALSE(r.overlapped());
  flat->ZeroGrad();
  r.BeginStep();
  Loss(net.seq).backward();
  const torch::Tensor before = flat->groups()[0].grads.clone();
  ASSERT_TRUE(r.FinishStep().ok());
  EXPECT_TRUE(torch::equal(flat->groups()[0].grads, before));
  EXPECT_EQ(comm->stats().allreduce_bytes, static_cast<uint64_t>(flat->numel()) * 4u);  // in 64-float buckets
  EXPECT_EQ(comm->stats().allreduce_calls, static_cast<uint64_t>((flat->numel() + 63) / 64));
}

}  // namespace
}  // namespace ftune::train
