// Communicator: real results of AllReduce (sum/max/min, every dtype MPI can reduce), Broadcast
// from a non-zero root (every dtype, bf16/f16 included), chunking of buffers larger than one MPI
// call, byte accounting, argument errors, and the NCCL entry point. Expected values are written
// in terms of world_size, so the same test checks the one-rank shortcut and real MPI traffic.
#include "distributed/communicator.h"

#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mpi_test_env.h"

namespace ftune::dist {
namespace {

using ::ftune::dist::testing::TestContext;
using ::testing::HasSubstr;

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType kValue = DType::kFloat32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType kValue = DType::kFloat64;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType kValue = DType::kInt32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType kValue = DType::kInt64;
};

// Chunk sizes under test: one MPI call per buffer, and 7 elements per call (so a 100-element
// buffer takes 15 calls, the last one partial).
constexpr size_t kChunks[] = {static_cast<size_t>(INT_MAX), 7};
constexpr size_t kCount = 100;

std::unique_ptr<Communicator> MakeMpi(size_t chunk) {
  MpiCommunicatorOptions options;
  options.max_elements_per_call = chunk;
  return MakeMpiCommunicator(TestContext(), options);
}

template <typename T>
class AllReduceTest : public ::testing::Test {};
using ReducibleTypes = ::testing::Types<float, double, int32_t, int64_t>;
TYPED_TEST_SUITE(AllReduceTest, ReducibleTypes);

TYPED_TEST(AllReduceTest, SumOfKnownPerRankValues) {
  using T = TypeParam;
  const int ws = TestContext().world_size();
  const int r = TestContext().rank();
  for (size_t chunk : kChunks) {
    SCOPED_TRACE(::testing::Message() << "chunk " << chunk);
    auto comm = MakeMpi(chunk);
    std::vector<T> v(kCount);
    for (size_t i = 0; i < kCount; ++i) v[i] = static_cast<T>(i % 5 + r + 1);
    ASSERT_TRUE(comm->AllReduce(v.data(), kCount, DTypeOf<T>::kValue, ReduceOp::kSum).ok());
    for (size_t i = 0; i < kCount; ++i) {
      // sum over ranks q of (i%5 + q + 1)
      const T want = static_cast<T>(ws * static_cast<int>(i % 5 + 1) + ws * (ws - 1) / 2);
      ASSERT_EQ(v[i], want) << "element " << i;
    }
  }
}

TYPED_TEST(AllReduceTest, MaxAndMinOfSignedPerRankValues) {
  using T = TypeParam;
  const int ws = TestContext().world_size();
  const int r = TestContext().rank();
  for (size_t chunk : kChunks) {
    SCOPED_TRACE(::testing::Message() << "chunk " << chunk);
    auto comm = MakeMpi(chunk);
    // Rank q holds d*(q+1) with d in [-3, 3]: the max over ranks is d*ws for d >= 0 and d for
    // d < 0; the min is the other way round.
    std::vector<T> mx(kCount), mn(kCount);
    for (size_t i = 0; i < kCount; ++i) {
      const int d = static_cast<int>(i % 7) - 3;
      mx[i] = mn[i] = static_cast<T>(d * (r + 1));
    }
    ASSERT_TRUE(comm->AllReduce(mx.data(), kCount, DTypeOf<T>::kValue, ReduceOp::kMax).ok());
    ASSERT_TRUE(comm->AllReduce(mn.data(), kCount, DTypeOf<T>::kValue, ReduceOp::kMin).ok());
    for (size_t i = 0; i < kCount; ++i) {
      const int d = static_cast<int>(i % 7) - 3;
      ASSERT_EQ(mx[i], static_cast<T>(d >= 0 ? d * ws : d)) << "max, element " << i;
      ASSERT_EQ(mn[i], static_cast<T>(d >= 0 ? d : d * ws)) << "min, element " << i;
    }
  }
}

TEST(MpiCommunicatorTest, Int64SumIsExactBeyondDoublePrecision) {
  const int ws = TestContext().world_size();
  const int r = TestContext().rank();
  auto comm = MakeMpi(7);
  std::vector<int64_t> v(kCount);
  const int64_t big = int64_t{1} << 55;  // sums are not representable as double
  for (size_t i = 0; i < kCount; ++i) v[i] = big * (r + 1) + static_cast<int64_t>(i) + 1;
  ASSERT_TRUE(comm->AllReduce(v.data(), kCount, DType::kInt64, ReduceOp::kSum).ok());
  for (size_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(v[i], big * (ws * (ws + 1) / 2) + ws * (static_cast<int64_t>(i) + 1)) << i;
  }
}

TEST(MpiCommunicatorTest, IdentityMatchesContext) {
  auto comm = MakeMpiCommunicator(TestContext());
  EXPECT_STREQ(comm->name(), "mpi");
  EXPECT_EQ(comm->rank(), TestContext().rank());
  EXPECT_EQ(comm->world_size(), TestContext().world_size());
  EXPECT_TRUE(comm->Barrier().ok());
}

TEST(MpiCommunicatorTest, HalfPrecisionAllReduceIsUnimplementedOnEveryRank) {
  auto comm = MakeMpiCommunicator(TestContext());
  std::vector<uint16_t> v(8, 0x3f80);  // 1.0 in bf16
  for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    absl::Status s = comm->AllReduce(v.data(), v.size(), dtype, ReduceOp::kSum);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
    EXPECT_THAT(s.message(), HasSubstr(DTypeName(dtype)));
  }
  EXPECT_EQ(v, std::vector<uint16_t>(8, 0x3f80));  // untouched
  EXPECT_EQ(comm->stats().allreduce_calls, 0u);    // failed calls are not counted
}

// Broadcast from the last rank (non-zero under mpirun) for every dtype, as raw element patterns.
template <typename T>
void ExpectBroadcastFromRoot(DType dtype, size_t chunk, int root) {
  const int r = TestContext().rank();
  auto comm = MakeMpi(chunk);
  std::vector<T> v(kCount);
  for (size_t i = 0; i < kCount; ++i) v[i] = static_cast<T>(3 * i + 1000 * r + 1);
  ASSERT_TRUE(comm->Broadcast(v.data(), kCount, dtype, root).ok());
  for (size_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(v[i], static_cast<T>(3 * i + 1000 * root + 1))
        << DTypeName(dtype) << " element " << i << " chunk " << chunk;
  }
  EXPECT_EQ(comm->stats().allreduce_calls, 0u);  // only AllReduce is accounted
}

TEST(MpiCommunicatorTest, BroadcastEveryDTypeFromRoot) {
  const int last = TestContext().world_size() - 1;
  for (size_t chunk : kChunks) {
    for (int root : {0, last}) {
      ExpectBroadcastFromRoot<float>(DType::kFloat32, chunk, root);
      ExpectBroadcastFromRoot<double>(DType::kFloat64, chunk, root);
      ExpectBroadcastFromRoot<uint16_t>(DType::kBFloat16, chunk, root);
      ExpectBroadcastFromRoot<uint16_t>(DType::kFloat16, chunk, root);
      ExpectBroadcastFromRoot<int64_t>(DType::kInt64, chunk, root);
      ExpectBroadcastFromRoot<int32_t>(DType::kInt32, chunk, root);
    }
  }
}

TEST(MpiCommunicatorTest, StatsCountLogicalBytesPerAllReduce) {
  auto comm = MakeMpi(7);
  std::vector<float> f(kCount, 1.0f);
  std::vector<double> d(33, 1.0);
  ASSERT_TRUE(comm->AllReduce(f.data(), f.size(), DType::kFloat32, ReduceOp::kSum).ok());
  Communicator::Stats s = comm->stats();
  EXPECT_EQ(s.allreduce_calls, 1u);
  EXPECT_EQ(s.allreduce_bytes, kCount * sizeof(float));  // per call, not per chunk or per rank
  ASSERT_TRUE(comm->AllReduce(d.data(), d.size(), DType::kFloat64, ReduceOp::kMax).ok());
  ASSERT_TRUE(comm->AllReduce(d.data(), 0, DType::kFloat64, ReduceOp::kMax).ok());
  s = comm->stats();
  EXPECT_EQ(s.allreduce_calls, 3u);
  EXPECT_EQ(s.allreduce_bytes, kCount * sizeof(float) + 33 * sizeof(double));
  EXPECT_GE(s.allreduce_seconds, 0.0);
  if (TestContext().world_size() == 1) {
    EXPECT_EQ(s.allreduce_seconds, 0.0);
  }
  ASSERT_TRUE(comm->Broadcast(d.data(), d.size(), DType::kFloat64, 0).ok());
  EXPECT_EQ(comm->stats().allreduce_calls, 3u);
  comm->ResetStats();
  s = comm->stats();
  EXPECT_EQ(s.allreduce_calls, 0u);
  EXPECT_EQ(s.allreduce_bytes, 0u);
  EXPECT_EQ(s.allreduce_seconds, 0.0);
}

TEST(MpiCommunicatorTest, BadArgumentsAreInvalidOnEveryRank) {
  auto comm = MakeMpiCommunicator(TestContext());
  const int ws = TestContext().world_size();
  float x = 1.0f;
  EXPECT_EQ(comm->AllReduce(nullptr, 3, DType::kFloat32, ReduceOp::kSum).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(comm->AllReduce(nullptr, 0, DType::kFloat32, ReduceOp::kSum).ok());
  EXPECT_EQ(comm->AllReduce(&x, 1, static_cast<DType>(99), ReduceOp::kSum).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm->AllReduce(&x, 1, DType::kFloat32, static_cast<ReduceOp>(99)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comm->Broadcast(&x, 1, DType::kFloat32, -1).code(), absl::StatusCode::kInvalidArgument);
  absl::Status s = comm->Broadcast(&x, 1, DType::kFloat32, ws);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("not a rank"));
  EXPECT_EQ(comm->Broadcast(nullptr, 2, DType::kInt32, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(x, 1.0f);
  EXPECT_EQ(comm->stats().allreduce_calls, 1u);  // only the valid zero-length call
}

TEST(MpiCommunicatorTest, ScalarMetricsReduceAsDoubles) {
  // The evaluation path: per-rank (loss sum, correct, seen) summed over ranks.
  const int ws = TestContext().world_size();
  const int r = TestContext().rank();
  auto comm = MakeMpiCommunicator(TestContext());
  double m[3] = {0.5 * (r + 1), static_cast<double>(10 + r), 16.0};
  ASSERT_TRUE(comm->AllReduce(m, 3, DType::kFloat64, ReduceOp::kSum).ok());
  EXPECT_DOUBLE_EQ(m[0], 0.5 * ws * (ws + 1) / 2);
  EXPECT_DOUBLE_EQ(m[1], 10.0 * ws + ws * (ws - 1) / 2);
  EXPECT_DOUBLE_EQ(m[2], 16.0 * ws);
}

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(DTypeSize(DType::kFloat32), 4u);
  EXPECT_EQ(DTypeSize(DType::kFloat64), 8u);
  EXPECT_EQ(DTypeSize(DType::kBFloat16), 2u);
  EXPECT_EQ(DTypeSize(DType::kFloat16), 2u);
  EXPECT_EQ(DTypeSize(DType::kInt64), 8u);
  EXPECT_EQ(DTypeSize(DType::kInt32), 4u);
  EXPECT_EQ(DTypeSize(static_cast<DType>(99)), 0u);
  EXPECT_STREQ(DTypeName(DType::kBFloat16), "bfloat16");
  EXPECT_STREQ(ReduceOpName(ReduceOp::kMax), "max");
}

TEST(NcclCommunicatorTest, UnavailableBuildsSayHowToEnableIt) {
  if (NcclCompiledIn()) GTEST_SKIP() << "NCCL is compiled in; see InvalidDeviceFails...";
  auto comm = MakeNcclCommunicator(TestContext(), 0);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(comm.status().message(), HasSubstr("FTUNE_WITH_NCCL=ON"));
}

TEST(NcclCommunicatorTest, InvalidDeviceFailsOnEveryRankWithoutHanging) {
  if (!NcclCompiledIn()) GTEST_SKIP() << "built without NCCL";
  // Device -1 never exists (and on a machine without GPUs no device does): every rank must get
  // an error, none may wait in ncclCommInitRank for a peer that bailed out.
  auto comm = MakeNcclCommunicator(TestContext(), -1);
  EXPECT_EQ(comm.status().code(), absl::StatusCode::kFailedPrecondition) << comm.status();
  EXPECT_THAT(comm.status().message(), HasSubstr("CUDA device"));
}

}  // namespace
}  // namespace ftune::dist
