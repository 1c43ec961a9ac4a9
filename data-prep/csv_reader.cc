#include "data-prep/csv_reader.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "common/utf8.h"

namespace ftune::prep {

void LineAndColumn(absl::string_view data, size_t offset, int64_t* line, int64_t* column) {
  offset = std::min(offset, data.size());
  absl::string_view before = data.substr(0, offset);
  *line = 1 + static_cast<int64_t>(std::count(before.begin(), before.end(), '\n'));
  size_t nl = before.rfind('\n');
  *column = static_cast<int64_t>(nl == absl::string_view::npos ? offset + 1 : offset - nl);
}

absl::StatusOr<CsvReader> CsvReader::Create(std::string name, absl::string_view data) {
  size_t bad = utf8::FindInvalid(data);
  if (bad != absl::string_view::npos) {
    int64_t line, col;
    LineAndColumn(data, bad, &line, &col);
    return absl::InvalidArgumentError(
        absl::StrFormat("%s:%d: invalid UTF-8 (byte 0x%02x at column %d); save the file as UTF-8", name, line,
                        static_cast<uint8_t>(data[bad]), col));
  }
  CsvReader r(std::move(name), data);
  if (data.substr(0, 3) == "\xEF\xBB\xBF") r.pos_ = 3;
  return r;
}

absl::Status CsvReader::Error(int64_t line, absl::string_view what) const {
  return absl::InvalidArgumentError(absl::StrFormat("%s:%d: %s", name_, line, what));
}

absl::StatusOr<bool> CsvReader::Next(std::vector<std::string>* fields, int64_t* line) {
  fields->clear();
  const size_t n = data_.size();
  // Skip empty lines.
  while (pos_ < n && (data_[pos_] == '\n' || data_[pos_] == '\r')) {
    if (data_[pos_] == '\r' && pos_ + 1 < n && data_[pos_ + 1] == '\n') ++pos_;
    ++pos_;
    ++line_;
  }
  if (pos_ >= n) return false;
  *line = line_;
  std::string field;
  while (true) {
    field.clear();
    if (pos_ < n && data_[pos_] == '"') {
      const int64_t open_line = line_;
      ++pos_;
      while (true) {
        size_t q = data_.find('"', pos_);
        if (q == absl::string_view::npos) {
          return Error(open_line, "unterminated quoted field (the quote opened on this line never closes)");
        }
        absl::string_view chunk = data_.substr(pos_, q - pos_);
        line_ += std::count(chunk.begin(), chunk.end(), '\n');
        field.append(chunk.data(), chunk.size());
        pos_ = q + 1;
        if (pos_ < n && data_[pos_] == '"') {  // "" is an escaped quote
          field.push_back('"');
          ++pos_;
          continue;
        }
        break;
      }
      if (pos_ < n && data_[pos_] != ',' && data_[pos_] != '\n' && data_[pos_] != '\r') {
        size_t len;  // the whole character (input is valid UTF-8), escaped if it is a control
        utf8::Decode(data_, pos_, &len);
        return Error(line_, absl::StrFormat("unexpected character '%s' after a closing quote (a quote inside a "
                                            "quoted field must be doubled: \"\")",
                                            utf8::Printable(data_.substr(pos_, len))));
      }
    } else {
      size_t end = pos_;
      while (end < n && data_[end] != ',' && data_[end] != '\n' && data_[end] != '\r') ++end;
      field.append(data_.data() + pos_, end - pos_);
      pos_ = end;
    }
    fields->push_back(field);
    if (pos_ >= n) return true;
    const char c = data_[pos_];
    if (c == ',') {
      ++pos_;
      continue;
    }
    // End of record: \n, \r\n or \r.
    if (c == '\r' && pos_ + 1 < n && data_[pos_ + 1] == '\n') ++pos_;
    ++pos_;
    ++line_;
    return true;
  }
}

}  // namespace ftune::prep
