// libFuzzer target: prep::CsvReader (RFC 4180) on arbitrary bytes.
//
// Invariants:
//  - Create() fails exactly when the input is not valid UTF-8, with a one-line InvalidArgument
//    message "fuzz.csv:<line>: ..." (line inside the file);
//  - Next() always makes progress (bytes_consumed strictly grows on every record) and ends;
//    record start lines never go backwards; every record has at least one field;
//  - errors are InvalidArgument "fuzz.csv:<line>: ..." on one line of valid UTF-8;
//  - fields of a valid input are valid UTF-8 (splits happen at ASCII bytes only);
//  - round trip: writing the records back with every field quoted and reading that gives the same
//    records.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "data-prep/csv_reader.h"
#include "fuzz_util.h"

namespace ftune::fuzz {
namespace {

constexpr char kLabel[] = "fuzz.csv";

// Reads every record; returns the error status if any.
absl::Status ReadAll(absl::string_view data, std::vector<std::vector<std::string>>* records) {
  auto r = prep::CsvReader::Create(kLabel, data);
  if (!r.ok()) return r.status();
  int64_t max_line = 1 + std::count(data.begin(), data.end(), '\n') + std::count(data.begin(), data.end(), '\r');
  size_t consumed = r->bytes_consumed();
  int64_t prev_line = 0;
  std::vector<std::string> fields;
  while (true) {
    int64_t line = -1;
    auto more = r->Next(&fields, &line);
    if (!more.ok()) return more.status();
    if (!*more) break;
    FUZZ_CHECK(r->bytes_consumed() > consumed, "a record consumed no bytes");
    FUZZ_CHECK(r->bytes_consumed() <= r->bytes_total(), "consumed past the end");
    FUZZ_CHECK(line >= 1 && line >= prev_line && line <= max_line,
               "record line " + std::to_string(line) + " after " + std::to_string(prev_line));
    FUZZ_CHECK(!fields.empty(), "a record with no fields");
    for (const std::string& f : fields) {
      FUZZ_CHECK(utf8::FindInvalid(f) == absl::string_view::npos, "a field is not valid UTF-8");
    }
    consumed = r->bytes_consumed();
    prev_line = line;
    records->push_back(fields);
  }
  FUZZ_CHECK(r->bytes_consumed() == r->bytes_total(), "stopped before the end of the input");
  return absl::OkStatus();
}

// "fuzz.csv:<line>: ..." with <line> a real line of `data`.
void CheckCsvError(const absl::Status& st, absl::string_view data) {
  CheckError(st, kLabel, {absl::StatusCode::kInvalidArgument});
  std::vector<absl::string_view> parts = absl::StrSplit(st.message(), absl::MaxSplits(':', 2));
  FUZZ_CHECK(parts.size() == 3 && parts[0] == kLabel, "message is not '<file>:<line>: ...': " + st.ToString());
  int64_t line = 0;
  int64_t max_line = 1 + std::count(data.begin(), data.end(), '\n') + std::count(data.begin(), data.end(), '\r');
  FUZZ_CHECK(absl::SimpleAtoi(parts[1], &line) && line >= 1 && line <= max_line,
             "bad line number in: " + st.ToString());
}

std::string Quote(const std::vector<std::vector<std::string>>& records) {
  std::string out;
  for (const auto& rec : records) {
    for (size_t i = 0; i < rec.size(); ++i) {
      if (i > 0) out.push_back(',');
      out.push_back('"');
      for (char c : rec[i]) {
        if (c == '"') out.push_back('"');
        out.push_back(c);
      }
      out.push_back('"');
    }
    out += "\r\n";
  }
  return out;
}

}  // namespace
}  // namespace ftune::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ftune;
  using namespace ftune::fuzz;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const bool valid = utf8::FindInvalid(text) == absl::string_view::npos;
  std::vector<std::vector<std::string>> records;
  absl::Status st = ReadAll(text, &records);
  if (!st.ok()) {
    CheckCsvError(st, text);
    if (!valid) FUZZ_CHECK(absl::StrContains(st.message(), "invalid UTF-8"), "invalid input, other error");
    return 0;
  }
  FUZZ_CHECK(valid, "invalid UTF-8 accepted");
  const std::string quoted = Quote(records);
  std::vector<std::vector<std::string>> again;
  absl::Status st2 = ReadAll(quoted, &again);
  FUZZ_CHECK(st2.ok(), "quoted records do not parse: " + st2.ToString());
  FUZZ_CHECK(again == records, "quoted records parse differently");
  return 0;
}
