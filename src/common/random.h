// SplitMix64: the one pseudo-random generator of ftune's own decisions (sample order, per-step
// seeds, masking), chosen because its stream is fixed by its arithmetic: the same on every
// platform and standard library, unlike std::mt19937 + std::shuffle/distributions.
#pragma once

#include <cstdint>

namespace ftune {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound), unbiased: the top sliver of the range is rejected.
  uint64_t Below(uint64_t bound) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do {
      x = Next();
    } while (x >= limit);
    return x % bound;
  }

 private:
  uint64_t state_;
};

// One well-mixed 64-bit value from a few: the seed of a stream that must depend on exactly these
// inputs (e.g. (seed, epoch) for the sample order, (seed, step, rank) for dropout).
inline uint64_t MixSeed(uint64_t a, uint64_t b, uint64_t c = 0) {
  return SplitMix64(a ^ (0x9e3779b97f4a7c15ULL * (b + 1)) ^ (0xbf58476d1ce4e5b9ULL * (c + 1))).Next();
}

}  // namespace ftune
