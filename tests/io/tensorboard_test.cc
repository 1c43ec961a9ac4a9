#include "io/tensorboard.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ftune::io {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

// Written by PyTorch's torch.utils.tensorboard.SummaryWriter (tests/fixtures/tensorboard/README.md).
const std::string kStrictRun = std::string(FTUNE_FIXTURES_DIR) +
                               "/tensorboard/strict_run_1/events.out.tfevents.1622543341.janoshs-mbp.lan.86862.0";
const std::string kLaxRun =
    std::string(FTUNE_FIXTURES_DIR) + "/tensorboard/lax_run_1/events.out.tfevents.1622543341.janoshs-mbp.lan.86862.3";
// Byte offset of the strict run's third record: record 0 (file_version) has 24 data bytes,
// record 1 (the step-0 scalar) 30, each plus 16 bytes of framing. Record 2 (step 5) has 32.
constexpr size_t kStrictRecord2 = (16 + 24) + (16 + 30);

std::string TempEventDir() {
  char tmpl[] = "/tmp/ftune_tb_test.XXXXXX";
  return mkdtemp(tmpl);
}

std::string WriteBytes(const std::string& bytes) {
  std::string path = TempEventDir() + "/events.out.tfevents.test";
  EXPECT_TRUE(WriteFileAtomic(path, bytes).ok());
  return path;
}

// The TFRecord framing written out independently of the code under test.
std::string Frame(const std::string& data) {
  auto masked = [](const std::string& s) {
    uint32_t c = Crc32c(s);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
  };
  auto le = [](uint64_t v, int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
    return s;
  };
  std::string len = le(data.size(), 8);
  return len + le(masked(len), 4) + data + le(masked(data), 4);
}

TEST(Crc32c, PublishedVectors) {
  // RFC 3720 appendix B.4.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending(32, '\0');
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<char>(i);
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  // The CRC catalogue's check value for CRC-32/ISCSI.
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(TensorBoardReader, ReadsPyTorchSummaryWriterFile) {
  auto events = ReadTensorBoardScalars(kStrictRun);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->file_version, "brain.Event:2");
  // The generator: torch.manual_seed(0); 100 x add_scalar("strict/foo", torch.rand([]) + 1, 5 * step).
  EXPECT_EQ(events->num_records, 101);
  ASSERT_EQ(events->scalars.size(), 100u);
  double sum = 0;
  double last_wall_time = 0;
  for (size_t i = 0; i < events->scalars.size(); ++i) {
    const TensorBoardScalar& s = events->scalars[i];
    EXPECT_EQ(s.tag, "strict/foo");
    EXPECT_EQ(s.step, 5 * static_cast<int64_t>(i));
    EXPECT_GE(s.value, 1.0f);
    EXPECT_LT(s.value, 2.0f);
    // The file name's seconds; events come in time order.
    EXPECT_GE(s.wall_time, 1622543341.0);
    EXPECT_LT(s.wall_time, 1622543342.0);
    EXPECT_GE(s.wall_time, last_wall_time);
    last_wall_time = s.wall_time;
    sum += s.value;
  }
  // torch.manual_seed(0); torch.rand(3) = [0.4963, 0.7682, 0.0885].
  EXPECT_NEAR(events->scalars[0].value, 1.4963, 1e-4);
  EXPECT_NEAR(events->scalars[1].value, 1.7682, 1e-4);
  EXPECT_NEAR(events->scalars[2].value, 1.0885, 1e-4);
  // tensorboard-reducer's own test_load_tb_events_strict: this run's mean is 1.488 (abs 1e-3).
  EXPECT_NEAR(sum / 100, 1.488, 1e-3);
}

TEST(TensorBoardReader, ReadsInterleavedTags) {
  auto events = ReadTensorBoardScalars(kLaxRun);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->file_version, "brain.Event:2");
  // The generator: for step in range(110): add_scalar lax/foo, lax/bar_1, lax/bar_2 (rand + 1).
  EXPECT_EQ(events->num_records, 1 + 3 * 110);
  ASSERT_EQ(events->scalars.size(), 3u * 110u);
  const char* tags[] = {"lax/foo", "lax/bar_1", "lax/bar_2"};
  for (size_t i = 0; i < events->scalars.size(); ++i) {
    const TensorBoardScalar& s = events->scalars[i];
    EXPECT_EQ(s.tag, tags[i % 3]);
    EXPECT_EQ(s.step, static_cast<int64_t>(i / 3));
    EXPECT_GE(s.value, 1.0f);
    EXPECT_LT(s.value, 2.0f);
  }
}

TEST(TensorBoardWriter, WritesWhatPyTorchWrites) {
  auto theirs = ReadFileToString(kStrictRun);
  ASSERT_TRUE(theirs.ok());
  auto events = ReadTensorBoardScalars(kStrictRun);
  ASSERT_TRUE(events.ok()) << events.status();
  std::string path;
  {
    auto w = TensorBoardWriter::Open(TempEventDir());
    ASSERT_TRUE(w.ok()) << w.status();
    for (const TensorBoardScalar& s : events->scalars) {
      ASSERT_TRUE((*w)->AddScalar(s.tag, s.value, s.step, s.wall_time).ok());
    }
    ASSERT_TRUE((*w)->Flush().ok());
    path = (*w)->path();
  }
  auto ours = ReadFileToString(path);
  ASSERT_TRUE(ours.ok());
  // Only record 0 differs: its wall_time is the time the file was opened.
  constexpr size_t kRecord1 = 16 + 24;
  ASSERT_EQ(ours->size(), theirs->size());
  EXPECT_TRUE(ours->substr(kRecord1) == theirs->substr(kRecord1)) << "event records differ from PyTorch's bytes";
  // Record 0: the same length and file_version bytes around the 8 bytes of wall_time.
  EXPECT_EQ(ours->substr(0, 8), theirs->substr(0, 8));
  EXPECT_EQ(ours->substr(12, 1), theirs->substr(12, 1));
  EXPECT_EQ(ours->substr(21, 15), theirs->substr(21, 15));
}

TEST(TensorBoardWriter, RoundTrip) {
  std::string dir = TempEventDir() + "/runs/a";  // created on demand
  auto w = TensorBoardWriter::Open(dir);
  ASSERT_TRUE(w.ok()) << w.status();
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  EXPECT_THAT(std::filesystem::path((*w)->path()).filename().string(),
              MatchesRegex(absl::StrFormat("events\\.out\\.tfevents\\.[0-9]{10}\\.%s\\.%d\\.[0-9]+", host, getpid())));
  EXPECT_EQ(std::filesystem::path((*w)->path()).parent_path().string(), dir);

  std::vector<TensorBoardScalar> want = {
      {"train/loss", 0, 0.6931f, 1700000000.25},
      {"train/loss", 1, 0.0f, 1700000000.5},
      {"eval/accuracy", 300, 0.875f, 1700000001.0},
      {"train/learning_rate", int64_t{1} << 40, 2e-5f, 1700000002.0},
      {"negative/step", -7, -1.5f, 1700000003.0},
      {std::string(200, 'x') + "/long tag, 2-byte length", 128, 3.0e38f, 1700000004.0},
      {"utf8/é", 127, -0.0f, 1700000005.0},
  };
  for (const auto& s : want) ASSERT_TRUE((*w)->AddScalar(s.tag, s.value, s.step, s.wall_time).ok());
  // A double is stored as TensorBoard's float.
  ASSERT_TRUE((*w)->AddScalar("double", 0.1, 9, 1700000006.0).ok());
  want.push_back({"double", 9, 0.1f, 1700000006.0});
  ASSERT_TRUE((*w)->Flush().ok());

  auto got = ReadTensorBoardScalars((*w)->path());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->file_version, "brain.Event:2");
  EXPECT_EQ(got->num_records, static_cast<int64_t>(want.size()) + 1);
  ASSERT_EQ(got->scalars.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(want[i].tag);
    EXPECT_EQ(got->scalars[i].tag, want[i].tag);
    EXPECT_EQ(got->scalars[i].step, want[i].step);
    EXPECT_EQ(std::memcmp(&got->scalars[i].value, &want[i].value, sizeof(float)), 0);  // bit-exact, -0 too
    EXPECT_EQ(got->scalars[i].wall_time, want[i].wall_time);
  }
  EXPECT_TRUE((*w)->AddScalar("", 1.0, 0, 0).code() == absl::StatusCode::kInvalidArgument);
}

TEST(TensorBoardWriter, NeverReplacesAFile) {
  std::string dir = TempEventDir();
  auto a = TensorBoardWriter::Open(dir);
  auto b = TensorBoardWriter::Open(dir);  // the same second, the same process
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE((*a)->path(), (*b)->path());
  ASSERT_TRUE((*a)->AddScalar("a", 1, 1, 1).ok());
  ASSERT_TRUE((*b)->AddScalar("b", 2, 2, 2).ok());
  a->reset();  // the destructor flushes
  b->reset();
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    auto events = ReadTensorBoardScalars(entry.path().string());
    ASSERT_TRUE(events.ok()) << events.status();
    ASSERT_EQ(events->scalars.size(), 1u);
    ++files;
  }
  EXPECT_EQ(files, 2);
}

TEST(TensorBoardWriter, BadDirectoryIsAnErrorNamingIt) {
  std::string file = TempEventDir() + "/plain_file";
  ASSERT_TRUE(WriteFileAtomic(file, "x").ok());
  auto w = TensorBoardWriter::Open(file + "/logs");
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(std::string(w.status().message()), HasSubstr(file));
  EXPECT_EQ(TensorBoardWriter::Open("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TensorBoardReader, NamesTheBadRecordAndItsOffset) {
  auto original = ReadFileToString(kStrictRun);
  ASSERT_TRUE(original.ok());
  const std::string at = absl::StrFormat("record 2 at byte offset %d: ", kStrictRecord2);
  struct Case {
    const char* what;
    std::string bytes;
    std::string error;
  };
  auto flip = [&](size_t offset) {
    std::string b = *original;
    b[offset] ^= 0x01;
    return b;
  };
  std::vector<Case> cases = {
      {"length byte", flip(kStrictRecord2 + 0), at + "length CRC mismatch"},
      {"length CRC byte", flip(kStrictRecord2 + 9), at + "length CRC mismatch"},
      {"data byte", flip(kStrictRecord2 + 12 + 20), at + "data CRC mismatch"},
      {"data CRC byte", flip(kStrictRecord2 + 12 + 32 + 3), at + "data CRC mismatch"},
      {"cut in the header", original->substr(0, kStrictRecord2 + 5), at + "truncated record header"},
      {"cut in the data", original->substr(0, kStrictRecord2 + 20),
       at + "a 32-byte record and its CRC run past the end of the file (8 bytes left"},
      {"cut in the data CRC", original->substr(0, kStrictRecord2 + 12 + 32 + 2),
       at + "a 32-byte record and its CRC run past the end of the file (34 bytes left"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::string path = WriteBytes(c.bytes);
    auto events = ReadTensorBoardScalars(path);
    ASSERT_FALSE(events.ok());
    EXPECT_EQ(events.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(events.status().message()), HasSubstr(path + ": " + c.error));
  }
}

TEST(TensorBoardReader, RejectsMalformedEventsWithValidCrcs) {
  struct Case {
    const char* what;
    std::string data;
    std::string error;
  };
  std::vector<Case> cases = {
      {"group wire type", std::string("\x0b", 1), "field 1 has wire type 3"},
      {"truncated varint", std::string("\x10\x80", 2), "truncated varint"},
      {"length past the end",
       std::string("\x1a\x05"
                   "ab",
                   4),
       "field 3 claims 5 bytes, 2 are left"},
      {"step as a string", std::string("\x12\x00", 2), "Event field 2 has wire type 2, expected 0"},
      {"simple_value as a double",
       std::string("\x2a\x0b\x0a\x09\x11"
                   "12345678",
                   13),
       "Summary.Value field 2 has wire type 1, expected 5"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::string good =
        Frame(std::string("\x1a\x0d"
                          "brain.Event:2",
                          15));
    std::string path = WriteBytes(good + Frame(c.data));
    auto events = ReadTensorBoardScalars(path);
    ASSERT_FALSE(events.ok());
    EXPECT_EQ(events.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(events.status().message()),
                HasSubstr(absl::StrFormat("record 1 at byte offset %d: not a tensorflow.Event: %s", 15 + 16, c.error)));
  }
}

TEST(TensorBoardReader, SkipsWhatIsNotAScalar) {
  // An Event with step 3, a log_message (field 6), and a summary holding one image value (tag
  // "img", image field 4) and one scalar; unknown fields are skipped as protobuf does.
  std::string image_value = std::string("\x0a\x03img\x22\x02\x08\x01", 9);
  std::string scalar_value = std::string("\x0a\x01s\x15\x00\x00\x80\x3f", 8);  // 1.0f
  std::string summary = "\x0a" + std::string(1, static_cast<char>(image_value.size())) + image_value + "\x0a" +
                        std::string(1, static_cast<char>(scalar_value.size())) + scalar_value;
  std::string event =
      std::string("\x10\x03\x32\x02\x08\x01", 6) + "\x2a" + std::string(1, static_cast<char>(summary.size())) + summary;
  std::string path = WriteBytes(Frame(event));
  auto events = ReadTensorBoardScalars(path);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->file_version, "");
  EXPECT_EQ(events->num_records, 1);
  ASSERT_EQ(events->scalars.size(), 1u);
  EXPECT_EQ(events->scalars[0].tag, "s");
  EXPECT_EQ(events->scalars[0].step, 3);
  EXPECT_EQ(events->scalars[0].value, 1.0f);
  EXPECT_EQ(events->scalars[0].wall_time, 0.0);
}

TEST(TensorBoardReader, MissingFileIsNotFound) {
  auto events = ReadTensorBoardScalars("/nonexistent/events.out.tfevents.1");
  EXPECT_EQ(events.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(events.status().message()), HasSubstr("/nonexistent/events.out.tfevents.1"));
}

}  // namespace
}  // namespace ftune::io
