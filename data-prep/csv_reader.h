// RFC 4180 CSV over an in-memory buffer: quoted fields with embedded quotes (""), commas and
// newlines; CRLF, LF or CR line ends; a leading UTF-8 BOM is skipped; lines that are entirely
// empty are skipped (like Python's csv module). Errors are InvalidArgument and name
// "<file>:<line>" (1-based physical line where the problem is).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/status.h"

namespace ftune::prep {

class CsvReader {
 public:
  // `name` is used in messages; `data` must outlive the reader. Validates UTF-8 up front.
  static absl::StatusOr<CsvReader> Create(std::string name, absl::string_view data);

  // Reads the next record into *fields. Returns false at the end of the input.
  // *line is the physical line the record starts on.
  absl::StatusOr<bool> Next(std::vector<std::string>* fields, int64_t* line);

  const std::string& name() const { return name_; }
  size_t bytes_consumed() const { return pos_; }
  size_t bytes_total() const { return data_.size(); }

 private:
  CsvReader(std::string name, absl::string_view data) : name_(std::move(name)), data_(data) {}
  absl::Status Error(int64_t line, absl::string_view what) const;

  std::string name_;
  absl::string_view data_;
  size_t pos_ = 0;
  int64_t line_ = 1;
};

// Where a byte offset falls: 1-based line and column (in bytes).
void LineAndColumn(absl::string_view data, size_t offset, int64_t* line, int64_t* column);

}  // namespace ftune::prep
