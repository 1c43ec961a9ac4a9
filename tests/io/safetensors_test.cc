#include "io/safetensors.h"

#include <cstring>
#include <string>
#include <vector>

#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::io {
namespace {

using ::testing::HasSubstr;

const std::string kTinyCls = std::string(FTUNE_FIXTURES_DIR) + "/hf/hf-tiny-cls/model.safetensors";

std::string TestDir() {
  char tmpl[] = "/tmp/ftune_st_test.XXXXXX";
  return mkdtemp(tmpl);
}

// Builds a file image from a raw header string and a data section.
std::string Image(const std::string& header, const std::string& data, uint64_t declared_len = UINT64_MAX) {
  uint64_t n = declared_len == UINT64_MAX ? header.size() : declared_len;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

absl::Status ParseImage(const std::string& image) {
  return SafetensorsFile::FromBuffer(image, "test.safetensors").status();
}

TEST(Safetensors, ReadsHuggingFaceCheckpoint) {
  auto f = SafetensorsFile::Open(kTinyCls);
  ASSERT_TRUE(f.ok()) << f.status();
  // hf-tiny-cls: 2 layers x 16 tensors + 4 embedding + 4 head tensors.
  EXPECT_EQ((*f)->tensors().size(), 40u);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  auto w = (*f)->Get("distilbert.embeddings.word_embeddings.weight");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->dtype, DType::kF32);
  EXPECT_EQ((*w)->shape, (std::vector<int64_t>{1000, 32}));
  EXPECT_EQ((*w)->nbytes, 1000u * 32u * 4u);
  EXPECT_EQ((*f)->Get("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(Safetensors, RoundTripIsBitExact) {
  auto f = SafetensorsFile::Open(kTinyCls);
  ASSERT_TRUE(f.ok());
  std::vector<TensorToWrite> out;
  for (const auto& [name, t] : (*f)->tensors()) out.push_back({name, t.dtype, t.shape, t.data});
  std::string path = TestDir() + "/copy.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, out).ok());
  auto g = SafetensorsFile::Open(path);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_EQ((*g)->tensors().size(), (*f)->tensors().size());
  for (const auto& [name, t] : (*f)->tensors()) {
    const TensorView& u = (*g)->tensors().at(name);
    EXPECT_EQ(u.shape, t.shape) << name;
    ASSERT_EQ(u.nbytes, t.nbytes) << name;
    EXPECT_EQ(std::memcmp(u.data, t.data, t.nbytes), 0) << name;
  }
  // Same tensors in the same (sorted) order with the same metadata: the file itself is identical.
  auto a = ReadFileToString(kTinyCls), b = ReadFileToString(path);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(Sha256Hex(*a), Sha256Hex(*b));
}

TEST(Safetensors, AllDtypesRoundTrip) {
  std::vector<uint8_t> buf(64);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(i * 7);
  std::vector<TensorToWrite> out;
  for (auto d : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64, DType::kI32, DType::kI8, DType::kU8,
                 DType::kBool}) {
    out.push_back({std::string(DTypeName(d)), d, {2, 2}, buf.data()});
  }
  auto bytes = SerializeSafetensors(out, {});
  ASSERT_TRUE(bytes.ok());
  auto f = SafetensorsFile::FromBuffer(*bytes, "mem");
  ASSERT_TRUE(f.ok()) << f.status();
  for (const auto& t : out) {
    const TensorView& v = (*f)->tensors().at(t.name);
    EXPECT_EQ(v.dtype, t.dtype);
    EXPECT_EQ(v.nbytes, 4 * DTypeSize(t.dtype));
    EXPECT_EQ(std::memcmp(v.data, buf.data(), v.nbytes), 0);
  }
}

TEST(Safetensors, HeaderIsPaddedToEightBytes) {
  float x = 1.0f;
  auto bytes = SerializeSafetensors({{"a", DType::kF32, {1}, &x}}, {{"format", "pt"}});
  ASSERT_TRUE(bytes.ok());
  uint64_t n = 0;
  std::memcpy(&n, bytes->data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes->size(), 8 + n + 4);
}

struct Malformed {
  const char* name;
  std::string image;
  const char* message;
};

std::vector<Malformed> MalformedCases() {
  const std::string f32x2 = R"("dtype":"F32","shape":[2])";
  const std::string data(8, '\1');
  return {
      {"too_short", std::string("\x05\0\0", 3), "too short"},
      {"header_past_eof", Image("{}", "", 1000), "runs past the end"},
      {"header_over_limit", Image("{}", "", kMaxHeaderBytes + 1), "exceeds"},
      {"not_json", Image("{not json", ""), "not JSON"},
      {"not_object", Image("[1,2]", ""), "not a JSON object"},
      {"entry_not_object", Image(R"({"a":3})", ""), "entry is not an object"},
      {"missing_dtype", Image(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", data), "dtype"},
      {"bad_dtype", Image(R"({"a":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}})", data), "unsupported dtype"},
      {"negative_shape", Image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data), "non-negative"},
      {"size_mismatch", Image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data), "needs 12 bytes"},
      {"offsets_past_data", Image(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]}})", "1234"),
       "run past the 4-byte data section"},
      {"reversed_offsets", Image(R"({"a":{)" + f32x2 + R"(,"data_offsets":[8,0]}})", data), "reversed"},
      {"overlap",
       Image(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]},"b":{)" + f32x2 + R"(,"data_offsets":[4,12]}})",
             data + "1234"),
       "overlaps"},
      {"hole", Image(R"({"a":{)" + f32x2 + R"(,"data_offsets":[4,12]}})", data + "1234"), "unaccounted"},
      {"trailing_bytes", Image(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]}})", data + "xx"), "tensors cover 8"},
      {"duplicate_key",
       Image(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]},"a":{)" + f32x2 + R"(,"data_offsets":[0,8]}})", data),
       "appears twice"},
      {"huge_shape", Image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data),
       "absurdly large"},
      {"bad_metadata", Image(R"({"__metadata__":{"format":3}})", ""), "__metadata__.format"},
  };
}

TEST(Safetensors, MalformedFilesGiveClearErrors) {
  for (const Malformed& m : MalformedCases()) {
    absl::Status st = ParseImage(m.image);
    EXPECT_FALSE(st.ok()) << m.name;
    EXPECT_THAT(std::string(st.message()), HasSubstr(m.message)) << m.name << ": " << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr("test.safetensors")) << m.name;
  }
}

TEST(Safetensors, TruncatedCheckpointIsRejectedAtEveryLength) {
  auto full = ReadFileToString(kTinyCls);
  ASSERT_TRUE(full.ok());
  std::string dir = TestDir();
  // Every prefix: header cut, data cut. None may crash or be accepted.
  for (size_t len :
       {size_t{0}, size_t{7}, size_t{8}, size_t{100}, size_t{4431}, size_t{4432}, size_t{5000}, full->size() - 1}) {
    std::string path = dir + "/cut.safetensors";
    ASSERT_TRUE(WriteFileAtomic(path, full->substr(0, len)).ok());
    auto f = SafetensorsFile::Open(path);
    EXPECT_FALSE(f.ok()) << "length " << len;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status();
    EXPECT_THAT(std::string(f.status().message()), HasSubstr(path));
  }
}

TEST(Safetensors, MissingFileIsNotFound) {
  auto f = SafetensorsFile::Open("/nonexistent/model.safetensors");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
}

TEST(Safetensors, WriterRejectsDuplicateNames) {
  float x = 0;
  auto st = WriteSafetensors(TestDir() + "/d.safetensors", {{"a", DType::kF32, {1}, &x}, {"a", DType::kF32, {1}, &x}});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ftune::io
