// Helpers shared by the tests that compare a tokenizer with Hugging Face's (tokenizer_oracle_test,
// tokenizer_json_oracle_test): text generators, readers of the aclImdb CSVs, diff printing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/utf8.h"
#include "data-prep/csv_reader.h"
#include "gtest/gtest.h"
#include "hf_oracle.h"
#include "test_util.h"

namespace ftune::prep::testing {

constexpr int32_t kMaxCodePoint = 0x10FFFF;
inline bool IsScalar(int32_t c) { return c >= 0 && c <= kMaxCodePoint && (c < 0xD800 || c > 0xDFFF); }

inline std::string Utf8(int32_t c) {
  std::string s;
  utf8::Append(c, &s);
  return s;
}

// A text as code points, for failure messages: "U+0061 U+0301 ...".
inline std::string CodePoints(absl::string_view s, size_t max_chars = 40) {
  std::string out;
  size_t i = 0, n = 0;
  while (i < s.size() && n < max_chars) {
    size_t len;
    const int32_t c = utf8::Decode(s, i, &len);
    absl::StrAppendFormat(&out, "%sU+%04X", n ? " " : "", c);
    i += len;
    ++n;
  }
  if (i < s.size()) absl::StrAppend(&out, " ...(", s.size(), " bytes)");
  return out;
}

// Both id lists, or for long ones the part around their first difference.
inline std::pair<std::string, std::string> IdsDiff(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t first = 0;
  while (first < a.size() && first < b.size() && a[first] == b[first]) ++first;
  const size_t begin = first > 4 ? first - 4 : 0;
  auto show = [&](const std::vector<int32_t>& v) {
    const size_t end = std::min(v.size(), begin + 12);
    return absl::StrCat(begin > 0 ? absl::StrCat("[... (", begin, " equal ids) ") : "[",
                        absl::StrJoin(v.begin() + static_cast<ptrdiff_t>(std::min(begin, v.size())),
                                      v.begin() + static_cast<ptrdiff_t>(end), ", "),
                        end < v.size() ? absl::StrCat(" ... (", v.size(), " ids)]") : "]");
  };
  return {show(a), show(b)};
}

// Random strings built from pieces that stress each step of HF's pipeline.
class UnicodeFuzzer {
 public:
  explicit UnicodeFuzzer(uint64_t seed) : rng_(seed) {
    std::ifstream in(Fixture("unicode_categories.txt"));
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream f(line);
      std::string cat;
      int32_t lo, hi;
      f >> cat >> std::hex >> lo >> hi;
      auto& runs = categories_[cat];
      runs.push_back({lo, hi});
    }
    for (const auto& [cat, runs] : categories_) names_.push_back(cat);
  }
  size_t num_categories() const { return categories_.size(); }

  std::string Next() {
    std::string s;
    const int atoms = Uniform(1, 24);
    for (int a = 0; a < atoms; ++a) {
      AppendAtom(&s);
      const int sep = Uniform(0, 9);
      if (sep < 3) {
        s += ' ';
      } else if (sep == 3) {
        Append(Pick(kSpaces), &s);
      }
    }
    return s;
  }

 private:
  // White_Space, and characters that look like it but are not (ZWSP, BOM, Mongolian vowel sep.).
  static constexpr int32_t kSpaces[] = {0x09,   0x0A,   0x0B,   0x0C,   0x0D,   0x20,   0x85,   0xA0,   0x1680, 0x2000,
                                        0x2007, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0x180E, 0x200B, 0xFEFF};
  static constexpr int32_t kControls[] = {0x00,   0x01,   0x07,   0x1B,   0x7F,   0x80,    0x9F,    0xAD,   0x200C,
                                          0x200D, 0x200E, 0x2066, 0xFFF9, 0xFFFD, 0xE0001, 0xE0041, 0xF0B7, 0xE000};
  static constexpr const char* kLiterals[] = {"[CLS]", "[SEP]", "[PAD]",    "[MASK]",     "[UNK]",   "[cls]",
                                              "[CLS",  "##",    "[[MASK]]", "[SEP][CLS]", "x[UNK]y", "\xC4\xB0"};

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  template <size_t N, typename T>
  const T& Pick(const T (&a)[N]) {
    return a[static_cast<size_t>(Uniform(0, static_cast<int>(N) - 1))];
  }
  static void Append(int32_t c, std::string* s) { utf8::Append(c, s); }

  int32_t FromCategory(const std::string& cat) {
    const auto& runs = categories_.at(cat);
    int64_t total = 0;
    for (const auto& r : runs) total += r.second - r.first + 1;
    int64_t k = std::uniform_int_distribution<int64_t>(0, total - 1)(rng_);
    for (const auto& r : runs) {
      if (k <= r.second - r.first) return r.first + static_cast<int32_t>(k);
      k -= r.second - r.first + 1;
    }
    return 'x';
  }
  int32_t AnyCategory() {
    return FromCategory(names_[static_cast<size_t>(Uniform(0, static_cast<int>(names_.size()) - 1))]);
  }
  int32_t Mark() {
    static const char* kMarks[] = {"Mn", "Mn", "Mc", "Me"};
    return Uniform(0, 3) == 0 ? 0x0300 + Uniform(0, 0x6F) : FromCategory(Pick(kMarks));
  }
  int32_t Letter() {
    static const char* kLetters[] = {"Lu", "Ll", "Lt", "Lo", "Lm"};
    return Uniform(0, 2) == 0 ? 'A' + Uniform(0, 57) : FromCategory(Pick(kLetters));
  }

  void AppendAtom(std::string* s) {
    switch (Uniform(0, 11)) {
      case 0:
      case 1:  // any general category (Cn and Co included), one to three characters
        for (int k = Uniform(1, 3); k > 0; --k) Append(AnyCategory(), s);
        break;
      case 2:  // a base and a run of combining marks, sometimes with a control character inside
        Append(Letter(), s);
        for (int k = Uniform(1, 5); k > 0; --k) {
          Append(Mark(), s);
          if (Uniform(0, 5) == 0) Append(Pick(kControls), s);
        }
        break;
      case 3:  // precomposed characters and case mappings (Latin-1..Greek Extended, letterlike)
        for (int k = Uniform(1, 6); k > 0; --k) {
          const int32_t ranges[][2] = {{0xC0, 0x24F}, {0x370, 0x52F}, {0x1E00, 0x1FFF}, {0x2100, 0x218F}};
          const auto& r = Pick(ranges);
          Append(Uniform(r[0], r[1]), s);
        }
        break;
      case 4:  // ASCII words, digits and punctuation
        for (int k = Uniform(1, 12); k > 0; --k) Append(Uniform(0x21, 0x7E), s);
        break;
      case 5: {  // a word near the 100-character limit, counted after normalization
        const int n = Uniform(95, 105);
        const bool accents = Uniform(0, 1);
        for (int k = 0; k < n; ++k) {
          Append('a' + Uniform(0, 25), s);
          if (accents && Uniform(0, 9) == 0) Append(0x0301, s);
        }
        break;
      }
      case 6:  // CJK ideographs (unified, extensions, compatibility ones that decompose)
        for (int k = Uniform(1, 4); k > 0; --k) {
          const int32_t ranges[][2] = {{0x4E00, 0x9FFF},   {0x3400, 0x4DBF},   {0xF900, 0xFAFF},
                                       {0x20000, 0x2A6DF}, {0x2F800, 0x2FA1F}, {0x2A6E0, 0x2A6FF}};
          const auto& r = Pick(ranges);
          Append(Uniform(r[0], r[1]), s);
        }
        break;
      case 7:  // Hangul: precomposed syllables and conjoining jamo
        for (int k = Uniform(1, 4); k > 0; --k) {
          Append(Uniform(0, 1) ? Uniform(0xAC00, 0xD7A3) : Uniform(0x1100, 0x11FF), s);
        }
        break;
      case 8:  // emoji, with variation selectors, skin tones and ZWJ sequences
        for (int k = Uniform(1, 3); k > 0; --k) {
          Append(Uniform(0, 3) ? Uniform(0x1F300, 0x1FAFF) : Uniform(0x2600, 0x27BF), s);
          if (Uniform(0, 2) == 0) Append(0xFE0F, s);
          if (Uniform(0, 3) == 0) Append(Uniform(0x1F3FB, 0x1F3FF), s);
          if (k > 1) Append(0x200D, s);
        }
        break;
      case 9:  // control and format characters, private use, U+FFFD
        for (int k = Uniform(1, 3); k > 0; --k) Append(Pick(kControls), s);
        break;
      case 10:  // literal special tokens and their near misses
        *s += Pick(kLiterals);
        break;
      default:  // whitespace of every kind
        for (int k = Uniform(1, 3); k > 0; --k) Append(Pick(kSpaces), s);
        break;
    }
  }

  std::mt19937_64 rng_;
  std::map<std::string, std::vector<std::pair<int32_t, int32_t>>> categories_;
  std::vector<std::string> names_;
};

// Rows of the `review` column of a gzip'd CSV.
inline std::vector<std::string> GzipCsvReviews(const std::string& path) {
  auto data = RunCommand("gzip -dc '" + path + "'");
  EXPECT_TRUE(data.ok()) << data.status();
  if (!data.ok()) return {};
  auto reader = CsvReader::Create(path, *data);
  EXPECT_TRUE(reader.ok()) << reader.status();
  std::vector<std::string> fields, out;
  int64_t line;
  bool header = true;
  while (true) {
    auto more = reader->Next(&fields, &line);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    if (header) {
      EXPECT_EQ(fields[0], "review") << path;
      header = false;
      continue;
    }
    out.push_back(std::move(fields[0]));
  }
  return out;
}

}  // namespace ftune::prep::testing
