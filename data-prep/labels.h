// Turns the label column's raw values into label ids and remembers the mapping it used.
//   default (no --labels): binary sentiment; "0"/"negative"/"neg" -> 0, "1"/"positive"/"pos" -> 1,
//     case-insensitive, surrounding spaces ignored; names ["negative", "positive"].
//   --labels a,b,c: a value equal to a name (case-insensitive) maps to its position, and an integer
//     in [0, number of names) maps to itself; names are the list.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/status.h"

namespace ftune::prep {

class LabelMapper {
 public:
  explicit LabelMapper(std::vector<std::string> names = {});

  // InvalidArgument naming the value and what is accepted (the caller prefixes file:line).
  absl::StatusOr<int32_t> Map(absl::string_view raw);
  absl::StatusOr<int32_t> MapInt(int64_t value);

  const std::vector<std::string>& names() const { return names_; }
  // Every distinct raw value seen (trimmed, as written) -> its id, as a JSON object string.
  std::string MappingJson() const;
  std::string Describe() const;  // what is accepted, for messages

 private:
  bool explicit_;
  std::vector<std::string> names_;
  std::map<std::string, int32_t> seen_;
};

}  // namespace ftune::prep
