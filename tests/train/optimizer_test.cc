// AdamW on flat buffers (tensor ops and LibTorch's fused kernel agree) and the learning-rate
// schedule (Hugging Face's get_linear_schedule_with_warmup).
#include "train/optimizer.h"

#include "common/torch_compat.h"
#include "gtest/gtest.h"
#include "tests/model/reference.h"

namespace ftune::train {
namespace {

using ::ftune::testing::MaxAbsDiff;

// The fused kernel and the tensor-op path are the same AdamW: with weight decay (two groups), many
// steps, and a non-trivial schedule, they stay within float rounding of each other.
TEST(FlatAdamW, FusedKernelEqualsTensorOpsWithWeightDecay) {
  if (!compat::HasFusedAdamW()) GTEST_SKIP() << "LibTorch " << compat::TorchVersion() << " has no fused AdamW";
  auto make = [](bool fused) {
    torch::manual_seed(7);
    auto m = torch::nn::Linear(torch::nn::LinearOptions(64, 32));
    auto flat = FlatParameters::Build(*m, 0.01);
    return std::make_pair(m, std::move(*flat));
  };
  auto [ma, fa] = make(false);
  auto [mb, fb] = make(true);
  (void)ma, (void)mb;  // keep the modules (and their parameter views) alive
  ASSERT_EQ(fa.groups().size(), 2u);
  FlatAdamW a(&fa, {}, /*fused=*/false), b(&fb, {}, /*fused=*/true);
  ASSERT_FALSE(a.fused());
  ASSERT_TRUE(b.fused());
  LinearSchedule sched(1e-2, 3, 20);
  const torch::Tensor start = fa.groups()[1].params.clone();
  for (int step = 0; step < 20; ++step) {
    torch::manual_seed(100 + step);
    for (size_t i = 0; i < fa.groups().size(); ++i) {
      torch::Tensor g = torch::randn_like(fa.groups()[i].grads);
      fa.groups()[i].grads.copy_(g);
      fb.groups()[i].grads.copy_(g);
    }
    a.Step(sched.LearningRate(step));
    b.Step(sched.LearningRate(step));
  }
  for (size_t i = 0; i < fa.groups().size(); ++i) {
    EXPECT_LT(MaxAbsDiff(fa.groups()[i].params, fb.groups()[i].params), 1e-6) << "group " << i;
    EXPECT_LT(MaxAbsDiff(a.exp_avg_sq()[i], b.exp_avg_sq()[i]), 1e-9) << "group " << i;
  }
  EXPECT_GT(MaxAbsDiff(fa.groups()[1].params, start), 1e-3) << "the weights should have moved";
  EXPECT_EQ(a.step_count(), 20);
  EXPECT_EQ(b.step_count(), 20);
}

TEST(Schedule, LinearWarmupAndDecayLikeHuggingFace) {
  LinearSchedule s(1.0, /*warmup=*/2, /*total=*/10);
  EXPECT_DOUBLE_EQ(s.LearningRate(0), 0.0);
  EXPECT_DOUBLE_EQ(s.LearningRate(1), 0.5);
  EXPECT_DOUBLE_EQ(s.LearningRate(2), 1.0);
  EXPECT_DOUBLE_EQ(s.LearningRate(6), 0.5);
  EXPECT_DOUBLE_EQ(s.LearningRate(10), 0.0);
  EXPECT_EQ(ResolveWarmupSteps(0, 0.1, 750), 75);
  EXPECT_EQ(ResolveWarmupSteps(5, 0.1, 750), 5);
}

}  // namespace
}  // namespace ftune::train
