#include "io/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/str_format.h"
#include "common/files.h"

namespace ftune::io {
namespace {

constexpr size_t kFlushBytes = 64 * 1024;
constexpr char kFileVersion[] = "brain.Event:2";

// Protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// Field numbers of tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto.
constexpr uint32_t kEventWallTime = 1;     // double
constexpr uint32_t kEventStep = 2;         // int64
constexpr uint32_t kEventFileVersion = 3;  // string
constexpr uint32_t kEventSummary = 5;      // Summary
constexpr uint32_t kSummaryValue = 1;      // repeated Summary.Value
constexpr uint32_t kValueTag = 1;          // string
constexpr uint32_t kValueSimpleValue = 2;  // float

// Table-driven, one byte at a time: event records are tens of bytes. (Debian 12 packages no C/C++
// CRC32C library, only python3-crc32c.)
constexpr std::array<uint32_t, 256> MakeCrc32cTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = MakeCrc32cTable();

// TFRecord stores masked CRCs: a CRC of data that itself holds CRCs is then not degenerate.
uint32_t MaskedCrc(absl::string_view data) {
  uint32_t crc = Crc32c(data);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

void PutFixed32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutFixed64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
void PutKey(std::string* out, uint32_t field, WireType wire) { PutVarint(out, (uint64_t{field} << 3) | wire); }
void PutBytesField(std::string* out, uint32_t field, absl::string_view bytes) {
  PutKey(out, field, kLengthDelimited);
  PutVarint(out, bytes.size());
  out->append(bytes.data(), bytes.size());
}
void PutDoubleField(std::string* out, uint32_t field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  PutKey(out, field, kFixed64);
  PutFixed64(out, bits);
}

// Event{wall_time, step, ...}; proto3 leaves out a zero step, as TensorFlow and PyTorch do.
std::string EventHeader(double wall_time, int64_t step) {
  std::string event;
  PutDoubleField(&event, kEventWallTime, wall_time);
  if (step != 0) {
    PutKey(&event, kEventStep, kVarint);
    PutVarint(&event, static_cast<uint64_t>(step));
  }
  return event;
}

uint32_t LoadFixed32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
uint64_t LoadFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// One field of a protobuf message: `varint` for kVarint, `bytes` for the others.
struct Field {
  uint32_t number = 0;
  uint32_t wire = 0;
  uint64_t varint = 0;
  absl::string_view bytes;
};

bool ReadVarint(absl::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in->empty()) return false;
    uint8_t b = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    if (shift == 63 && b > 1) return false;  // more than 64 bits
    *v |= uint64_t{b & 0x7fu} << shift;
    if (b < 0x80) return true;
  }
  return false;
}

// Takes the next field off `in`; an error says what is wrong with the encoding.
absl::Status NextField(absl::string_view* in, Field* f) {
  uint64_t key;
  if (!ReadVarint(in, &key)) return absl::DataLossError("truncated or overlong field key");
  f->number = static_cast<uint32_t>(key >> 3);
  f->wire = static_cast<uint32_t>(key & 7);
  if (f->number == 0 || (key >> 3) > 0x1fffffff) return absl::DataLossError("invalid field number");
  size_t n = 0;
  switch (f->wire) {
    case kVarint:
      if (!ReadVarint(in, &f->varint)) return absl::DataLossError("truncated varint");
      return absl::OkStatus();
    case kFixed64: n = 8; break;
    case kFixed32: n = 4; break;
    case kLengthDelimited: {
      uint64_t len;
      if (!ReadVarint(in, &len)) return absl::DataLossError("truncated length");
      if (len > in->size()) {
        return absl::DataLossError(
            absl::StrFormat("field %d claims %d bytes, %d are left", f->number, len, in->size()));
      }
      n = static_cast<size_t>(len);
      break;
    }
    default:
      return absl::DataLossError(
          absl::StrFormat("field %d has wire type %d (groups are not used by Event)", f->number, f->wire));
  }
  if (n > in->size()) return absl::DataLossError(absl::StrFormat("field %d is truncated", f->number));
  f->bytes = in->substr(0, n);
  in->remove_prefix(n);
  return absl::OkStatus();
}

absl::Status ExpectWire(const Field& f, absl::string_view message, WireType wire) {
  if (f.wire == wire) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrFormat("%s field %d has wire type %d, expected %d", message, f.number, f.wire, wire));
}

// Appends the simple_value entries of a Summary to `scalars` (tag and value only).
absl::Status ParseSummary(absl::string_view summary, std::vector<TensorBoardScalar>* scalars) {
  while (!summary.empty()) {
    Field f;
    FTUNE_RETURN_IF_ERROR(NextField(&summary, &f));
    if (f.number != kSummaryValue) continue;
    FTUNE_RETURN_IF_ERROR(ExpectWire(f, "Summary", kLengthDelimited));
    absl::string_view value = f.bytes;
    TensorBoardScalar s;
    bool has_simple_value = false;
    while (!value.empty()) {
      Field g;
      FTUNE_RETURN_IF_ERROR(NextField(&value, &g));
      if (g.number == kValueTag) {
        FTUNE_RETURN_IF_ERROR(ExpectWire(g, "Summary.Value", kLengthDelimited));
        s.tag = std::string(g.bytes);
      } else if (g.number == kValueSimpleValue) {
        FTUNE_RETURN_IF_ERROR(ExpectWire(g, "Summary.Value", kFixed32));
        uint32_t bits = LoadFixed32(g.bytes.data());
        std::memcpy(&s.value, &bits, sizeof bits);
        has_simple_value = true;
      }
    }
    if (has_simple_value) scalars->push_back(std::move(s));
  }
  return absl::OkStatus();
}

absl::Status ParseEvent(absl::string_view event, TensorBoardEvents* out) {
  double wall_time = 0;
  int64_t step = 0;
  std::vector<TensorBoardScalar> scalars;
  while (!event.empty()) {
    Field f;
    FTUNE_RETURN_IF_ERROR(NextField(&event, &f));
    switch (f.number) {
      case kEventWallTime: {
        FTUNE_RETURN_IF_ERROR(ExpectWire(f, "Event", kFixed64));
        uint64_t bits = LoadFixed64(f.bytes.data());
        std::memcpy(&wall_time, &bits, sizeof bits);
        break;
      }
      case kEventStep:
        FTUNE_RETURN_IF_ERROR(ExpectWire(f, "Event", kVarint));
        step = static_cast<int64_t>(f.varint);
        break;
      case kEventFileVersion:
        FTUNE_RETURN_IF_ERROR(ExpectWire(f, "Event", kLengthDelimited));
        if (out->file_version.empty()) out->file_version = std::string(f.bytes);
        break;
      case kEventSummary:
        FTUNE_RETURN_IF_ERROR(ExpectWire(f, "Event", kLengthDelimited));
        FTUNE_RETURN_IF_ERROR(ParseSummary(f.bytes, &scalars));
        break;
      default: break;  // graph_def, log_message, session_log, ...
    }
  }
  // Fields may come in any order, so step and wall_time are known only now.
  for (TensorBoardScalar& s : scalars) {
    s.step = step;
    s.wall_time = wall_time;
    out->scalars.push_back(std::move(s));
  }
  return absl::OkStatus();
}

}  // namespace

uint32_t Crc32c(absl::string_view data) {
  uint32_t crc = 0xffffffffu;
  for (char c : data) crc = kCrc32cTable[(crc ^ static_cast<uint8_t>(c)) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

absl::StatusOr<std::unique_ptr<TensorBoardWriter>> TensorBoardWriter::Open(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("TensorBoard log directory is empty");
  FTUNE_RETURN_IF_ERROR(MakeDirs(dir));
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  // pid and a per-process counter keep two writers opened in the same second apart.
  static std::atomic<int> counter{0};
  std::string path = absl::StrFormat("%s/events.out.tfevents.%010d.%s.%d.%d", dir, static_cast<int64_t>(now.tv_sec),
                                     host, static_cast<int>(getpid()), counter++);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create TensorBoard event file", path);
  std::unique_ptr<TensorBoardWriter> writer(new TensorBoardWriter(path, fd));
  std::string event = EventHeader(static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec), 0);
  PutBytesField(&event, kEventFileVersion, kFileVersion);
  FTUNE_RETURN_IF_ERROR(writer->AppendRecord(event));
  FTUNE_RETURN_IF_ERROR(writer->Flush());
  return writer;
}

TensorBoardWriter::~TensorBoardWriter() {
  Flush().IgnoreError();
  close(fd_);
}

absl::Status TensorBoardWriter::AddScalar(const std::string& tag, double value, int64_t step, double wall_time) {
  FTUNE_RETURN_IF_ERROR(status_);
  if (tag.empty()) return absl::InvalidArgumentError(absl::StrFormat("%s: empty scalar tag", path_));
  std::string summary_value;
  PutBytesField(&summary_value, kValueTag, tag);
  uint32_t bits;
  float f = static_cast<float>(value);
  std::memcpy(&bits, &f, sizeof bits);
  PutKey(&summary_value, kValueSimpleValue, kFixed32);
  PutFixed32(&summary_value, bits);
  std::string summary;
  PutBytesField(&summary, kSummaryValue, summary_value);
  std::string event = EventHeader(wall_time, step);
  PutBytesField(&event, kEventSummary, summary);
  return AppendRecord(event);
}

absl::Status TensorBoardWriter::AppendRecord(absl::string_view data) {
  FTUNE_RETURN_IF_ERROR(status_);
  size_t header_at = pending_.size();
  PutFixed64(&pending_, data.size());
  PutFixed32(&pending_, MaskedCrc(absl::string_view(pending_).substr(header_at, 8)));
  pending_.append(data.data(), data.size());
  PutFixed32(&pending_, MaskedCrc(data));
  return pending_.size() >= kFlushBytes ? Flush() : absl::OkStatus();
}

absl::Status TensorBoardWriter::Flush() {
  FTUNE_RETURN_IF_ERROR(status_);
  size_t done = 0;
  while (done < pending_.size()) {
    ssize_t n = write(fd_, pending_.data() + done, pending_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      status_ = ErrnoError("cannot write TensorBoard event file", path_);
      pending_.clear();
      return status_;
    }
    done += static_cast<size_t>(n);
  }
  pending_.clear();
  return absl::OkStatus();
}

absl::StatusOr<TensorBoardEvents> ReadTensorBoardScalars(const std::string& path) {
  FTUNE_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  TensorBoardEvents out;
  size_t offset = 0;
  while (offset < bytes.size()) {
    auto bad = [&](const std::string& what) {
      return absl::DataLossError(
          absl::StrFormat("%s: record %d at byte offset %d: %s", path, out.num_records, offset, what));
    };
    size_t left = bytes.size() - offset;
    if (left < 12) return bad(absl::StrFormat("truncated record header (%d bytes left, a header has 12)", left));
    const char* p = bytes.data() + offset;
    uint32_t stored = LoadFixed32(p + 8);
    uint32_t computed = MaskedCrc(absl::string_view(p, 8));
    if (stored != computed) {
      return bad(absl::StrFormat("length CRC mismatch (stored 0x%08x, computed 0x%08x)", stored, computed));
    }
    uint64_t len = LoadFixed64(p);
    if (len > left - 12 || left - 12 - len < 4) {
      return bad(
          absl::StrFormat("a %d-byte record and its CRC run past the end of the file (%d bytes left after its header)",
                          len, left - 12));
    }
    absl::string_view data(p + 12, static_cast<size_t>(len));
    stored = LoadFixed32(p + 12 + len);
    computed = MaskedCrc(data);
    if (stored != computed) {
      return bad(absl::StrFormat("data CRC mismatch (stored 0x%08x, computed 0x%08x)", stored, computed));
    }
    absl::Status st = ParseEvent(data, &out);
    if (!st.ok()) return bad(absl::StrCat("not a tensorflow.Event: ", st.message()));
    offset += 16 + static_cast<size_t>(len);
    ++out.num_records;
  }
  return out;
}

}  // namespace ftune::io
