// AdamW on flat buffers (tensor ops, the host kernel and LibTorch's fused kernel agree) and the learning-rate
// schedule (Hugging Face's get_linear_schedule_with_warmup).
#include "train/optimizer.h"

#include <cmath>

#include "common/torch_compat.h"
#include "gtest/gtest.h"
#include "tests/model/reference.h"

namespace ftune::train {
namespace {

using ::ftune::testing::MaxAbsDiff;

// 20 steps of a warmup schedule (lr 1e-2) for two optimizers over equal layouts, each step on the
// same random gradients (fb's in its own dtype).
void StepBothOnTheSameRandomGradients(FlatParameters& fa, FlatAdamW& a, FlatParameters& fb, FlatAdamW& b) {
  const LrSchedule sched = *LrSchedule::Create(1e-2, 3, 20);
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
}

// LibTorch's fused kernel and ftune's own AdamW (on the CPU the host kernel) are the same AdamW:
// with weight decay (two groups), many steps and a non-trivial schedule, they stay within float
// rounding of each other.
TEST(FlatAdamW, FusedKernelEqualsOursWithWeightDecay) {
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
  const torch::Tensor start = fa.groups()[1].params.clone();
  StepBothOnTheSameRandomGradients(fa, a, fb, b);
  for (size_t i = 0; i < fa.groups().size(); ++i) {
    EXPECT_LT(MaxAbsDiff(fa.groups()[i].params, fb.groups()[i].params), 1e-6) << "group " << i;
    // A few float32 ulps of the largest second moment: the two kernels round differently.
    const double v_max = b.exp_avg_sq()[i].abs().max().item<double>();
    EXPECT_LT(MaxAbsDiff(a.exp_avg_sq()[i], b.exp_avg_sq()[i]), 1e-6 * v_max) << "group " << i;
  }
  EXPECT_GT(MaxAbsDiff(fa.groups()[1].params, start), 1e-3) << "the weights should have moved";
  EXPECT_EQ(a.step_count(), 20);
  EXPECT_EQ(b.step_count(), 20);
}

// On the CPU, float32 buffers take the one-pass host kernel (train/adamw_kernel.h); other dtypes
// the tensor operations. The same model in float32 and in float64, with weight decay (two groups),
// a group long enough to be split over threads with a ragged end (210,000 + 700 elements), 20 steps
// of a warmup schedule and random gradients: float rounding apart, the same parameters and moments.
TEST(FlatAdamW, HostKernelEqualsTensorOps) {
  auto make = [](torch::ScalarType dtype) {
    torch::manual_seed(7);
    auto m = torch::nn::Linear(torch::nn::LinearOptions(300, 700));
    m->to(dtype);
    auto flat = FlatParameters::Build(*m, 0.01);
    return std::make_pair(m, std::move(*flat));
  };
  auto [ma, fa] = make(torch::kFloat);
  auto [mb, fb] = make(torch::kDouble);
  (void)ma, (void)mb;
  ASSERT_EQ(fa.groups().size(), 2u);
  FlatAdamW a(&fa, {}, /*fused=*/false), b(&fb, {}, /*fused=*/false);
  const torch::Tensor start = fa.groups()[0].params.clone();
  StepBothOnTheSameRandomGradients(fa, a, fb, b);
  for (size_t i = 0; i < fa.groups().size(); ++i) {
    const auto as_double = [](const torch::Tensor& t) { return t.to(torch::kDouble); };
    EXPECT_LT(MaxAbsDiff(as_double(fa.groups()[i].params), fb.groups()[i].params), 1e-6) << "group " << i;
    EXPECT_LT(MaxAbsDiff(as_double(a.exp_avg()[i]), b.exp_avg()[i]), 1e-6) << "group " << i;
    EXPECT_LT(MaxAbsDiff(as_double(a.exp_avg_sq()[i]), b.exp_avg_sq()[i]), 1e-6) << "group " << i;
  }
  EXPECT_GT(MaxAbsDiff(fa.groups()[0].params, start), 1e-2) << "the weights should have moved";
  EXPECT_EQ(a.step_count(), 20);
}

double Lr(LrSchedulerType type, int64_t step, LrScheduleOptions o = {}, double base = 1.0) {
  o.type = type;
  auto s = LrSchedule::Create(base, /*warmup=*/2, /*total=*/10, o);
  EXPECT_TRUE(s.ok()) << s.status();
  return s->LearningRate(step);
}

// Values worked out by hand from transformers.optimization's lr_lambda functions (warmup 2 of 10
// steps, so after warmup progress p = (s - 2) / 8).
TEST(Schedule, EveryHuggingFaceScheduleAtHandComputedSteps) {
  using T = LrSchedulerType;
  for (T t : {T::kLinear, T::kCosine, T::kCosineWithRestarts, T::kConstantWithWarmup, T::kPolynomial}) {
    EXPECT_DOUBLE_EQ(Lr(t, 0), 0.0) << LrSchedulerName(t);
    EXPECT_DOUBLE_EQ(Lr(t, 1), 0.5) << LrSchedulerName(t);  // warmup: s / w
  }
  // linear: (10 - s) / 8.
  EXPECT_DOUBLE_EQ(Lr(T::kLinear, 2), 1.0);
  EXPECT_DOUBLE_EQ(Lr(T::kLinear, 6), 0.5);
  EXPECT_DOUBLE_EQ(Lr(T::kLinear, 10), 0.0);
  EXPECT_DOUBLE_EQ(Lr(T::kLinear, 12), 0.0);
  // cosine, half a cycle: (1 + cos(pi p)) / 2; p = 1/4 -> (1 + sqrt(2)/2) / 2, p = 1/2 -> 1/2.
  EXPECT_DOUBLE_EQ(Lr(T::kCosine, 2), 1.0);
  EXPECT_NEAR(Lr(T::kCosine, 4), (1 + std::sqrt(0.5)) / 2, 1e-15);
  EXPECT_NEAR(Lr(T::kCosine, 6), 0.5, 1e-15);
  EXPECT_NEAR(Lr(T::kCosine, 10), 0.0, 1e-15);
  // cosine with num_cycles 1 (a whole cycle: back up at the end): p = 1/2 -> 0, p = 3/4 -> 1/2.
  LrScheduleOptions one;
  one.num_cycles = 1.0;
  EXPECT_NEAR(Lr(T::kCosine, 6, one), 0.0, 1e-15);
  EXPECT_NEAR(Lr(T::kCosine, 8, one), 0.5, 1e-15);
  // cosine_with_restarts, default 1 cycle: (1 + cos(pi (p mod 1))) / 2, 0 once p >= 1.
  EXPECT_NEAR(Lr(T::kCosineWithRestarts, 6), 0.5, 1e-15);
  EXPECT_DOUBLE_EQ(Lr(T::kCosineWithRestarts, 10), 0.0);
  // ... with 2 cycles: p = 1/4 -> (p * 2) mod 1 = 1/2 -> 1/2; p = 1/2 -> restart at 1.
  LrScheduleOptions two;
  two.num_cycles = 2.0;
  EXPECT_NEAR(Lr(T::kCosineWithRestarts, 4, two), 0.5, 1e-15);
  EXPECT_DOUBLE_EQ(Lr(T::kCosineWithRestarts, 6, two), 1.0);
  // constant: no warmup at all; constant_with_warmup: 1 after it.
  EXPECT_DOUBLE_EQ(Lr(T::kConstant, 0), 1.0);
  EXPECT_DOUBLE_EQ(Lr(T::kConstantWithWarmup, 2), 1.0);
  EXPECT_DOUBLE_EQ(Lr(T::kConstantWithWarmup, 50), 1.0);
  // polynomial, lr 1e-3, lr_end 1e-7, power 2: ((lr - end) (1 - p)^2 + end); past the end: end.
  LrScheduleOptions poly;
  poly.power = 2.0;
  EXPECT_NEAR(Lr(T::kPolynomial, 6, poly, 1e-3), (1e-3 - 1e-7) * 0.25 + 1e-7, 1e-18);
  EXPECT_NEAR(Lr(T::kPolynomial, 10, poly, 1e-3), 1e-7, 1e-18);
  EXPECT_NEAR(Lr(T::kPolynomial, 11, poly, 1e-3), 1e-7, 1e-18);
  // As HF, a polynomial schedule must decay: lr_end >= lr is refused.
  LrScheduleOptions up;
  up.type = T::kPolynomial;
  up.lr_end = 1.0;
  EXPECT_FALSE(LrSchedule::Create(1e-3, 0, 10, up).ok());
  EXPECT_EQ(ResolveWarmupSteps(0, 0.1, 750), 75);
  EXPECT_EQ(ResolveWarmupSteps(5, 0.1, 750), 5);
}

TEST(Schedule, NamesAreHuggingFaceNames) {
  for (const char* name :
       {"linear", "cosine", "cosine_with_restarts", "constant", "constant_with_warmup", "polynomial"}) {
    auto t = ParseLrSchedulerType(name);
    ASSERT_TRUE(t.ok()) << name;
    EXPECT_STREQ(LrSchedulerName(*t), name);
  }
  auto bad = ParseLrSchedulerType("cosine_annealing");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("cosine_with_restarts"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace ftune::train
