// Statistics for comparing fine-tuning methods honestly (torch-free):
//  - MeanConfidenceInterval: mean over seeds with a Student-t confidence interval;
//  - McNemarExact: the exact (binomial) McNemar test on paired per-example correctness of two
//    models on the same eval examples;
//  - PairedBootstrap: a seeded paired bootstrap of the accuracy difference on those examples.
// Differences of a point or two on a few hundred eval examples are often noise; these say which are
// not. Every function is deterministic (the bootstrap draws from its own seeded std::mt19937_64).
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "common/status.h"

namespace ftune::report {

// Student's t distribution with `df` > 0 degrees of freedom: P(T <= t), and its inverse (the t
// with P(T <= t) = p, 0 < p < 1), computed through the regularized incomplete beta function
// (relative error ~1e-12).
double StudentTCdf(double t, double df);
double StudentTQuantile(double p, double df);

struct MeanInterval {
  int64_t n = 0;
  double mean = std::numeric_limits<double>::quiet_NaN();
  double stddev = std::numeric_limits<double>::quiet_NaN();      // sample standard deviation (divides by n - 1)
  double half_width = std::numeric_limits<double>::quiet_NaN();  // t_{(1+c)/2, n-1} * stddev / sqrt(n)
  double lower() const { return mean - half_width; }
  double upper() const { return mean + half_width; }
};

// Mean of `values` (e.g. one eval accuracy per seed) and its two-sided `confidence` interval.
// With one value the mean is that value and stddev / half_width are NaN (no interval from one
// seed); with none everything is NaN. confidence must be in (0, 1) (InvalidArgument otherwise).
absl::StatusOr<MeanInterval> MeanConfidenceInterval(const std::vector<double>& values, double confidence = 0.95);

struct McNemarResult {
  int64_t only_a = 0;  // examples A gets right and B gets wrong
  int64_t only_b = 0;  // examples B gets right and A gets wrong
  double p_value = 1;  // two-sided exact test of "A and B are equally accurate"
};

// Two-sided exact McNemar p-value for `only_a` and `only_b` discordant pairs: under the null each
// discordant pair falls either way with probability 1/2, so
//   p = min(1, 2 * P(X <= min(only_a, only_b))),  X ~ Binomial(only_a + only_b, 1/2);
// 1 when there are no discordant pairs.
double McNemarExactP(int64_t only_a, int64_t only_b);

// The test on per-example correctness (same examples, same order; sizes must match).
absl::StatusOr<McNemarResult> McNemarExact(const std::vector<bool>& a_correct, const std::vector<bool>& b_correct);

struct BootstrapResult {
  double difference = 0;  // accuracy(A) - accuracy(B) on the given examples
  double lower = 0;       // percentile interval of the resampled differences at `confidence`
  double upper = 0;
  // Two-sided: 2 * (1 + resampled differences on the far side of 0) / (1 + resamples), at most 1
  // (the "far side" is the smaller count of <= 0 and >= 0): the test the percentile interval
  // inverts, so p < 1 - confidence roughly when 0 lies outside the interval. The +1 keeps a Monte
  // Carlo p-value from being reported as 0.
  double p_value = 1;
  int64_t resamples = 0;
};

// Resamples the examples with replacement `resamples` times (the same draw for A and B: paired)
// and collects accuracy(A) - accuracy(B). Percentiles interpolate linearly between order
// statistics (numpy's default). Errors: sizes differ or are 0, resamples < 1, confidence not in (0, 1).
absl::StatusOr<BootstrapResult> PairedBootstrap(const std::vector<bool>& a_correct, const std::vector<bool>& b_correct,
                                                int64_t resamples = 10000, uint64_t seed = 42,
                                                double confidence = 0.95);

}  // namespace ftune::report
