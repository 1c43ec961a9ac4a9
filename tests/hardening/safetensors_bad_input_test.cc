// Bad safetensors files through SafetensorsFile::Open (the mmap path), and bad tensors given to the
// writer. Reader: DataLoss (InvalidArgument for a non-file) with one line naming the file and the
// tensor. Writer: InvalidArgument, and the directory is left exactly as it was.
// Already covered in tests/io/safetensors_test.cc (MalformedFilesGiveClearErrors and
// TruncatedCheckpointIsRejectedAtEveryLength), not repeated here: too short, header length past the
// end of the file or over the 100 MB limit, non-JSON / non-object header, entry not an object,
// missing or unsupported dtype, negative dim, size mismatch, offsets past the data, reversed
// offsets, overlap, hole, trailing bytes, duplicate key, absurd shape, non-string metadata, a real
// checkpoint cut at every interesting length, missing file.
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hardening_util.h"
#include "io/safetensors.h"
#include "tests/data-prep/test_util.h"

namespace ftune::hardening {
namespace {

using ::ftune::prep::testing::TempDir;
using namespace std::string_literals;

std::string Image(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

struct BadFile {
  const char* name;
  std::string image;
  std::string message;
};

void PrintTo(const BadFile& c, std::ostream* os) { *os << c.name; }

class SafetensorsBadFile : public ::testing::TestWithParam<BadFile> {};

TEST_P(SafetensorsBadFile, OpenFailsOnOneLineNamingTheFile) {
  TempDir dir;
  const std::string path = dir.Write("model.safetensors", GetParam().image);
  auto f = io::SafetensorsFile::Open(path);
  EXPECT_TRUE(IsOneLineError(f.status(), absl::StatusCode::kDataLoss,
                             {path + ": not a valid safetensors file: ", GetParam().message}));
}

const std::string kF32x2 = R"("dtype":"F32","shape":[2])";
const std::string k8 = std::string(8, '\1');

INSTANTIATE_TEST_SUITE_P(
    Cases, SafetensorsBadFile,
    ::testing::Values(
        BadFile{"EmptyFile", "", "0 bytes is too short"},
        BadFile{"HeaderLengthAllOnes", std::string(8, '\xff') + "{}", "header length 18446744073709551615 exceeds"},
        BadFile{"HeaderNotUtf8", Image("{\"\xff\xfe\":1}", ""), "header is not JSON"},
        BadFile{"HeaderTrailingGarbage", Image("{} x", ""), "header is not JSON"},
        BadFile{"HeaderNulPadded", Image("{}"s + std::string(6, '\0'), ""),
                "header is not JSON (NUL byte at offset 2 of the header)"},
        BadFile{"HeaderNulThenMoreJson",  // nlohmann alone would stop at the NUL and accept "{}"
                Image("{}\0{\"a\":{\"dtype\":\"X\"}}"s, ""), "NUL byte at offset 2 of the header"},
        BadFile{"ShapeNotArray", Image(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", k8),
                "tensor \"a\": missing or non-array \"shape\""},
        BadFile{"OffsetsOneNumber", Image(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[8]}})", k8),
                "tensor \"a\": \"data_offsets\" must be [begin, end]"},
        BadFile{"OffsetsThreeNumbers", Image(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[0,4,8]}})", k8),
                "\"data_offsets\" must be [begin, end]"},
        BadFile{"OffsetsFloat", Image(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[0.0,8.0]}})", k8),
                "data_offsets must be non-negative integers"},
        BadFile{"OffsetsNegative", Image(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[-8,0]}})", k8),
                "data_offsets must be non-negative integers"},
        BadFile{"OffsetBeyondUint64", Image(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[0,1e30]}})", k8),
                "data_offsets must be non-negative integers"},
        BadFile{"OffsetsNearUint64Max",
                Image(R"({"a":{)" + kF32x2 + R"(,"data_offsets":[18446744073709551608,18446744073709551615]}})", k8),
                "run past the 8-byte data section"},
        BadFile{"Rank17",
                Image(R"({"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],)"
                      R"("data_offsets":[0,1]}})",
                      "z"),
                "rank 17 is above 16"},
        BadFile{"DtypeLowercase", Image(R"({"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", k8),
                "unsupported dtype \"f32\""},
        BadFile{"DtypeNotString", Image(R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", k8),
                "missing or non-string \"dtype\""},
        BadFile{"Float16SizeMismatch", Image(R"({"a":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}})", k8),
                "F16 with shape of 3 elements needs 6 bytes but data_offsets span 8"},
        BadFile{"ZeroDimButBytes", Image(R"({"a":{"dtype":"F32","shape":[0,4],"data_offsets":[0,8]}})", k8),
                "needs 0 bytes but data_offsets span 8"},
        BadFile{"OverlapContained",
                Image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                      R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                      std::string(16, '\0')),
                "tensor \"b\" overlaps the tensor before it"},
        BadFile{"MetadataNotObject", Image(R"({"__metadata__":"pt"})", ""), "__metadata__ is not an object"},
        BadFile{"MetadataTwice", Image(R"({"__metadata__":{},"__metadata__":{}})", ""),
                "tensor \"__metadata__\" appears twice"},
        BadFile{"NameWithControlCharacters",
                Image(R"({"a\nb\u001b[2J\u0000":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", k8),
                R"(tensor "a\nb\x1b[2J\x00": F32 with shape of 3 elements needs 12 bytes)"},
        BadFile{"HugeName",
                Image(R"({")" + std::string(1 << 20, 'n') + R"(":{"dtype":"X","shape":[],"data_offsets":[0,0]}})", ""),
                std::string(64, 'n') + "...(1048576 bytes)\": unsupported dtype \"X\""},
        BadFile{"HugeDtypeString",
                Image(R"({"a":{"dtype":")" + std::string(1 << 20, 'd') + R"(","shape":[],"data_offsets":[0,0]}})", ""),
                "unsupported dtype \"" + std::string(64, 'd') + "...(1048576 bytes)\""},
        BadFile{"DeeplyNestedHeader", Image(std::string(100000, '[') + std::string(100000, ']'), ""),
                "header is not a JSON object"}),
    [](const ::testing::TestParamInfo<BadFile>& info) { return std::string(info.param.name); });

TEST(SafetensorsBadFile, DirectoryIsNotARegularFile) {
  TempDir dir;
  auto f = io::SafetensorsFile::Open(dir.path());
  EXPECT_TRUE(IsOneLineError(f.status(), absl::StatusCode::kInvalidArgument, {dir.path(), "not a regular file"}));
}

TEST(SafetensorsBadFile, ZeroSizedTensorsMayShareAnOffset) {
  // Not an error (the reference implementation accepts it): empty tensors take no bytes.
  auto f = io::SafetensorsFile::FromBuffer(
      Image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"I8","shape":[2,0],)"
            R"("data_offsets":[0,0]}})",
            ""),
      "empty.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->tensors().size(), 2u);
}

// ---- The writer: bad tensors are refused before anything touches the disk.

struct BadWrite {
  const char* name;
  std::vector<io::TensorToWrite> tensors;
  const char* message;
};

void PrintTo(const BadWrite& c, std::ostream* os) { *os << c.name; }

const float kData[4] = {1, 2, 3, 4};

class SafetensorsBadWrite : public ::testing::TestWithParam<BadWrite> {};

TEST_P(SafetensorsBadWrite, RefusedAndTheDirectoryIsUnchanged) {
  for (bool existing : {false, true}) {
    TempDir dir;
    if (existing) dir.Write("model.safetensors", "previous contents");
    const auto before = Snapshot(dir.path());
    absl::Status st = io::WriteSafetensors(dir / "model.safetensors", GetParam().tensors);
    EXPECT_TRUE(IsOneLineError(st, absl::StatusCode::kInvalidArgument, {GetParam().message}));
    EXPECT_EQ(Snapshot(dir.path()), before) << "existing file: " << existing;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SafetensorsBadWrite,
    ::testing::Values(BadWrite{"DuplicateName",
                               {{"w", io::DType::kF32, {2}, kData}, {"w", io::DType::kF32, {2}, kData + 2}},
                               "tensor \"w\" given twice"},
                      BadWrite{
                          "NegativeDim", {{"w", io::DType::kF32, {-1, 4}, kData}}, "tensor \"w\" has a negative dim"},
                      BadWrite{"NamedLikeTheMetadata",
                               {{"__metadata__", io::DType::kF32, {1}, kData}},
                               "a tensor cannot be named __metadata__"}),
    [](const ::testing::TestParamInfo<BadWrite>& info) { return std::string(info.param.name); });

TEST(SafetensorsBadWrite, UnwritableDirectoryLeavesNothing) {
  TempDir dir;
  absl::Status st = io::WriteSafetensors(dir / "missing/model.safetensors", {{"w", io::DType::kF32, {1}, kData}});
  EXPECT_TRUE(IsOneLineError(st, absl::StatusCode::kNotFound, {"cannot create", "missing/model.safetensors"}));
  EXPECT_TRUE(Snapshot(dir.path()).empty());
}

}  // namespace
}  // namespace ftune::hardening
