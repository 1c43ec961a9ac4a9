#include "report/stats.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_format.h"

namespace ftune::report {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Continued fraction for the incomplete beta function (modified Lentz's method), valid for
// x < (a + 1) / (a + b + 2).
double BetaContinuedFraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  constexpr double kEps = 1e-16;
  double c = 1.0;
  double d = 1.0 - (a + b) * x / (a + 1.0);
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= 1000; ++m) {
    const double m2 = 2.0 * m;
    // Even step.
    double num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
    d = 1.0 + num * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + num / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    h *= d * c;
    // Odd step.
    num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
    d = 1.0 + num * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + num / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::fabs(delta - 1.0) < kEps) break;
  }
  return h;
}

// The regularized incomplete beta function I_x(a, b).
double RegularizedBeta(double a, double b, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double log_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  if (x < (a + 1.0) / (a + b + 2.0)) return std::exp(log_front) * BetaContinuedFraction(a, b, x) / a;
  return 1.0 - std::exp(log_front) * BetaContinuedFraction(b, a, 1.0 - x) / b;
}

absl::Status CheckConfidence(double confidence) {
  if (confidence > 0.0 && confidence < 1.0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat("confidence must be in (0, 1); got %g", confidence));
}

absl::Status CheckPaired(const std::vector<bool>& a, const std::vector<bool>& b) {
  if (a.size() == b.size()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "paired comparison needs the same examples for both models: %d vs %d per-example results", a.size(), b.size()));
}

// An unbiased draw from [0, n) (rejection sampling; the same on every platform, unlike
// std::uniform_int_distribution).
uint64_t Below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
  for (;;) {
    const uint64_t r = rng();
    if (r >= threshold) return r % n;
  }
}

// Linear interpolation between order statistics of sorted `v` (numpy.percentile's default).
double Percentile(const std::vector<double>& v, double q) {
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

}  // namespace

double StudentTCdf(double t, double df) {
  if (!(df > 0.0) || std::isnan(t)) return kNaN;
  if (std::isinf(t)) return t > 0 ? 1.0 : 0.0;
  // P(|T| > |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2).
  const double tail = 0.5 * RegularizedBeta(0.5 * df, 0.5, df / (df + t * t));
  return t > 0 ? 1.0 - tail : tail;
}

double StudentTQuantile(double p, double df) {
  if (!(df > 0.0) || !(p > 0.0 && p < 1.0)) return kNaN;
  if (p == 0.5) return 0.0;
  // By symmetry solve for the upper tail, then bisect: the CDF is monotone, so this cannot fail.
  const double upper = p > 0.5 ? p : 1.0 - p;
  double lo = 0.0, hi = 1.0;
  while (StudentTCdf(hi, df) < upper) {
    lo = hi;
    hi *= 2.0;
  }
  for (int i = 0; i < 200 && hi - lo > 1e-15 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (StudentTCdf(mid, df) < upper ? lo : hi) = mid;
  }
  const double t = 0.5 * (lo + hi);
  return p > 0.5 ? t : -t;
}

absl::StatusOr<MeanInterval> MeanConfidenceInterval(const std::vector<double>& values, double confidence) {
  FTUNE_RETURN_IF_ERROR(CheckConfidence(confidence));
  MeanInterval r;
  r.n = static_cast<int64_t>(values.size());
  if (values.empty()) return r;
  double sum = 0;
  for (double v : values) sum += v;
  r.mean = sum / static_cast<double>(r.n);
  if (r.n < 2) return r;
  double ss = 0;
  for (double v : values) ss += (v - r.mean) * (v - r.mean);
  r.stddev = std::sqrt(ss / static_cast<double>(r.n - 1));
  r.half_width = StudentTQuantile(0.5 * (1.0 + confidence), static_cast<double>(r.n - 1)) * r.stddev /
                 std::sqrt(static_cast<double>(r.n));
  return r;
}

double McNemarExactP(int64_t only_a, int64_t only_b) {
  const int64_t n = only_a + only_b;
  if (n == 0) return 1.0;
  const int64_t k = std::min(only_a, only_b);
  // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space (n can be thousands).
  double tail = 0;
  for (int64_t i = 0; i <= k; ++i) {
    tail += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) - n * std::log(2.0));
  }
  return std::min(1.0, 2.0 * tail);
}

absl::StatusOr<McNemarResult> McNemarExact(const std::vector<bool>& a_correct, const std::vector<bool>& b_correct) {
  FTUNE_RETURN_IF_ERROR(CheckPaired(a_correct, b_correct));
  McNemarResult r;
  for (size_t i = 0; i < a_correct.size(); ++i) {
    if (a_correct[i] && !b_correct[i]) ++r.only_a;
    if (!a_correct[i] && b_correct[i]) ++r.only_b;
  }
  r.p_value = McNemarExactP(r.only_a, r.only_b);
  return r;
}

absl::StatusOr<BootstrapResult> PairedBootstrap(const std::vector<bool>& a_correct, const std::vector<bool>& b_correct,
                                                int64_t resamples, uint64_t seed, double confidence) {
  FTUNE_RETURN_IF_ERROR(CheckPaired(a_correct, b_correct));
  FTUNE_RETURN_IF_ERROR(CheckConfidence(confidence));
  if (a_correct.empty()) return absl::InvalidArgumentError("paired bootstrap of no examples");
  if (resamples < 1) return absl::InvalidArgumentError(absl::StrFormat("resamples must be >= 1; got %d", resamples));
  const size_t n = a_correct.size();
  // Per-example difference in correctness: -1, 0 or 1.
  std::vector<int> d(n);
  int64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    d[i] = static_cast<int>(a_correct[i]) - static_cast<int>(b_correct[i]);
    total += d[i];
  }
  BootstrapResult r;
  r.resamples = resamples;
  r.difference = static_cast<double>(total) / static_cast<double>(n);
  std::mt19937_64 rng(seed);
  std::vector<double> diffs(static_cast<size_t>(resamples));
  int64_t at_or_below = 0, at_or_above = 0;
  for (auto& diff : diffs) {
    int64_t s = 0;
    for (size_t i = 0; i < n; ++i) s += d[Below(rng, n)];
    diff = static_cast<double>(s) / static_cast<double>(n);
    if (s <= 0) ++at_or_below;
    if (s >= 0) ++at_or_above;
  }
  std::sort(diffs.begin(), diffs.end());
  r.lower = Percentile(diffs, 0.5 * (1.0 - confidence));
  r.upper = Percentile(diffs, 0.5 * (1.0 + confidence));
  r.p_value = std::min(
      1.0, 2.0 * static_cast<double>(1 + std::min(at_or_below, at_or_above)) / static_cast<double>(1 + resamples));
  return r;
}

}  // namespace ftune::report
