// The stable hash and generator every rank relies on computing identically.
#include "common/hash.h"

#include <set>

#include "common/random.h"
#include "gtest/gtest.h"

namespace ftune {
namespace {

TEST(Fnv1a64, MatchesReferenceVectorsAndChains) {
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(Fnv1a64("foobar"), 0x85944171f73967e8ULL);
  EXPECT_EQ(Fnv1a64("bar", Fnv1a64("foo")), Fnv1a64("foobar"));
  EXPECT_NE(Fnv1a64(absl::string_view("a\0b", 3)), Fnv1a64("ab"));  // bytes, not C strings
}

// Vigna's reference splitmix64.c, state 0.
TEST(SplitMix64, MatchesTheReferenceStream) {
  SplitMix64 r(0);
  EXPECT_EQ(r.Next(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(r.Next(), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(r.Next(), 0x06c45d188009454fULL);
}

TEST(SplitMix64, BelowIsInRangeAndCoversIt) {
  SplitMix64 r(7);
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t x = r.Below(10);
    ASSERT_LT(x, 10u);
    seen.insert(x);
  }
  EXPECT_EQ(seen.size(), 10u);
}

TEST(MixSeed, DependsOnEveryInput) {
  const uint64_t base = MixSeed(42, 3, 1);
  EXPECT_EQ(base, MixSeed(42, 3, 1));
  EXPECT_NE(base, MixSeed(43, 3, 1));
  EXPECT_NE(base, MixSeed(42, 4, 1));
  EXPECT_NE(base, MixSeed(42, 3, 0));
  EXPECT_NE(MixSeed(1, 2, 3), MixSeed(1, 3, 2));  // not symmetric in its inputs
}

}  // namespace
}  // namespace ftune
