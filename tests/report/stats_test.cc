// The comparison statistics against hand-computed cases: closed-form Student t quantiles, exact
// binomial sums for McNemar, and the bootstrap against its large-sample normal approximation.
#include "report/stats.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::report {
namespace {

constexpr double kPi = 3.14159265358979323846;

TEST(StudentT, QuantilesMatchClosedForms) {
  for (double p : {0.6, 0.9, 0.95, 0.975, 0.995, 0.9995}) {
    // df = 1 (Cauchy): tan(pi (p - 1/2)).
    EXPECT_NEAR(StudentTQuantile(p, 1), std::tan(kPi * (p - 0.5)), 1e-9 * std::tan(kPi * (p - 0.5))) << p;
    // df = 2: (2p - 1) / sqrt(2 p (1 - p)).
    EXPECT_NEAR(StudentTQuantile(p, 2), (2 * p - 1) / std::sqrt(2 * p * (1 - p)), 1e-9) << p;
    // df = 4: 2 sqrt(q - 1), q = cos(acos(sqrt(a)) / 3) / sqrt(a), a = 4 p (1 - p).
    const double a = 4 * p * (1 - p);
    const double q = std::cos(std::acos(std::sqrt(a)) / 3) / std::sqrt(a);
    EXPECT_NEAR(StudentTQuantile(p, 4), 2 * std::sqrt(q - 1), 1e-9) << p;
  }
  EXPECT_NEAR(StudentTQuantile(0.975, 1), 12.706204736174696, 1e-8);
  EXPECT_NEAR(StudentTQuantile(0.975, 2), 4.302652729749462, 1e-9);
  EXPECT_NEAR(StudentTQuantile(0.975, 4), 2.7764451051977934, 1e-9);
}

TEST(StudentT, QuantilesMatchPrintedTablesAndTheNormalLimit) {
  // Two-sided 95% critical values as printed in every statistics table.
  EXPECT_NEAR(StudentTQuantile(0.975, 9), 2.262, 5e-4);
  EXPECT_NEAR(StudentTQuantile(0.975, 10), 2.228, 5e-4);
  EXPECT_NEAR(StudentTQuantile(0.975, 30), 2.042, 5e-4);
  EXPECT_NEAR(StudentTQuantile(0.995, 5), 4.032, 5e-4);
  EXPECT_NEAR(StudentTQuantile(0.975, 1e7), 1.959964, 1e-5);  // z_{0.975}
  // Symmetry, the median, and the CDF as the inverse.
  EXPECT_DOUBLE_EQ(StudentTQuantile(0.5, 3), 0.0);
  EXPECT_NEAR(StudentTQuantile(0.025, 4), -StudentTQuantile(0.975, 4), 1e-12);
  for (double df : {1.0, 2.5, 7.0, 50.0}) {
    for (double t : {-3.0, -0.4, 0.0, 1.2, 4.0}) {
      EXPECT_NEAR(StudentTQuantile(StudentTCdf(t, df), df), t, 1e-8) << "df " << df << " t " << t;
    }
  }
  // df = 2 CDF in closed form: 1/2 + t / (2 sqrt(2 + t^2)).
  EXPECT_NEAR(StudentTCdf(1.5, 2), 0.5 + 1.5 / (2 * std::sqrt(2 + 2.25)), 1e-13);
  EXPECT_TRUE(std::isnan(StudentTQuantile(1.0, 3)));
  EXPECT_TRUE(std::isnan(StudentTQuantile(0.5, 0)));
}

TEST(MeanConfidenceInterval, ThreeSeedsByHand) {
  // Accuracies 0.80, 0.82, 0.84: mean 0.82, s = 0.02, half-width = t_{0.975,2} * 0.02 / sqrt(3).
  auto r = MeanConfidenceInterval({0.80, 0.82, 0.84});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->n, 3);
  EXPECT_NEAR(r->mean, 0.82, 1e-15);
  EXPECT_NEAR(r->stddev, 0.02, 1e-15);
  EXPECT_NEAR(r->half_width, 4.302652729749462 * 0.02 / std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(r->lower(), 0.82 - 0.0496828, 1e-7);
  EXPECT_NEAR(r->upper(), 0.82 + 0.0496828, 1e-7);
  // 90% with 5 values 1..5: mean 3, s = sqrt(2.5), t_{0.95,4} = 2.131847.
  auto r90 = MeanConfidenceInterval({1, 2, 3, 4, 5}, 0.90);
  ASSERT_TRUE(r90.ok());
  EXPECT_NEAR(r90->half_width, 2.131846786 * std::sqrt(2.5) / std::sqrt(5.0), 1e-8);
}

TEST(MeanConfidenceInterval, OneSeedHasNoIntervalAndBadConfidenceIsAnError) {
  auto one = MeanConfidenceInterval({0.9});
  ASSERT_TRUE(one.ok());
  EXPECT_DOUBLE_EQ(one->mean, 0.9);
  EXPECT_TRUE(std::isnan(one->half_width));
  auto none = MeanConfidenceInterval({});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->n, 0);
  EXPECT_TRUE(std::isnan(none->mean));
  auto identical = MeanConfidenceInterval({0.5, 0.5, 0.5});
  ASSERT_TRUE(identical.ok());
  EXPECT_DOUBLE_EQ(identical->half_width, 0.0);
  EXPECT_EQ(MeanConfidenceInterval({1, 2}, 1.0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MeanConfidenceInterval({1, 2}, 0.0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(McNemar, ExactPValuesByHand) {
  // p = min(1, 2 * sum_{i <= min(b, c)} C(b + c, i) / 2^(b + c)).
  EXPECT_NEAR(McNemarExactP(1, 5), 2.0 * (1 + 6) / 64, 1e-15);          // 0.21875
  EXPECT_NEAR(McNemarExactP(5, 1), 2.0 * (1 + 6) / 64, 1e-15);          // symmetric
  EXPECT_NEAR(McNemarExactP(0, 6), 2.0 / 64, 1e-15);                    // 0.03125
  EXPECT_NEAR(McNemarExactP(2, 8), 2.0 * (1 + 10 + 45) / 1024, 1e-15);  // 0.109375
  EXPECT_DOUBLE_EQ(McNemarExactP(3, 3), 1.0);                           // 2 * 42/64 > 1: capped
  EXPECT_DOUBLE_EQ(McNemarExactP(0, 1), 1.0);
  EXPECT_DOUBLE_EQ(McNemarExactP(0, 0), 1.0);                      // no discordant pairs
  EXPECT_NEAR(McNemarExactP(60, 40), 0.05688793364098079, 1e-12);  // sum of 41 binomial terms
  EXPECT_LT(McNemarExactP(0, 2000), 1e-300);                       // huge n stays finite
}

TEST(McNemar, CountsDiscordantPairsOnly) {
  //        agree agree  A only  A only  B only  both wrong
  std::vector<bool> a = {true, true, true, true, false, false};
  std::vector<bool> b = {true, true, false, false, true, false};
  auto r = McNemarExact(a, b);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->only_a, 2);
  EXPECT_EQ(r->only_b, 1);
  EXPECT_DOUBLE_EQ(r->p_value, 1.0);  // 2 * (1 + 3) / 8 capped
  auto bad = McNemarExact({true}, {true, false});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), ::testing::HasSubstr("1 vs 2"));
}

// n examples: `only_a` right only for A, `only_b` right only for B, the rest right for both.
void Paired(int n, int only_a, int only_b, std::vector<bool>* a, std::vector<bool>* b) {
  a->assign(n, true);
  b->assign(n, true);
  for (int i = 0; i < only_a; ++i) (*b)[i] = false;
  for (int i = only_a; i < only_a + only_b; ++i) (*a)[i] = false;
}

TEST(PairedBootstrap, AgreesWithTheNormalApproximationOnALargeSample) {
  // 400 examples, 60 won only by A, 40 only by B: difference 0.05; the per-example differences
  // d in {-1, 0, 1} have variance 100/400 - 0.05^2, so SE = sqrt(0.2475 / 400) = 0.024875 and the
  // bootstrap's 95% interval and p-value should be 0.05 -/+ 1.96 SE and 2 Phi(-0.05 / SE) = 0.0444.
  std::vector<bool> a, b;
  Paired(400, 60, 40, &a, &b);
  auto r = PairedBootstrap(a, b, 20000, /*seed=*/7);
  ASSERT_TRUE(r.ok()) << r.status();
  const double se = std::sqrt(0.2475 / 400);
  EXPECT_DOUBLE_EQ(r->difference, 0.05);
  EXPECT_NEAR(r->lower, 0.05 - 1.959964 * se, 0.004);
  EXPECT_NEAR(r->upper, 0.05 + 1.959964 * se, 0.004);
  EXPECT_NEAR(r->p_value, 2 * 0.5 * std::erfc(0.05 / se / std::sqrt(2.0)), 0.01);
  EXPECT_EQ(r->resamples, 20000);
}

TEST(PairedBootstrap, IsSeededAndHandlesTheExtremes) {
  std::vector<bool> a, b;
  Paired(50, 8, 3, &a, &b);
  auto r1 = PairedBootstrap(a, b, 2000, 1);
  auto r2 = PairedBootstrap(a, b, 2000, 1);
  auto r3 = PairedBootstrap(a, b, 2000, 2);
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok());
  EXPECT_EQ(r1->lower, r2->lower);
  EXPECT_EQ(r1->upper, r2->upper);
  EXPECT_EQ(r1->p_value, r2->p_value);
  EXPECT_TRUE(r1->lower != r3->lower || r1->upper != r3->upper || r1->p_value != r3->p_value);
  EXPECT_LE(r1->lower, r1->difference);
  EXPECT_GE(r1->upper, r1->difference);

  // Identical predictions: every resample differs by 0.
  auto same = PairedBootstrap(a, a, 500, 3);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->lower, 0.0);
  EXPECT_EQ(same->upper, 0.0);
  EXPECT_EQ(same->p_value, 1.0);
  // A right everywhere B is wrong: every resample differs by 1; p is the smallest reportable.
  std::vector<bool> all(30, true), none(30, false);
  auto sure = PairedBootstrap(all, none, 999, 3);
  ASSERT_TRUE(sure.ok());
  EXPECT_EQ(sure->lower, 1.0);
  EXPECT_EQ(sure->upper, 1.0);
  EXPECT_DOUBLE_EQ(sure->p_value, 2.0 / 1000);

  EXPECT_EQ(PairedBootstrap({}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PairedBootstrap(a, b, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PairedBootstrap({true}, {true, true}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ftune::report
