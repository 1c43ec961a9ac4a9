#include "data-prep/labels.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace ftune::prep {
namespace {
constexpr size_t kMaxRecorded = 1000;  // distinct raw values kept for the mapping attribute
}

LabelMapper::LabelMapper(std::vector<std::string> names) : explicit_(!names.empty()), names_(std::move(names)) {
  if (!explicit_) names_ = {"negative", "positive"};
}

std::string LabelMapper::Describe() const {
  if (!explicit_) return "expected 0/1, negative/positive or neg/pos (case-insensitive), or pass --labels";
  return absl::StrCat("expected one of --labels (", absl::StrJoin(names_, ","), ") or an index 0..", names_.size() - 1);
}

absl::StatusOr<int32_t> LabelMapper::Map(absl::string_view raw) {
  absl::string_view v = absl::StripAsciiWhitespace(raw);
  auto it = seen_.find(std::string(v));
  if (it != seen_.end()) return it->second;
  int32_t id = -1;
  if (!explicit_) {
    std::string low = absl::AsciiStrToLower(v);
    if (low == "0" || low == "negative" || low == "neg") id = 0;
    if (low == "1" || low == "positive" || low == "pos") id = 1;
  } else {
    for (size_t k = 0; k < names_.size() && id < 0; ++k) {
      if (absl::EqualsIgnoreCase(v, names_[k])) id = static_cast<int32_t>(k);
    }
    int64_t n;
    if (id < 0 && absl::SimpleAtoi(v, &n) && n >= 0 && n < static_cast<int64_t>(names_.size())) {
      id = static_cast<int32_t>(n);
    }
  }
  if (id < 0) {
    return absl::InvalidArgumentError(absl::StrCat("unknown label '", utf8::Printable(v), "'; ", Describe()));
  }
  if (seen_.size() < kMaxRecorded) seen_.emplace(std::string(v), id);
  return id;
}

absl::StatusOr<int32_t> LabelMapper::MapInt(int64_t value) { return Map(absl::StrCat(value)); }

std::string LabelMapper::MappingJson() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : seen_) j[k] = v;
  return j.dump();
}

}  // namespace ftune::prep
