// TensorBoard event files (what `--report_to=tensorboard` writes), torch-free and protobuf-free.
//
// A file `events.out.tfevents.<unix seconds, 10 digits>.<hostname>.<pid>.<n>` (PyTorch's and
// tensorboardX's name; TensorBoard needs only "tfevents" in it) is a sequence of TFRecords:
//   u64 LE length | u32 LE masked CRC32C of those 8 bytes | data | u32 LE masked CRC32C of data
// with mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. Each data block is a serialized
// tensorflow.Event (tensorflow/core/util/event.proto): the first has file_version "brain.Event:2",
// each scalar is Event{wall_time, step, summary{value{tag, simple_value}}} as PyTorch's
// SummaryWriter.add_scalar writes it (byte for byte: tests/io/tensorboard_test.cc).
//
// The writer never replaces a file (a name already taken is an error), keeps at most 64 KiB
// unwritten, and reports every write error as a Status naming the file; once a write failed, every
// later call returns that error. Not thread-safe: one writer per process (rank 0).
//
// The reader checks both CRCs of every record and the Event encoding; a violation is an
// absl::DataLossError naming the file, the record index and its byte offset. It returns scalars
// (simple_value) and skips everything else (graphs, images, tensor summaries).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/status.h"

namespace ftune::io {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses it, before masking.
uint32_t Crc32c(absl::string_view data);

class TensorBoardWriter {
 public:
  // Creates `dir` (mkdir -p) and a new event file in it holding the file_version record.
  static absl::StatusOr<std::unique_ptr<TensorBoardWriter>> Open(const std::string& dir);
  // Flushes (best effort; call Flush() to see errors) and closes.
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  const std::string& path() const { return path_; }

  // Appends one scalar; `value` is stored as float (TensorBoard's simple_value), `wall_time` in
  // seconds since the epoch. An empty tag is an InvalidArgumentError.
  absl::Status AddScalar(const std::string& tag, double value, int64_t step, double wall_time);
  // Hands everything added so far to the operating system (TensorBoard then sees it).
  absl::Status Flush();

 private:
  TensorBoardWriter(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  absl::Status AppendRecord(absl::string_view data);

  std::string path_;
  int fd_;
  std::string pending_;
  absl::Status status_;  // the first write error, returned by every later call
};

struct TensorBoardScalar {
  std::string tag;
  int64_t step = 0;
  float value = 0;
  double wall_time = 0;
};

struct TensorBoardEvents {
  std::string file_version;                // "" when the file has no file_version event
  int64_t num_records = 0;                 // every record, scalar or not
  std::vector<TensorBoardScalar> scalars;  // in file order
};

absl::StatusOr<TensorBoardEvents> ReadTensorBoardScalars(const std::string& path);

}  // namespace ftune::io
