#include "data-prep/tokenizer_json.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <tuple>
#include <mutex>
#include <queue>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/utf8.h"
#include "data-prep/unicode_tables.h"
#include "nlohmann/json.hpp"

#ifdef FTUNE_HAVE_ONIG
#define ONIG_ESCAPE_UCHAR_COLLISION 1
#include <oniguruma.h>
#endif
#ifdef FTUNE_HAVE_ICU
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#endif

namespace ftune::prep {
namespace tokjson {
// Not anonymous: Pipeline (declared in the header) holds these types.
inline namespace impl {

using json = nlohmann::json;

// Thrown only inside the parser and caught in FromJson: one line, the field path first.
struct ParseError {
  std::string message;
};

[[noreturn]] void Fail(const std::string& path, absl::string_view what) {
  throw ParseError{absl::StrCat(path, ": ", what)};
}

std::string Quote(absl::string_view s) { return absl::StrCat("\"", utf8::Printable(s, 60), "\""); }

// ------------------------------------------------------------------------------------------------
// Unicode: what HF asks of `char` and of its regex crates.

int32_t DecodeAt(absl::string_view s, size_t i, size_t* len) {
  const int32_t c = utf8::Decode(s, i, len);
  return c < 0 ? 0xFFFD : c;
}

std::vector<int32_t> ToCodePoints(absl::string_view s) {
  std::vector<int32_t> out;
  out.reserve(s.size());
  for (size_t i = 0, len; i < s.size(); i += len) out.push_back(DecodeAt(s, i, &len));
  return out;
}

std::string FromCodePoints(const std::vector<int32_t>& cps) {
  std::string out;
  out.reserve(cps.size());
  for (int32_t c : cps) utf8::Append(c, &out);
  return out;
}

// char::is_whitespace (White_Space, Unicode 17.0 in HF's build); also the regex crates' \s.
bool IsSpace(int32_t c) { return unicode::Lookup(c).flags & unicode::kSpace; }
// char::is_ascii_punctuation() || unicode_categories' is_punctuation (Unicode 8.0).
bool IsPunct(int32_t c) { return unicode::Lookup(c).flags & unicode::kPunct; }

#ifdef FTUNE_HAVE_ICU
// Assigned after Unicode 9.0: to unicode-normalization-alignments (HF's NFC/NFKC/NFKD/marks) an
// unassigned code point, which neither decomposes nor composes nor is a mark.
bool NewerThan9(int32_t c) {
  UVersionInfo age;
  u_charAge(c, age);
  return age[0] > 9 || (age[0] == 9 && (age[1] > 0 || age[2] > 0));
}
bool IsMarkCategory(int32_t c) {
  const int8_t t = u_charType(c);
  return t == U_NON_SPACING_MARK || t == U_ENCLOSING_MARK || t == U_COMBINING_SPACING_MARK;
}
// unicode-normalization-alignments' is_combining_mark (StripAccents): General_Category M, 9.0.
// ICU 72 has Unicode 15.0's categories; these characters' mark status differs in 9.0 (the
// oracle's sweep of every code point found them): U+1CF2/3 were Mc (Lo since 10.0), U+111C9
// was Po (Mn since 11.0).
bool IsCombiningMark(int32_t c) {
  if (c == 0x1CF2 || c == 0x1CF3) return true;
  if (c == 0x111C9) return false;
  return c >= 0x300 && IsMarkCategory(c) && !NewerThan9(c);
}
// char::is_numeric: Nd, Nl, No.
bool IsNumeric(int32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  const int8_t t = u_charType(c);
  return t == U_DECIMAL_DIGIT_NUMBER || t == U_LETTER_NUMBER || t == U_OTHER_NUMBER;
}
// The regex crate's Unicode \w: Alphabetic, M, Nd, Pc, Join_Control.
bool IsWord(int32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  const int8_t t = u_charType(c);
  return u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || t == U_NON_SPACING_MARK || t == U_ENCLOSING_MARK ||
         t == U_COMBINING_SPACING_MARK || t == U_DECIMAL_DIGIT_NUMBER || t == U_CONNECTOR_PUNCTUATION ||
         u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL);
}
#else
bool IsCombiningMark(int32_t c) { return unicode::Lookup(c).flags & unicode::kMn; }
bool IsNumeric(int32_t c) { return c >= '0' && c <= '9'; }
bool IsWord(int32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         (c >= 0x80 && !(unicode::Lookup(c).flags & (unicode::kSpace | unicode::kPunct)));
}
#endif

// NFD with HF's tables (Unicode 9.0): full canonical decomposition, then the canonical ordering
// of each run of combining marks.
void Nfd(std::vector<int32_t>* cps) {
  std::vector<int32_t> out;
  out.reserve(cps->size() + 8);
  size_t run = 0;  // start of the current run of ccc != 0 in `out`
  auto ccc = [](int32_t c) { return unicode::Lookup(c).ccc; };
  auto flush = [&] {
    if (out.size() - run > 1) {
      std::stable_sort(out.begin() + static_cast<std::ptrdiff_t>(run), out.end(),
                       [&](int32_t a, int32_t b) { return ccc(a) < ccc(b); });
    }
  };
  for (int32_t c : *cps) {
    int32_t dec[4];
    const int n = unicode::Decompose(c, unicode::Lookup(c), dec);
    for (int k = 0; k < n; ++k) {
      if (ccc(dec[k]) == 0) {
        flush();
        out.push_back(dec[k]);
        run = out.size();
      } else {
        out.push_back(dec[k]);
      }
    }
  }
  flush();
  cps->swap(out);
}

enum class NormForm { kNfc, kNfd, kNfkc, kNfkd };

#ifdef FTUNE_HAVE_ICU
const UNormalizer2* IcuNormalizer(NormForm f) {
  UErrorCode e = U_ZERO_ERROR;
  switch (f) {
    case NormForm::kNfc: return unorm2_getNFCInstance(&e);
    case NormForm::kNfkc: return unorm2_getNFKCInstance(&e);
    case NormForm::kNfkd: return unorm2_getNFKDInstance(&e);
    case NormForm::kNfd: return unorm2_getNFDInstance(&e);
  }
  return nullptr;
}

// ICU's normalization of runs of characters assigned by Unicode 9.0; the characters assigned
// since then stay as they are (they are starters that neither decompose nor compose, so
// normalizing the runs between them separately is exact).
void IcuNormalize(NormForm f, std::vector<int32_t>* cps) {
  const UNormalizer2* n = IcuNormalizer(f);
  std::vector<int32_t> out;
  out.reserve(cps->size());
  std::vector<UChar> in16, out16;
  size_t i = 0;
  while (i < cps->size()) {
    size_t j = i;
    while (j < cps->size() && !NewerThan9((*cps)[j])) ++j;
    if (j > i) {
      in16.clear();
      for (size_t k = i; k < j; ++k) {
        const int32_t c = (*cps)[k];
        if (c >= 0x10000) {
          in16.push_back(static_cast<UChar>(0xD7C0 + (c >> 10)));
          in16.push_back(static_cast<UChar>(0xDC00 | (c & 0x3FF)));
        } else {
          in16.push_back(static_cast<UChar>(c));
        }
      }
      UErrorCode e = U_ZERO_ERROR;
      out16.resize(in16.size() * 4 + 16);
      int32_t m = unorm2_normalize(n, in16.data(), static_cast<int32_t>(in16.size()), out16.data(),
                                   static_cast<int32_t>(out16.size()), &e);
      if (e == U_BUFFER_OVERFLOW_ERROR) {
        e = U_ZERO_ERROR;
        out16.resize(static_cast<size_t>(m));
        m = unorm2_normalize(n, in16.data(), static_cast<int32_t>(in16.size()), out16.data(), m, &e);
      }
      for (int32_t k = 0; k < m; ++k) {
        int32_t c = out16[static_cast<size_t>(k)];
        if (c >= 0xD800 && c < 0xDC00 && k + 1 < m) {
          c = 0x10000 + ((c - 0xD800) << 10) + (out16[static_cast<size_t>(++k)] - 0xDC00);
        }
        out.push_back(c);
      }
    }
    if (j < cps->size()) out.push_back((*cps)[j++]);
    i = j;
  }
  cps->swap(out);
}
#endif

// ------------------------------------------------------------------------------------------------
// Regular expressions: Oniguruma, as HF's SysRegex (onig crate, default syntax, UTF-8).

class Regex {
 public:
  static std::unique_ptr<Regex> Compile(const std::string& pattern, std::string* error) {
#ifdef FTUNE_HAVE_ONIG
    static std::once_flag once;
    std::call_once(once, [] {
      OnigEncoding enc = ONIG_ENCODING_UTF8;
      onig_initialize(&enc, 1);
    });
    auto r = std::unique_ptr<Regex>(new Regex());
    OnigErrorInfo info;
    const auto* p = reinterpret_cast<const OnigUChar*>(pattern.data());
    int rc = onig_new(&r->re_, p, p + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT,
                      &info);
    if (rc != ONIG_NORMAL) {
      OnigUChar buf[ONIG_MAX_ERROR_MESSAGE_LEN];
      onig_error_code_to_str(buf, rc, &info);
      *error = absl::StrCat("invalid regular expression: ", utf8::Printable(reinterpret_cast<const char*>(buf), 200));
      r->re_ = nullptr;
      return nullptr;
    }
    return r;
#else
    (void)pattern;
    *error = "regular expressions need Oniguruma, and this ftune was built without it (apt-get install libonig-dev)";
    return nullptr;
#endif
  }
  ~Regex() {
#ifdef FTUNE_HAVE_ONIG
    if (re_ != nullptr) onig_free(re_);
#endif
  }

  // onig's find_iter: non-overlapping matches, an empty match right after the previous match is
  // skipped by one character. Appends (start, end) byte offsets.
  void FindIter(absl::string_view text, std::vector<std::pair<size_t, size_t>>* out) const {
#ifdef FTUNE_HAVE_ONIG
    // One match region per thread, freed when the thread exits (prep's workers come and go).
    struct RegionFree {
      void operator()(OnigRegion* r) const { onig_region_free(r, 1); }
    };
    thread_local std::unique_ptr<OnigRegion, RegionFree> owned(onig_region_new());
    OnigRegion* region = owned.get();
    const auto* s = reinterpret_cast<const OnigUChar*>(text.data());
    const auto* end = s + text.size();
    size_t last_end = 0;
    bool have_last = false;
    size_t last_match_end = 0;
    while (last_end <= text.size()) {
      onig_region_clear(region);
      const int r = onig_search(re_, s, end, s + last_end, end, region, ONIG_OPTION_NONE);
      if (r < 0) return;  // ONIG_MISMATCH, or an error (the onig crate stops too)
      const size_t ms = static_cast<size_t>(region->beg[0]), me = static_cast<size_t>(region->end[0]);
      if (me == ms && have_last && last_match_end == me) {
        size_t len = 1;
        if (last_end < text.size()) utf8::Decode(text, last_end, &len);
        last_end += std::max<size_t>(len, 1);
        continue;
      }
      last_end = me;
      last_match_end = me;
      have_last = true;
      out->emplace_back(ms, me);
    }
#else
    (void)text;
    (void)out;
#endif
  }

 private:
  Regex() = default;
#ifdef FTUNE_HAVE_ONIG
  OnigRegex re_ = nullptr;
#endif
};

// ------------------------------------------------------------------------------------------------
// Splitting (tokenizer/pattern.rs and NormalizedString::split).

struct Match {
  size_t start, end;
  bool is_match;
};

// A character predicate's find_matches.
template <typename Pred>
void PredicateMatches(absl::string_view s, Pred&& pred, std::vector<Match>* m) {
  m->clear();
  if (s.empty()) {
    m->push_back({0, 0, false});
    return;
  }
  size_t last_offset = 0, last_seen = 0;
  for (size_t i = 0, len; i < s.size(); i += len) {
    const int32_t c = DecodeAt(s, i, &len);
    last_seen = i + len;
    if (pred(c)) {
      if (last_offset < i) m->push_back({last_offset, i, false});
      m->push_back({i, i + len, true});
      last_offset = i + len;
    }
  }
  if (last_seen > last_offset) m->push_back({last_offset, last_seen, false});
}

// find_matches from (start, end) matches: gaps become non-matches.
void FromSpans(absl::string_view s, const std::vector<std::pair<size_t, size_t>>& spans, std::vector<Match>* m) {
  m->clear();
  if (s.empty()) {
    m->push_back({0, 0, false});
    return;
  }
  size_t prev = 0;
  for (const auto& [a, b] : spans) {
    if (prev != a) m->push_back({prev, a, false});
    m->push_back({a, b, true});
    prev = b;
  }
  if (prev != s.size()) m->push_back({prev, s.size(), false});
}

// A Split/Replace pattern: a literal string or an Oniguruma regex.
struct Pattern {
  std::string literal;
  std::unique_ptr<Regex> regex;

  void Spans(absl::string_view s, std::vector<std::pair<size_t, size_t>>* spans) const {
    spans->clear();
    if (regex != nullptr) {
      regex->FindIter(s, spans);
      return;
    }
    for (size_t p = s.find(literal); p != absl::string_view::npos; p = s.find(literal, p + literal.size())) {
      spans->emplace_back(p, p + literal.size());
    }
  }
  void Matches(absl::string_view s, std::vector<Match>* m) const {
    thread_local std::vector<std::pair<size_t, size_t>> spans;
    Spans(s, &spans);
    FromSpans(s, spans, m);
  }
};

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// NormalizedString::split's behaviours: the kept (start, end) ranges, in order.
void ApplyBehavior(const std::vector<Match>& m, Behavior b, std::vector<std::pair<size_t, size_t>>* keep) {
  keep->clear();
  switch (b) {
    case Behavior::kIsolated:
      for (const Match& x : m) keep->emplace_back(x.start, x.end);
      return;
    case Behavior::kRemoved:
      for (const Match& x : m) {
        if (!x.is_match) keep->emplace_back(x.start, x.end);
      }
      return;
    case Behavior::kContiguous: {
      bool prev = false;
      for (const Match& x : m) {
        if (x.is_match == prev && !keep->empty()) {
          keep->back().second = x.end;
        } else {
          keep->emplace_back(x.start, x.end);
        }
        prev = x.is_match;
      }
      return;
    }
    case Behavior::kMergedWithPrevious: {
      bool prev = false;
      for (const Match& x : m) {
        if (x.is_match && !prev && !keep->empty()) {
          keep->back().second = x.end;
        } else {
          keep->emplace_back(x.start, x.end);
        }
        prev = x.is_match;
      }
      return;
    }
    case Behavior::kMergedWithNext: {
      bool prev = false;
      for (auto it = m.rbegin(); it != m.rend(); ++it) {
        if (it->is_match && !prev && !keep->empty()) {
          keep->back().first = it->start;
        } else {
          keep->emplace_back(it->start, it->end);
        }
        prev = it->is_match;
      }
      std::reverse(keep->begin(), keep->end());
      return;
    }
  }
}

// One piece of the text on its way through the pipeline: text still to tokenize, or an added
// token already matched (token >= 0). at_start: the piece begins at offset 0 of the original
// sequence (what Metaspace's prepend_scheme "first" asks).
struct Split {
  std::string text;
  int32_t token = -1;
  bool at_start = false;
};

void Emit(const Split& s, const std::vector<std::pair<size_t, size_t>>& keep, std::vector<Split>* out) {
  for (const auto& [a, b] : keep) {
    if (b > a) out->push_back(Split{s.text.substr(a, b - a), -1, s.at_start && a == 0});
  }
}

// Applies f(split, out) to every piece not yet tokenized; f appends the pieces it makes.
template <typename F>
void ForEachPiece(std::vector<Split>* splits, F&& f) {
  std::vector<Split> out;
  out.reserve(splits->size() * 2);
  for (Split& s : *splits) {
    if (s.token >= 0) {
      out.push_back(std::move(s));
    } else {
      f(s, &out);
    }
  }
  splits->swap(out);
}

// The ByteLevel alphabet: byte b -> the UTF-8 of the printable character GPT-2 maps it to.
const std::array<std::string, 256>& ByteChars() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      utf8::Append(printable ? b : 256 + n++, &t[static_cast<size_t>(b)]);
    }
    return t;
  }();
  return table;
}

std::string ToByteLevel(absl::string_view s) {
  const auto& chars = ByteChars();
  std::string out;
  out.reserve(s.size() * 2);
  for (char ch : s) out += chars[static_cast<uint8_t>(ch)];
  return out;
}

// ------------------------------------------------------------------------------------------------
// Normalizers. `first_kept` turns false when the character that began the original piece is
// removed (then the piece no longer starts at original offset 0, as HF's alignments say).

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void Normalize(std::string* s, bool* first_kept) const = 0;
};

template <typename Keep>
void FilterCps(std::vector<int32_t>* cps, Keep&& keep, bool* first_kept) {
  size_t w = 0;
  for (size_t r = 0; r < cps->size(); ++r) {
    if (keep((*cps)[r])) {
      (*cps)[w++] = (*cps)[r];
    } else if (r == 0) {
      *first_kept = false;
    }
  }
  cps->resize(w);
}

void LowercaseCps(std::vector<int32_t>* cps) {
  std::vector<int32_t> out;
  out.reserve(cps->size());
  for (int32_t c : *cps) {
    int32_t low[3];
    const int n = unicode::Lowercase(c, unicode::Lookup(c), low);
    out.insert(out.end(), low, low + n);
  }
  cps->swap(out);
}

class BertNormalizer : public Normalizer {
 public:
  BertNormalizer(bool clean, bool chinese, bool strip, bool lower)
      : clean_(clean), chinese_(chinese), strip_(strip), lower_(lower) {}
  void Normalize(std::string* s, bool* first_kept) const override {
    std::vector<int32_t> cps = ToCodePoints(*s);
    if (clean_) {
      FilterCps(&cps, [](int32_t c) { return !(unicode::Lookup(c).flags & unicode::kDrop); }, first_kept);
      for (int32_t& c : cps) {
        if (IsSpace(c)) c = ' ';
      }
    }
    if (chinese_) {
      std::vector<int32_t> out;
      out.reserve(cps.size());
      for (int32_t c : cps) {
        if (unicode::Lookup(c).flags & unicode::kCjk) {
          out.push_back(' ');
          out.push_back(c);
          out.push_back(' ');
        } else {
          out.push_back(c);
        }
      }
      cps.swap(out);
    }
    if (strip_) {
      Nfd(&cps);
      FilterCps(&cps, [](int32_t c) { return !(unicode::Lookup(c).flags & unicode::kMn); }, first_kept);
    }
    if (lower_) LowercaseCps(&cps);
    *s = FromCodePoints(cps);
  }

 private:
  bool clean_, chinese_, strip_, lower_;
};

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormForm f) : f_(f) {}
  void Normalize(std::string* s, bool*) const override {
    bool ascii = true;
    for (char ch : *s) ascii &= static_cast<uint8_t>(ch) < 0x80;
    if (ascii) return;  // every form leaves ASCII alone
    std::vector<int32_t> cps = ToCodePoints(*s);
    if (f_ == NormForm::kNfd) {
      Nfd(&cps);
    } else {
#ifdef FTUNE_HAVE_ICU
      IcuNormalize(f_, &cps);
#endif
    }
    *s = FromCodePoints(cps);
  }

 private:
  NormForm f_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void Normalize(std::string* s, bool*) const override {
    std::vector<int32_t> cps = ToCodePoints(*s);
    LowercaseCps(&cps);
    *s = FromCodePoints(cps);
  }
};

class StripAccentsNormalizer : public Normalizer {
 public:
  void Normalize(std::string* s, bool* first_kept) const override {
    std::vector<int32_t> cps = ToCodePoints(*s);
    FilterCps(&cps, [](int32_t c) { return !IsCombiningMark(c); }, first_kept);
    *s = FromCodePoints(cps);
  }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void Normalize(std::string* s, bool* first_kept) const override {
    size_t b = 0, e = s->size();
    if (left_) {
      for (size_t len; b < e && IsSpace(DecodeAt(*s, b, &len)); b += len) {
      }
    }
    if (right_) {
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<uint8_t>((*s)[start]) & 0xC0) == 0x80) --start;
        size_t len;
        if (!IsSpace(DecodeAt(*s, start, &len))) break;
        e = start;
      }
    }
    if (b > 0) *first_kept = false;
    *s = s->substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Pattern p, std::string content) : p_(std::move(p)), content_(std::move(content)) {}
  void Normalize(std::string* s, bool* first_kept) const override {
    thread_local std::vector<std::pair<size_t, size_t>> spans;
    p_.Spans(*s, &spans);
    if (spans.empty()) return;
    std::string out;
    size_t prev = 0;
    for (const auto& [a, b] : spans) {
      out.append(*s, prev, a - prev);
      out += content_;
      if (a == 0 && b > 0 && content_.empty()) *first_kept = false;
      prev = b;
    }
    out.append(*s, prev, std::string::npos);
    s->swap(out);
  }

 private:
  Pattern p_;
  std::string content_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : p_(std::move(p)) {}
  void Normalize(std::string* s, bool*) const override {
    if (!s->empty()) s->insert(0, p_);
  }

 private:
  std::string p_;
};

class ByteLevelNormalizer : public Normalizer {
 public:
  void Normalize(std::string* s, bool*) const override { *s = ToByteLevel(*s); }
};

class NmtNormalizer : public Normalizer {
 public:
  void Normalize(std::string* s, bool* first_kept) const override {
    std::vector<int32_t> cps = ToCodePoints(*s);
    FilterCps(
        &cps,
        [](int32_t c) {
          return !((c >= 1 && c <= 8) || c == 0xB || (c >= 0xE && c <= 0x1F) || c == 0x7F || c == 0x8F || c == 0x9F);
        },
        first_kept);
    for (int32_t& c : cps) {
      if (c == 9 || c == 0xA || c == 0xC || c == 0xD || c == 0x1680 || (c >= 0x200B && c <= 0x200F) ||
          c == 0x2028 || c == 0x2029 || c == 0x2581 || c == 0xFEFF || c == 0xFFFD) {
        c = ' ';
      }
    }
    *s = FromCodePoints(cps);
  }
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> n) : n_(std::move(n)) {}
  void Normalize(std::string* s, bool* first_kept) const override {
    for (const auto& n : n_) n->Normalize(s, first_kept);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> n_;
};

// ------------------------------------------------------------------------------------------------
// Pre-tokenizers.

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void PreTokenize(std::vector<Split>* splits) const = 0;
};

template <typename Pred>
void SplitByPredicate(std::vector<Split>* splits, Pred&& pred, Behavior b) {
  thread_local std::vector<Match> m;
  thread_local std::vector<std::pair<size_t, size_t>> keep;
  ForEachPiece(splits, [&](const Split& s, std::vector<Split>* out) {
    PredicateMatches(s.text, pred, &m);
    ApplyBehavior(m, b, &keep);
    Emit(s, keep, out);
  });
}

class BertPreTokenizer : public PreTokenizer {
 public:
  void PreTokenize(std::vector<Split>* splits) const override {
    SplitByPredicate(splits, IsSpace, Behavior::kRemoved);
    SplitByPredicate(splits, IsPunct, Behavior::kIsolated);
  }
};

class WhitespaceSplitPreTokenizer : public PreTokenizer {
 public:
  void PreTokenize(std::vector<Split>* splits) const override { SplitByPredicate(splits, IsSpace, Behavior::kRemoved); }
};

// Whitespace: `\w+|[^\w\s]+` (the regex crate), the matches kept and the rest removed.
class WhitespacePreTokenizer : public PreTokenizer {
 public:
  void PreTokenize(std::vector<Split>* splits) const override {
    ForEachPiece(splits, [&](const Split& s, std::vector<Split>* out) {
      size_t i = 0;
      const size_t n = s.text.size();
      while (i < n) {
        size_t len;
        int32_t c = DecodeAt(s.text, i, &len);
        const int cls = IsWord(c) ? 1 : IsSpace(c) ? 0 : 2;
        if (cls == 0) {
          i += len;
          continue;
        }
        size_t j = i + len;
        while (j < n) {
          c = DecodeAt(s.text, j, &len);
          if ((IsWord(c) ? 1 : IsSpace(c) ? 0 : 2) != cls) break;
          j += len;
        }
        out->push_back(Split{s.text.substr(i, j - i), -1, s.at_start && i == 0});
        i = j;
      }
    });
  }
};

class PunctuationPreTokenizer : public PreTokenizer {
 public:
  explicit PunctuationPreTokenizer(Behavior b) : b_(b) {}
  void PreTokenize(std::vector<Split>* splits) const override { SplitByPredicate(splits, IsPunct, b_); }

 private:
  Behavior b_;
};

class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  void PreTokenize(std::vector<Split>* splits) const override {
    SplitByPredicate(splits, IsNumeric, individual_ ? Behavior::kIsolated : Behavior::kContiguous);
  }

 private:
  bool individual_;
};

class CharDelimiterPreTokenizer : public PreTokenizer {
 public:
  explicit CharDelimiterPreTokenizer(int32_t d) : d_(d) {}
  void PreTokenize(std::vector<Split>* splits) const override {
    const int32_t d = d_;
    SplitByPredicate(splits, [d](int32_t c) { return c == d; }, Behavior::kRemoved);
  }

 private:
  int32_t d_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Pattern p, Behavior b, bool invert) : p_(std::move(p)), b_(b), invert_(invert) {}
  void PreTokenize(std::vector<Split>* splits) const override {
    thread_local std::vector<Match> m;
    thread_local std::vector<std::pair<size_t, size_t>> keep;
    ForEachPiece(splits, [&](const Split& s, std::vector<Split>* out) {
      p_.Matches(s.text, &m);
      if (invert_) {
        for (Match& x : m) x.is_match = !x.is_match;
      }
      ApplyBehavior(m, b_, &keep);
      Emit(s, keep, out);
    });
  }

 private:
  Pattern p_;
  Behavior b_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex, std::unique_ptr<Regex> re)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex), re_(std::move(re)) {}
  void PreTokenize(std::vector<Split>* splits) const override {
    thread_local std::vector<std::pair<size_t, size_t>> spans;
    thread_local std::vector<Match> m;
    ForEachPiece(splits, [&](Split& s, std::vector<Split>* out) {
      if (add_prefix_space_ && (s.text.empty() || s.text[0] != ' ')) s.text.insert(0, " ");
      if (!use_regex_) {
        if (!s.text.empty()) out->push_back(Split{ToByteLevel(s.text), -1, s.at_start});
        return;
      }
      spans.clear();
      re_->FindIter(s.text, &spans);
      FromSpans(s.text, spans, &m);
      for (const Match& x : m) {
        if (x.end > x.start) {
          out->push_back(Split{ToByteLevel(absl::string_view(s.text).substr(x.start, x.end - x.start)), -1,
                               s.at_start && x.start == 0});
        }
      }
    });
  }

 private:
  bool add_prefix_space_, use_regex_;
  std::unique_ptr<Regex> re_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(int32_t replacement, PrependScheme scheme, bool split)
      : replacement_(replacement), scheme_(scheme), split_(split) {
    utf8::Append(replacement, &rep_);
  }
  void PreTokenize(std::vector<Split>* splits) const override {
    thread_local std::vector<Match> m;
    thread_local std::vector<std::pair<size_t, size_t>> keep;
    ForEachPiece(splits, [&](Split& s, std::vector<Split>* out) {
      std::string t;
      t.reserve(s.text.size() + rep_.size());
      for (char ch : s.text) {
        if (ch == ' ') {
          t += rep_;
        } else {
          t.push_back(ch);
        }
      }
      const bool starts = t.compare(0, rep_.size(), rep_) == 0;
      if (!starts && (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && s.at_start))) {
        t.insert(0, rep_);
      }
      Split piece{std::move(t), -1, s.at_start};
      if (!split_) {
        if (!piece.text.empty()) out->push_back(std::move(piece));
        return;
      }
      const int32_t r = replacement_;
      PredicateMatches(piece.text, [r](int32_t c) { return c == r; }, &m);
      ApplyBehavior(m, Behavior::kMergedWithNext, &keep);
      Emit(piece, keep, out);
    });
  }

 private:
  int32_t replacement_;
  std::string rep_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> p) : p_(std::move(p)) {}
  void PreTokenize(std::vector<Split>* splits) const override {
    for (const auto& p : p_) p->PreTokenize(splits);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> p_;
};

// ------------------------------------------------------------------------------------------------
// Models.

using Vocab = absl::flat_hash_map<std::string, int32_t>;

class Model {
 public:
  virtual ~Model() = default;
  virtual void Tokenize(absl::string_view word, std::vector<int32_t>* ids) const = 0;
  virtual const char* type() const = 0;
  const Vocab& vocab() const { return vocab_; }
  Vocab vocab_;
};

int64_t CountChars(absl::string_view s) {
  int64_t n = 0;
  for (char ch : s) n += (static_cast<uint8_t>(ch) & 0xC0) != 0x80;
  return n;
}

class WordPieceModel : public Model {
 public:
  const char* type() const override { return "WordPiece"; }
  void Tokenize(absl::string_view word, std::vector<int32_t>* ids) const override {
    if (CountChars(word) > max_chars_) {
      ids->push_back(unk_);
      return;
    }
    const size_t mark = ids->size();
    thread_local std::string key;
    auto is_cont = [&](size_t k) { return (static_cast<uint8_t>(word[k]) & 0xC0) == 0x80; };
    size_t start = 0;
    const size_t n = word.size();
    while (start < n) {
      const size_t limit = start == 0 ? max_bytes_ : (max_bytes_ > prefix_.size() ? max_bytes_ - prefix_.size() : 0);
      size_t end = std::min(n, start + limit);
      while (end > start && end < n && is_cont(end)) --end;
      int32_t found = -1;
      while (end > start) {
        key.assign(start == 0 ? "" : prefix_);
        key.append(word.data() + start, end - start);
        auto it = vocab_.find(key);
        if (it != vocab_.end()) {
          found = it->second;
          break;
        }
        --end;
        while (end > start && is_cont(end)) --end;
      }
      if (found < 0) {
        ids->resize(mark);
        ids->push_back(unk_);
        return;
      }
      ids->push_back(found);
      start = end;
    }
  }
  std::string prefix_ = "##";
  int64_t max_chars_ = 100;
  int32_t unk_ = -1;
  size_t max_bytes_ = 0;
};

class WordLevelModel : public Model {
 public:
  const char* type() const override { return "WordLevel"; }
  void Tokenize(absl::string_view word, std::vector<int32_t>* ids) const override {
    auto it = vocab_.find(word);
    ids->push_back(it == vocab_.end() ? unk_ : it->second);
  }
  int32_t unk_ = -1;
};

class BpeModel : public Model {
 public:
  BpeModel() : uid_(next_uid_.fetch_add(1)) {}
  const char* type() const override { return "BPE"; }

  void Tokenize(absl::string_view word, std::vector<int32_t>* ids) const override {
    if (word.empty()) return;
    if (ignore_merges_) {
      auto it = vocab_.find(word);
      if (it != vocab_.end()) {
        ids->push_back(it->second);
        return;
      }
    }
    // HF's per-thread cache (capacity 10,000 words under 256 bytes) changes nothing but speed.
    thread_local absl::flat_hash_map<uint64_t, absl::flat_hash_map<std::string, std::vector<int32_t>>> caches;
    auto& cache = caches[uid_];
    if (auto it = cache.find(word); it != cache.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
    const size_t mark = ids->size();
    MergeWord(word, ids);
    if (word.size() < 256 && cache.size() < 10000) {
      cache.emplace(std::string(word), std::vector<int32_t>(ids->begin() + static_cast<std::ptrdiff_t>(mark), ids->end()));
    }
  }

  static uint64_t Key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }

  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a, b) -> (rank, new id)
  std::vector<int32_t> byte_ids_;                                      // <0xXX> ids, -1 when absent
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  int32_t unk_ = -1;  // -1: no unk_token (unknown characters are dropped)
  std::string prefix_, suffix_;
  bool has_prefix_ = false, has_suffix_ = false;

 private:
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    int32_t len;
  };

  void MergeWord(absl::string_view w, std::vector<int32_t>* ids) const {
    thread_local std::vector<Symbol> sym;
    thread_local std::string key;
    sym.clear();
    int32_t unk_id = -1, unk_len = 0;  // a pending unknown
    auto add = [&](int32_t id, int32_t len) {
      const int32_t i = static_cast<int32_t>(sym.size());
      sym.push_back({id, i - 1, -1, len});
      if (i > 0) sym[static_cast<size_t>(i - 1)].next = i;
    };
    for (size_t i = 0, len; i < w.size(); i += len) {
      utf8::Decode(w, i, &len);
      len = std::max<size_t>(len, 1);
      const bool first = i == 0, last = i + len >= w.size();
      key.clear();
      if (!first && has_prefix_) key += prefix_;
      key.append(w.data() + i, len);
      if (last && has_suffix_) key += suffix_;
      auto it = vocab_.find(key);
      if (it != vocab_.end()) {
        if (unk_id >= 0) {
          add(unk_id, unk_len);
          unk_id = -1;
        }
        add(it->second, static_cast<int32_t>(len));
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (unsigned char b : key) all &= byte_ids_[b] >= 0;
        if (all) {
          for (unsigned char b : key) add(byte_ids_[b], 1);
          continue;
        }
      }
      if (unk_ >= 0) {
        if (unk_id >= 0 && fuse_unk_) {
          unk_len += static_cast<int32_t>(len);
        } else {
          if (unk_id >= 0) add(unk_id, unk_len);
          unk_id = unk_;
          unk_len = static_cast<int32_t>(len);
        }
      }
    }
    if (unk_id >= 0) add(unk_id, unk_len);

    // word.rs merge_all: lowest rank first, then leftmost.
    struct Merge {
      int32_t pos, rank, new_id;
    };
    auto cmp = [](const Merge& a, const Merge& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
    thread_local std::vector<Merge> heap;
    heap.clear();
    auto push = [&](Merge m) {
      heap.push_back(m);
      std::push_heap(heap.begin(), heap.end(), cmp);
    };
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = merges_.find(Key(sym[i].id, sym[i + 1].id));
      if (it != merges_.end()) push({static_cast<int32_t>(i), it->second.first, it->second.second});
    }
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), cmp);
      const Merge top = heap.back();
      heap.pop_back();
      Symbol& cur = sym[static_cast<size_t>(top.pos)];
      if (cur.len == 0 || cur.next == -1) continue;
      const int32_t next_pos = cur.next;
      const Symbol right = sym[static_cast<size_t>(next_pos)];
      auto it = merges_.find(Key(cur.id, right.id));
      if (it == merges_.end() || it->second.second != top.new_id) continue;
      cur.id = top.new_id;
      cur.len += right.len;
      cur.next = right.next;
      sym[static_cast<size_t>(next_pos)].len = 0;
      if (right.next > -1 && static_cast<size_t>(right.next) < sym.size()) sym[static_cast<size_t>(right.next)].prev = top.pos;
      if (cur.prev >= 0) {
        auto p = merges_.find(Key(sym[static_cast<size_t>(cur.prev)].id, cur.id));
        if (p != merges_.end()) push({cur.prev, p->second.first, p->second.second});
      }
      if (cur.next >= 0 && static_cast<size_t>(cur.next) < sym.size()) {
        auto q = merges_.find(Key(cur.id, sym[static_cast<size_t>(cur.next)].id));
        if (q != merges_.end()) push({top.pos, q->second.first, q->second.second});
      }
    }
    for (const Symbol& s : sym) {
      if (s.len != 0) ids->push_back(s.id);
    }
  }

  uint64_t uid_;
  static std::atomic<uint64_t> next_uid_;
};
std::atomic<uint64_t> BpeModel::next_uid_{1};

// ------------------------------------------------------------------------------------------------
// Post-processors (process_encodings: a list of encodings in, a list out; then concatenated).

struct Enc {
  std::vector<int32_t> ids, type_ids;
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual int32_t Added(bool pair) const = 0;
  virtual void Process(std::vector<Enc>* encs) const = 0;
};

class BertProcessor : public PostProcessor {
 public:
  BertProcessor(int32_t sep, int32_t cls) : sep_(sep), cls_(cls) {}
  int32_t Added(bool pair) const override { return pair ? 3 : 2; }
  void Process(std::vector<Enc>* encs) const override {
    for (size_t i = 0; i < encs->size(); ++i) {
      Enc& e = (*encs)[i];
      if (i == 0) {
        e.ids.insert(e.ids.begin(), cls_);
        e.type_ids.insert(e.type_ids.begin(), 0);
        e.ids.push_back(sep_);
        e.type_ids.push_back(0);
      } else {
        e.ids.push_back(sep_);
        e.type_ids.push_back(1);
      }
    }
  }

 private:
  int32_t sep_, cls_;
};

class RobertaProcessor : public PostProcessor {
 public:
  RobertaProcessor(int32_t sep, int32_t cls) : sep_(sep), cls_(cls) {}
  int32_t Added(bool pair) const override { return pair ? 4 : 2; }
  void Process(std::vector<Enc>* encs) const override {
    for (size_t i = 0; i < encs->size(); ++i) {
      Enc& e = (*encs)[i];
      e.ids.insert(e.ids.begin(), i == 0 ? cls_ : sep_);
      e.ids.push_back(sep_);
      e.type_ids.assign(e.ids.size(), 0);
    }
  }

 private:
  int32_t sep_, cls_;
};

class TemplateProcessor : public PostProcessor {
 public:
  struct Piece {
    bool sequence;        // $A / $B, else a special token
    int seq;              // 0 = A, 1 = B
    std::vector<int32_t> ids;  // the special token's ids
    int32_t type_id;
  };
  int32_t Added(bool pair) const override { return pair ? added_pair_ : added_single_; }
  void Process(std::vector<Enc>* encs) const override {
    const std::vector<Piece>& t = encs->size() == 2 ? pair_ : single_;
    std::vector<Enc> out;
    for (const Piece& p : t) {
      if (p.sequence) {
        Enc e = (*encs)[static_cast<size_t>(p.seq)];
        e.type_ids.assign(e.ids.size(), p.type_id);
        out.push_back(std::move(e));
      } else {
        out.push_back(Enc{p.ids, std::vector<int32_t>(p.ids.size(), p.type_id)});
      }
    }
    encs->swap(out);
  }
  std::vector<Piece> single_, pair_;
  int32_t added_single_ = 0, added_pair_ = 0;
};

class NoopProcessor : public PostProcessor {
 public:
  int32_t Added(bool) const override { return 0; }
  void Process(std::vector<Enc>*) const override {}
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> p) : p_(std::move(p)) {}
  int32_t Added(bool pair) const override {
    int32_t n = 0;
    for (const auto& p : p_) n += p->Added(pair);
    return n;
  }
  void Process(std::vector<Enc>* encs) const override {
    for (const auto& p : p_) p->Process(encs);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> p_;
};

// ------------------------------------------------------------------------------------------------
// Added tokens (added_vocabulary.rs).

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

// Leftmost-longest matching of a set of byte strings (daachorse's MatchKind::LeftmostLongest).
class Trie {
 public:
  void Add(absl::string_view s, int32_t value) {
    int32_t node = 0;
    for (unsigned char b : s) {
      int32_t child = Child(node, b);
      if (child < 0) {
        child = static_cast<int32_t>(nodes_.size());
        nodes_[static_cast<size_t>(node)].next.emplace_back(b, child);
        nodes_.emplace_back();
      }
      node = child;
    }
    nodes_[static_cast<size_t>(node)].value = value;
    first_[static_cast<unsigned char>(s[0])] = true;
    empty_ = false;
  }
  bool empty() const { return empty_; }
  // (start, end, value) of each match, left to right, not overlapping.
  void FindAll(absl::string_view s, std::vector<std::tuple<size_t, size_t, int32_t>>* out) const {
    out->clear();
    if (empty_) return;
    size_t pos = 0;
    while (pos < s.size()) {
      bool found = false;
      for (size_t st = pos; st < s.size(); ++st) {
        if (!first_[static_cast<unsigned char>(s[st])]) continue;
        int32_t node = 0, best_value = -1;
        size_t best_end = 0;
        for (size_t k = st; k < s.size(); ++k) {
          node = Child(node, static_cast<unsigned char>(s[k]));
          if (node < 0) break;
          if (nodes_[static_cast<size_t>(node)].value >= 0) {
            best_value = nodes_[static_cast<size_t>(node)].value;
            best_end = k + 1;
          }
        }
        if (best_value >= 0) {
          out->emplace_back(st, best_end, best_value);
          pos = best_end;
          found = true;
          break;
        }
      }
      if (!found) return;
    }
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;
    int32_t value = -1;
  };
  int32_t Child(int32_t node, unsigned char b) const {
    for (const auto& [c, n] : nodes_[static_cast<size_t>(node)].next) {
      if (c == b) return n;
    }
    return -1;
  }
  std::vector<Node> nodes_ = std::vector<Node>(1);
  bool first_[256] = {};
  bool empty_ = true;
};

}  // namespace impl

// ------------------------------------------------------------------------------------------------

class Pipeline {
 public:
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Model> model;
  std::unique_ptr<PostProcessor> post;
  std::vector<AddedToken> added;  // in file order
  absl::flat_hash_map<std::string, int32_t> added_ids;
  Trie raw_trie, normalized_trie;  // values: indices into `added`
  int64_t vocab_size = 0;
  json settings;

  // added_vocabulary.rs find_matches: the splits of `s` around the added tokens of `trie`.
  void SplitAdded(const Split& piece, const Trie& trie, std::vector<Split>* out) const {
    const std::string& s = piece.text;
    if (s.empty()) return;
    if (trie.empty()) {
      out->push_back(piece);
      return;
    }
    thread_local std::vector<std::tuple<size_t, size_t, int32_t>> found;
    trie.FindAll(s, &found);
    size_t start_offset = 0;
    auto emit = [&](size_t a, size_t b, int32_t token) {
      if (b > a) out->push_back(Split{s.substr(a, b - a), token, token < 0 && piece.at_start && a == 0});
    };
    for (const auto& [mstart, mstop, k] : found) {
      size_t start = mstart, stop = mstop;
      const AddedToken& t = added[static_cast<size_t>(k)];
      if (t.single_word) {
        bool start_space = start == 0 || !EndsWithWord(absl::string_view(s).substr(0, start));
        bool stop_space = stop == s.size() || !StartsWithWord(absl::string_view(s).substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (t.lstrip) {
        size_t newstart = start;
        while (newstart > 0) {
          size_t p = newstart - 1;
          while (p > 0 && (static_cast<uint8_t>(s[p]) & 0xC0) == 0x80) --p;
          size_t len;
          if (!IsSpace(DecodeAt(s, p, &len))) break;
          newstart = p;
        }
        start = std::max(newstart, start_offset);
      }
      if (t.rstrip) {
        for (size_t len; stop < s.size() && IsSpace(DecodeAt(s, stop, &len)); stop += len) {
        }
      }
      if (start_offset < start) emit(start_offset, start, -1);
      // HF slices (start, stop) even when an rstrip before made start_offset pass start.
      emit(start, stop, t.id);
      start_offset = stop;
    }
    if (start_offset < s.size()) emit(start_offset, s.size(), -1);
  }

  static bool EndsWithWord(absl::string_view s) {
    if (s.empty()) return false;
    size_t p = s.size() - 1;
    while (p > 0 && (static_cast<uint8_t>(s[p]) & 0xC0) == 0x80) --p;
    size_t len;
    return IsWord(DecodeAt(s, p, &len));
  }
  static bool StartsWithWord(absl::string_view s) {
    size_t len;
    return !s.empty() && IsWord(DecodeAt(s, 0, &len));
  }

  // The ids of one sequence. limit > 0: *limited receives how many of them HF's
  // tokenize_with_limit (truncation on) keeps: it stops after the word that brings the count to
  // `limit` (an added token never stops it).
  void EncodeOne(absl::string_view text, std::vector<int32_t>* ids, size_t limit = 0, size_t* limited = nullptr,
                 std::vector<std::string>* words = nullptr) const {
    std::string valid;
    if (utf8::FindInvalid(text) != absl::string_view::npos) {
      for (size_t i = 0, len; i < text.size(); i += len) utf8::Append(DecodeAt(text, i, &len), &valid);
      text = valid;
    }
    std::vector<Split> splits;
    SplitAdded(Split{std::string(text), -1, true}, raw_trie, &splits);
    std::vector<Split> pieces;
    pieces.reserve(splits.size());
    for (Split& s : splits) {
      if (s.token >= 0) {
        pieces.push_back(std::move(s));
        continue;
      }
      bool first_kept = true;
      if (normalizer != nullptr) normalizer->Normalize(&s.text, &first_kept);
      s.at_start = s.at_start && first_kept;
      SplitAdded(s, normalized_trie, &pieces);
    }
    if (pre_tokenizer != nullptr) pre_tokenizer->PreTokenize(&pieces);
    if (words != nullptr) {
      for (const Split& s : pieces) words->push_back(s.token >= 0 ? absl::StrCat("<added ", s.token, ">") : s.text);
      return;
    }
    const size_t mark = ids->size();
    bool stopped = false;
    for (const Split& s : pieces) {
      if (s.token >= 0) {
        ids->push_back(s.token);
        continue;
      }
      model->Tokenize(s.text, ids);
      if (limit > 0 && !stopped && ids->size() - mark >= limit) {
        stopped = true;
        if (limited != nullptr) *limited = ids->size() - mark;
        if (limited == nullptr) break;
      }
    }
    if (limited != nullptr && !stopped) *limited = ids->size() - mark;
  }
};

namespace {

// ------------------------------------------------------------------------------------------------
// Parsing.

class Parser {
 public:
  Parser(Pipeline* p) : p_(p) {}

  const json& Need(const json& obj, const std::string& path, const char* key) {
    auto it = obj.find(key);
    if (it == obj.end()) Fail(path, absl::StrCat("missing \"", key, "\""));
    return *it;
  }
  const json* Opt(const json& obj, const char* key) {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  std::string Str(const json& v, const std::string& path) {
    if (!v.is_string()) Fail(path, absl::StrCat("expected a string, found ", Kind(v)));
    return v.get<std::string>();
  }
  bool Bool(const json& obj, const std::string& path, const char* key, bool dflt) {
    const json* v = Opt(obj, key);
    if (v == nullptr) return dflt;
    if (!v->is_boolean()) Fail(Sub(path, key), absl::StrCat("expected true or false, found ", Kind(*v)));
    return v->get<bool>();
  }
  int64_t Int(const json& v, const std::string& path, int64_t lo, int64_t hi) {
    if (!v.is_number_integer()) Fail(path, absl::StrCat("expected an integer, found ", Kind(v)));
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) {
      Fail(path, absl::StrCat(v.dump(), " is out of range [", lo, ", ", hi, "]"));
    }
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) Fail(path, absl::StrCat(x, " is out of range [", lo, ", ", hi, "]"));
    return x;
  }
  int32_t Char(const json& v, const std::string& path) {
    const std::string s = Str(v, path);
    size_t len;
    if (s.empty() || utf8::Decode(s, 0, &len) < 0 || len != s.size()) {
      Fail(path, absl::StrCat("expected exactly one character, found ", Quote(s)));
    }
    return utf8::Decode(s, 0, &len);
  }
  static std::string Sub(const std::string& path, const std::string& key) { return absl::StrCat(path, ".", key); }
  static std::string At(const std::string& path, size_t i) { return absl::StrCat(path, "[", i, "]"); }
  static std::string Kind(const json& v) {
    switch (v.type()) {
      case json::value_t::null: return "null";
      case json::value_t::object: return "an object";
      case json::value_t::array: return "an array";
      case json::value_t::string: return absl::StrCat("the string ", Quote(v.get<std::string>()));
      case json::value_t::boolean: return v.get<bool>() ? "true" : "false";
      default: return absl::StrCat("the number ", v.dump());
    }
  }
  std::string Type(const json& obj, const std::string& path) {
    if (!obj.is_object()) Fail(path, absl::StrCat("expected an object with a \"type\", found ", Kind(obj)));
    return Str(Need(obj, path, "type"), Sub(path, "type"));
  }
  [[noreturn]] void Unknown(const std::string& path, const std::string& kind, const std::string& what,
                            const char* known) {
    Fail(Sub(path, "type"), absl::StrCat("unknown ", kind, " ", Quote(what), " (ftune knows ", known, ")"));
  }
  void Depth(const std::string& path, int depth) {
    if (depth > 16) Fail(path, "Sequence nested deeper than 16");
  }

  Pattern ParsePattern(const json& v, const std::string& path) {
    if (!v.is_object() || v.size() != 1 || !(v.contains("String") || v.contains("Regex"))) {
      Fail(path, absl::StrCat("expected {\"String\": ...} or {\"Regex\": ...}, found ", Kind(v)));
    }
    Pattern p;
    if (v.contains("String")) {
      p.literal = Str(v["String"], Sub(path, "String"));
      if (p.literal.empty()) Fail(Sub(path, "String"), "is empty");
    } else {
      const std::string re = Str(v["Regex"], Sub(path, "Regex"));
      std::string err;
      p.regex = Regex::Compile(re, &err);
      if (p.regex == nullptr) Fail(Sub(path, "Regex"), err);
    }
    return p;
  }

  Behavior ParseBehavior(const json& v, const std::string& path) {
    const std::string b = Str(v, path);
    if (b == "Removed") return Behavior::kRemoved;
    if (b == "Isolated") return Behavior::kIsolated;
    if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
    if (b == "MergedWithNext") return Behavior::kMergedWithNext;
    if (b == "Contiguous") return Behavior::kContiguous;
    Fail(path, absl::StrCat("unknown behavior ", Quote(b),
                            " (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)"));
  }

  std::unique_ptr<Normalizer> ParseNormalizer(const json& j, const std::string& path, int depth = 0) {
    Depth(path, depth);
    const std::string t = Type(j, path);
    if (t == "BertNormalizer") {
      const bool lower = Bool(j, path, "lowercase", true);
      bool strip = lower;
      if (const json* s = Opt(j, "strip_accents")) {
        if (!s->is_boolean()) Fail(Sub(path, "strip_accents"), "expected true, false or null");
        strip = s->get<bool>();
      }
      return std::make_unique<BertNormalizer>(Bool(j, path, "clean_text", true),
                                              Bool(j, path, "handle_chinese_chars", true), strip, lower);
    }
    if (t == "NFC" || t == "NFKC" || t == "NFKD" || t == "NFD") {
#ifndef FTUNE_HAVE_ICU
      if (t != "NFD") Fail(Sub(path, "type"), t + " needs ICU, and this ftune was built without it");
#endif
      return std::make_unique<UnicodeNormalizer>(t == "NFC"    ? NormForm::kNfc
                                                 : t == "NFKC" ? NormForm::kNfkc
                                                 : t == "NFKD" ? NormForm::kNfkd
                                                               : NormForm::kNfd);
    }
    if (t == "Lowercase") return std::make_unique<LowercaseNormalizer>();
    if (t == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
    if (t == "Strip") return std::make_unique<StripNormalizer>(Bool(j, path, "strip_left", true), Bool(j, path, "strip_right", true));
    if (t == "Replace") {
      Pattern p = ParsePattern(Need(j, path, "pattern"), Sub(path, "pattern"));
      return std::make_unique<ReplaceNormalizer>(std::move(p), Str(Need(j, path, "content"), Sub(path, "content")));
    }
    if (t == "Prepend") return std::make_unique<PrependNormalizer>(Str(Need(j, path, "prepend"), Sub(path, "prepend")));
    if (t == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
    if (t == "Nmt") return std::make_unique<NmtNormalizer>();
    if (t == "Sequence") {
      const json& list = Need(j, path, "normalizers");
      if (!list.is_array()) Fail(Sub(path, "normalizers"), "expected an array");
      std::vector<std::unique_ptr<Normalizer>> v;
      for (size_t i = 0; i < list.size(); ++i) v.push_back(ParseNormalizer(list[i], At(Sub(path, "normalizers"), i), depth + 1));
      return std::make_unique<SequenceNormalizer>(std::move(v));
    }
    if (t == "Precompiled") Fail(Sub(path, "type"), "Precompiled (SentencePiece's charsmap) is not supported by ftune");
    Unknown(path, "normalizer", t,
            "BertNormalizer, NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, Strip, Replace, Prepend, ByteLevel, Nmt, "
            "Sequence");
  }

  std::unique_ptr<PreTokenizer> ParsePreTokenizer(const json& j, const std::string& path, int depth = 0) {
    Depth(path, depth);
    const std::string t = Type(j, path);
    if (t == "BertPreTokenizer") return std::make_unique<BertPreTokenizer>();
    if (t == "Whitespace") return std::make_unique<WhitespacePreTokenizer>();
    if (t == "WhitespaceSplit") return std::make_unique<WhitespaceSplitPreTokenizer>();
    if (t == "Punctuation") {
      const json* b = Opt(j, "behavior");
      return std::make_unique<PunctuationPreTokenizer>(b == nullptr ? Behavior::kIsolated
                                                                    : ParseBehavior(*b, Sub(path, "behavior")));
    }
    if (t == "Digits") return std::make_unique<DigitsPreTokenizer>(Bool(j, path, "individual_digits", false));
    if (t == "CharDelimiterSplit") return std::make_unique<CharDelimiterPreTokenizer>(Char(Need(j, path, "delimiter"), Sub(path, "delimiter")));
    if (t == "Split") {
      Pattern p = ParsePattern(Need(j, path, "pattern"), Sub(path, "pattern"));
      const Behavior b = ParseBehavior(Need(j, path, "behavior"), Sub(path, "behavior"));
      const json& inv = Need(j, path, "invert");
      if (!inv.is_boolean()) Fail(Sub(path, "invert"), "expected true or false");
      return std::make_unique<SplitPreTokenizer>(std::move(p), b, inv.get<bool>());
    }
    if (t == "ByteLevel") {
      const bool use_regex = Bool(j, path, "use_regex", true);
      std::unique_ptr<Regex> re;
      if (use_regex) {
        std::string err;
        re = Regex::Compile(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", &err);
        if (re == nullptr) Fail(Sub(path, "use_regex"), err);
      }
      Bool(j, path, "trim_offsets", true);
      return std::make_unique<ByteLevelPreTokenizer>(Bool(j, path, "add_prefix_space", true), use_regex, std::move(re));
    }
    if (t == "Metaspace") {
      const int32_t rep = Char(Need(j, path, "replacement"), Sub(path, "replacement"));
      PrependScheme scheme = PrependScheme::kAlways;
      if (const json* s = Opt(j, "prepend_scheme")) {
        const std::string v = Str(*s, Sub(path, "prepend_scheme"));
        if (v == "always") {
          scheme = PrependScheme::kAlways;
        } else if (v == "first") {
          scheme = PrependScheme::kFirst;
        } else if (v == "never") {
          scheme = PrependScheme::kNever;
        } else {
          Fail(Sub(path, "prepend_scheme"), absl::StrCat("unknown scheme ", Quote(v), " (always, first, never)"));
        }
      }
      if (j.contains("add_prefix_space") && !Bool(j, path, "add_prefix_space", true)) {
        if (scheme != PrependScheme::kNever) {
          Fail(Sub(path, "add_prefix_space"), "false does not match prepend_scheme (HF refuses this too)");
        }
      }
      return std::make_unique<MetaspacePreTokenizer>(rep, scheme, Bool(j, path, "split", true));
    }
    if (t == "Sequence") {
      const json& list = Need(j, path, "pretokenizers");
      if (!list.is_array()) Fail(Sub(path, "pretokenizers"), "expected an array");
      std::vector<std::unique_ptr<PreTokenizer>> v;
      for (size_t i = 0; i < list.size(); ++i) {
        v.push_back(ParsePreTokenizer(list[i], At(Sub(path, "pretokenizers"), i), depth + 1));
      }
      return std::make_unique<SequencePreTokenizer>(std::move(v));
    }
    Unknown(path, "pre-tokenizer", t,
            "BertPreTokenizer, ByteLevel, Whitespace, WhitespaceSplit, Split, Metaspace, Punctuation, Digits, "
            "CharDelimiterSplit, Sequence");
  }

  // model.vocab: token -> id, the ids exactly 0..n-1 (no holes, none twice).
  void ParseVocab(const json& v, const std::string& path, Model* m) {
    if (!v.is_object()) Fail(path, absl::StrCat("expected an object of token -> id, found ", Kind(v)));
    if (v.empty()) Fail(path, "is empty");
    if (v.size() > (1u << 30)) Fail(path, "has too many tokens");
    std::vector<const std::string*> by_id(v.size(), nullptr);
    m->vocab_.reserve(v.size());
    for (auto it = v.begin(); it != v.end(); ++it) {
      const std::string p = absl::StrCat(path, "[", Quote(it.key()), "]");
      const int64_t id = Int(it.value(), p, 0, INT32_MAX);
      if (id >= static_cast<int64_t>(v.size())) {
        Fail(p, absl::StrCat("id ", id, " is not below the number of tokens (", v.size(),
                             "): the vocab's ids must be 0..", v.size() - 1));
      }
      const std::string*& slot = by_id[static_cast<size_t>(id)];
      if (slot != nullptr) {
        Fail(p, absl::StrCat("id ", id, " is also the id of ", Quote(*slot)));
      }
      slot = &it.key();
      m->vocab_.emplace(it.key(), static_cast<int32_t>(id));
    }
    // n distinct ids, each below n: no holes.
  }

  int32_t VocabId(const Model& m, const std::string& token, const std::string& path, const char* what) {
    auto it = m.vocab_.find(token);
    if (it == m.vocab_.end()) Fail(path, absl::StrCat(what, " ", Quote(token), " is not in model.vocab"));
    return it->second;
  }

  std::unique_ptr<Model> ParseModel(const json& j, const std::string& path) {
    const std::string t = Type(j, path);
    if (t == "WordPiece") {
      auto m = std::make_unique<WordPieceModel>();
      ParseVocab(Need(j, path, "vocab"), Sub(path, "vocab"), m.get());
      if (const json* p = Opt(j, "continuing_subword_prefix")) m->prefix_ = Str(*p, Sub(path, "continuing_subword_prefix"));
      if (const json* x = Opt(j, "max_input_chars_per_word")) m->max_chars_ = Int(*x, Sub(path, "max_input_chars_per_word"), 0, INT32_MAX);
      const std::string unk = Str(Need(j, path, "unk_token"), Sub(path, "unk_token"));
      m->unk_ = VocabId(*m, unk, Sub(path, "unk_token"), "unk_token");
      for (const auto& [tok, id] : m->vocab_) m->max_bytes_ = std::max(m->max_bytes_, tok.size());
      return m;
    }
    if (t == "WordLevel") {
      auto m = std::make_unique<WordLevelModel>();
      ParseVocab(Need(j, path, "vocab"), Sub(path, "vocab"), m.get());
      const std::string unk = Str(Need(j, path, "unk_token"), Sub(path, "unk_token"));
      m->unk_ = VocabId(*m, unk, Sub(path, "unk_token"), "unk_token");
      return m;
    }
    if (t == "BPE") return ParseBpe(j, path);
    if (t == "Unigram") Fail(Sub(path, "type"), "the Unigram model is not supported by ftune");
    Unknown(path, "model", t, "WordPiece, BPE, WordLevel");
  }

  std::unique_ptr<Model> ParseBpe(const json& j, const std::string& path) {
    auto m = std::make_unique<BpeModel>();
    ParseVocab(Need(j, path, "vocab"), Sub(path, "vocab"), m.get());
    if (const json* d = Opt(j, "dropout")) {
      if (!d->is_number()) Fail(Sub(path, "dropout"), absl::StrCat("expected null or a number, found ", Kind(*d)));
      const double p = d->get<double>();
      if (!(p >= 0.0 && p <= 1.0)) Fail(Sub(path, "dropout"), absl::StrCat(d->dump(), " is not in [0, 1]"));
      if (p != 0.0) Fail(Sub(path, "dropout"), absl::StrCat(d->dump(), ": BPE dropout is random; ftune needs null or 0"));
    }
    if (const json* u = Opt(j, "unk_token")) {
      m->unk_ = VocabId(*m, Str(*u, Sub(path, "unk_token")), Sub(path, "unk_token"), "unk_token");
    }
    if (const json* p = Opt(j, "continuing_subword_prefix")) {
      m->prefix_ = Str(*p, Sub(path, "continuing_subword_prefix"));
      m->has_prefix_ = true;
    }
    if (const json* s = Opt(j, "end_of_word_suffix")) {
      m->suffix_ = Str(*s, Sub(path, "end_of_word_suffix"));
      m->has_suffix_ = true;
    }
    m->fuse_unk_ = Bool(j, path, "fuse_unk", false);
    m->byte_fallback_ = Bool(j, path, "byte_fallback", false);
    m->ignore_merges_ = Bool(j, path, "ignore_merges", false);
    m->byte_ids_.assign(256, -1);
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      auto it = m->vocab_.find(name);
      if (it != m->vocab_.end()) m->byte_ids_[static_cast<size_t>(b)] = it->second;
    }
    const std::string mpath = Sub(path, "merges");
    const json& merges = Need(j, path, "merges");
    if (!merges.is_array()) Fail(mpath, absl::StrCat("expected an array, found ", Kind(merges)));
    int form = 0;  // 1: "a b" strings, 2: ["a", "b"] pairs
    int32_t rank = 0;
    const size_t prefix_len = m->has_prefix_ ? m->prefix_.size() : 0;
    std::string merged;
    for (size_t i = 0; i < merges.size(); ++i) {
      const json& e = merges[i];
      const std::string p = At(mpath, i);
      std::string a, b;
      if (e.is_string()) {
        if (form == 2) Fail(p, "a string among [a, b] pairs (the merges must all be of one form)");
        form = 1;
        const std::string line = e.get<std::string>();
        if (line.rfind("#version", 0) == 0) continue;  // HF skips these lines
        const size_t sp = line.find(' ');
        if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos) {
          Fail(p, absl::StrCat(Quote(line), " is not two tokens separated by one space"));
        }
        a = line.substr(0, sp);
        b = line.substr(sp + 1);
      } else if (e.is_array()) {
        if (form == 1) Fail(p, "a pair among \"a b\" strings (the merges must all be of one form)");
        form = 2;
        if (e.size() != 2 || !e[0].is_string() || !e[1].is_string()) Fail(p, "expected a pair of two strings");
        a = e[0].get<std::string>();
        b = e[1].get<std::string>();
      } else {
        Fail(p, absl::StrCat("expected \"a b\" or [\"a\", \"b\"], found ", Kind(e)));
      }
      const int32_t ia = VocabId(*m, a, p, "the merge's first token");
      const int32_t ib = VocabId(*m, b, p, "the merge's second token");
      if (b.size() < prefix_len || (prefix_len > 0 && b.compare(0, prefix_len, m->prefix_) != 0)) {
        Fail(p, absl::StrCat("the merge's second token ", Quote(b), " does not start with continuing_subword_prefix"));
      }
      merged = a + b.substr(prefix_len);
      const int32_t inew = VocabId(*m, merged, p, "the merged token");
      m->merges_[BpeModel::Key(ia, ib)] = {rank++, inew};  // a repeated pair keeps its last rank, as HF's map
    }
    return m;
  }

  std::unique_ptr<PostProcessor> ParsePost(const json& j, const std::string& path, int depth = 0) {
    Depth(path, depth);
    const std::string t = Type(j, path);
    auto pair_token = [&](const char* key) {
      const std::string p = Sub(path, key);
      const json& v = Need(j, path, key);
      if (!v.is_array() || v.size() != 2) Fail(p, "expected [token, id]");
      const std::string tok = Str(v[0], At(p, 0));
      const int64_t id = Int(v[1], At(p, 1), 0, INT32_MAX);
      CheckId(static_cast<int32_t>(id), tok, At(p, 1));
      return static_cast<int32_t>(id);
    };
    if (t == "BertProcessing") {
      const int32_t sep = pair_token("sep"), cls = pair_token("cls");
      return std::make_unique<BertProcessor>(sep, cls);
    }
    if (t == "RobertaProcessing") {
      const int32_t sep = pair_token("sep"), cls = pair_token("cls");
      Bool(j, path, "trim_offsets", true);
      Bool(j, path, "add_prefix_space", true);
      return std::make_unique<RobertaProcessor>(sep, cls);
    }
    if (t == "ByteLevel") return std::make_unique<NoopProcessor>();
    if (t == "TemplateProcessing") return ParseTemplate(j, path);
    if (t == "Sequence") {
      const json& list = Need(j, path, "processors");
      if (!list.is_array()) Fail(Sub(path, "processors"), "expected an array");
      std::vector<std::unique_ptr<PostProcessor>> v;
      for (size_t i = 0; i < list.size(); ++i) v.push_back(ParsePost(list[i], At(Sub(path, "processors"), i), depth + 1));
      return std::make_unique<SequenceProcessor>(std::move(v));
    }
    Unknown(path, "post-processor", t, "BertProcessing, RobertaProcessing, TemplateProcessing, ByteLevel, Sequence");
  }

  std::unique_ptr<PostProcessor> ParseTemplate(const json& j, const std::string& path) {
    auto tp = std::make_unique<TemplateProcessor>();
    const std::string spath = Sub(path, "special_tokens");
    const json& specials = Need(j, path, "special_tokens");
    if (!specials.is_object()) Fail(spath, "expected an object");
    absl::flat_hash_map<std::string, std::vector<int32_t>> special_ids;
    for (auto it = specials.begin(); it != specials.end(); ++it) {
      const std::string p = absl::StrCat(spath, "[", Quote(it.key()), "]");
      const json& s = it.value();
      if (!s.is_object()) Fail(p, "expected {\"id\", \"ids\", \"tokens\"}");
      const json& ids = Need(s, p, "ids");
      const json& toks = Need(s, p, "tokens");
      if (!ids.is_array() || !toks.is_array()) Fail(p, "\"ids\" and \"tokens\" must be arrays");
      if (ids.size() != toks.size()) Fail(p, "\"ids\" and \"tokens\" differ in length");
      std::vector<int32_t> v;
      for (size_t k = 0; k < ids.size(); ++k) {
        const int32_t id = static_cast<int32_t>(Int(ids[k], At(Sub(p, "ids"), k), 0, INT32_MAX));
        CheckId(id, Str(toks[k], At(Sub(p, "tokens"), k)), At(Sub(p, "ids"), k));
        v.push_back(id);
      }
      special_ids[it.key()] = std::move(v);
    }
    auto parse = [&](const char* key, bool pair) {
      const std::string p = Sub(path, key);
      const json& list = Need(j, path, key);
      if (!list.is_array()) Fail(p, "expected an array of {\"Sequence\"} / {\"SpecialToken\"} pieces");
      std::vector<TemplateProcessor::Piece> out;
      bool has_a = false, has_b = false;
      int32_t added = 0;
      for (size_t i = 0; i < list.size(); ++i) {
        const json& e = list[i];
        const std::string ep = At(p, i);
        if (!e.is_object() || e.size() != 1) Fail(ep, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
        TemplateProcessor::Piece piece{};
        if (e.contains("Sequence")) {
          const json& s = e["Sequence"];
          const std::string sp = Sub(ep, "Sequence");
          if (!s.is_object()) Fail(sp, "expected {\"id\", \"type_id\"}");
          const std::string id = Str(Need(s, sp, "id"), Sub(sp, "id"));
          if (id != "A" && id != "B") Fail(Sub(sp, "id"), absl::StrCat("expected \"A\" or \"B\", found ", Quote(id)));
          piece.sequence = true;
          piece.seq = id == "B";
          (id == "B" ? has_b : has_a) = true;
          piece.type_id = static_cast<int32_t>(Int(Need(s, sp, "type_id"), Sub(sp, "type_id"), 0, 1 << 20));
        } else if (e.contains("SpecialToken")) {
          const json& s = e["SpecialToken"];
          const std::string sp = Sub(ep, "SpecialToken");
          if (!s.is_object()) Fail(sp, "expected {\"id\", \"type_id\"}");
          const std::string id = Str(Need(s, sp, "id"), Sub(sp, "id"));
          auto it = special_ids.find(id);
          if (it == special_ids.end()) Fail(Sub(sp, "id"), absl::StrCat(Quote(id), " is not in special_tokens"));
          piece.sequence = false;
          piece.ids = it->second;
          added += static_cast<int32_t>(it->second.size());
          piece.type_id = static_cast<int32_t>(Int(Need(s, sp, "type_id"), Sub(sp, "type_id"), 0, 1 << 20));
        } else {
          Fail(ep, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
        }
        out.push_back(std::move(piece));
      }
      if (pair && (!has_a || !has_b)) Fail(p, "the pair template must contain both $A and $B");
      if (!pair && has_b) Fail(p, "the single template must not contain $B");
      return std::make_pair(std::move(out), added);
    };
    std::tie(tp->single_, tp->added_single_) = parse("single", false);
    std::tie(tp->pair_, tp->added_pair_) = parse("pair", true);
    return tp;
  }

  // A special token a post-processor names: its id must be the one the tokenizer gives it.
  void CheckId(int32_t id, const std::string& token, const std::string& path) {
    pending_.push_back({id, token, path});
  }

  void ParseAddedTokens(const json& list, const std::string& path) {
    if (!list.is_array()) Fail(path, absl::StrCat("expected an array, found ", Kind(list)));
    const Model& m = *p_->model;
    int32_t next_id = static_cast<int32_t>(m.vocab_.size());
    for (size_t i = 0; i < list.size(); ++i) {
      const json& e = list[i];
      const std::string p = At(path, i);
      if (!e.is_object()) Fail(p, "expected an object");
      AddedToken t;
      t.content = Str(Need(e, p, "content"), Sub(p, "content"));
      if (t.content.empty()) Fail(Sub(p, "content"), "is empty");
      const int64_t declared = Int(Need(e, p, "id"), Sub(p, "id"), 0, INT32_MAX);
      t.single_word = Bool(e, p, "single_word", false);
      t.lstrip = Bool(e, p, "lstrip", false);
      t.rstrip = Bool(e, p, "rstrip", false);
      t.special = Bool(e, p, "special", false);
      t.normalized = Bool(e, p, "normalized", !t.special);
      if (p_->added_ids.contains(t.content)) Fail(Sub(p, "content"), absl::StrCat(Quote(t.content), " is added twice"));
      auto it = m.vocab_.find(t.content);
      t.id = it != m.vocab_.end() ? it->second : next_id++;  // as HF assigns them, whatever the file says
      if (declared != t.id) {
        Fail(Sub(p, "id"), absl::StrCat("is ", declared, ", but ", Quote(t.content), " gets id ", t.id,
                                         it != m.vocab_.end() ? " (its id in model.vocab)"
                                                              : " (the next id after model.vocab and the added "
                                                                "tokens before it)"));
      }
      p_->added_ids[t.content] = t.id;
      p_->added.push_back(std::move(t));
    }
    p_->vocab_size = next_id;
    for (size_t k = 0; k < p_->added.size(); ++k) {
      AddedToken& t = p_->added[k];
      if (!t.normalized) {
        p_->raw_trie.Add(t.content, static_cast<int32_t>(k));
        continue;
      }
      std::string pattern = t.content;
      bool kept = true;
      if (p_->normalizer != nullptr) p_->normalizer->Normalize(&pattern, &kept);
      if (pattern.empty()) Fail(Sub(At(path, k), "content"), "normalizes to the empty string");
      p_->normalized_trie.Add(pattern, static_cast<int32_t>(k));
    }
  }

  void Finish() {
    for (const auto& c : pending_) {
      if (c.id >= p_->vocab_size) {
        Fail(c.path, absl::StrCat("id ", c.id, " of ", Quote(c.token), " is not below the vocabulary size ", p_->vocab_size));
      }
    }
  }

  void ParseTop(const json& root) {
    if (!root.is_object()) Fail("(top level)", absl::StrCat("expected a JSON object, found ", Kind(root)));
    if (const json* v = Opt(root, "version")) {
      if (Str(*v, "version") != "1.0") Fail("version", absl::StrCat("unknown tokenizer.json version ", Quote(v->get<std::string>())));
    }
    for (const char* k : {"truncation", "padding"}) {
      if (const json* v = Opt(root, k); v != nullptr && !v->is_object()) Fail(k, "expected an object or null");
    }
    const json& model = Need(root, "(top level)", "model");
    if (const json* n = Opt(root, "normalizer")) {
      p_->normalizer = ParseNormalizer(*n, "normalizer");
      p_->settings["normalizer"] = *n;
    }
    if (const json* n = Opt(root, "pre_tokenizer")) {
      p_->pre_tokenizer = ParsePreTokenizer(*n, "pre_tokenizer");
      p_->settings["pre_tokenizer"] = *n;
    }
    p_->model = ParseModel(model, "model");
    json msum = json::object();
    for (auto it = model.begin(); it != model.end(); ++it) {
      if (it.key() != "vocab" && it.key() != "merges") msum[it.key()] = it.value();
    }
    msum["vocab_entries"] = p_->model->vocab_.size();
    if (model.contains("merges") && model["merges"].is_array()) msum["merges_entries"] = model["merges"].size();
    p_->settings["model"] = msum;
    if (const json* a = Opt(root, "added_tokens")) {
      ParseAddedTokens(*a, "added_tokens");
      json list = json::array();
      for (const AddedToken& t : p_->added) {
        list.push_back({{"id", t.id}, {"content", t.content}, {"special", t.special}, {"normalized", t.normalized},
                        {"lstrip", t.lstrip}, {"rstrip", t.rstrip}, {"single_word", t.single_word}});
      }
      p_->settings["added_tokens"] = list;
    } else {
      p_->vocab_size = static_cast<int64_t>(p_->model->vocab_.size());
    }
    if (const json* pp = Opt(root, "post_processor")) {
      p_->post = ParsePost(*pp, "post_processor");
      p_->settings["post_processor"] = *pp;
    }
    Finish();
  }

 private:
  struct PendingId {
    int32_t id;
    std::string token, path;
  };
  Pipeline* p_;
  std::vector<PendingId> pending_;
};

// truncate_encodings, longest_first, direction right, stride 0.
void Truncate(Enc* a, Enc* b, int64_t max_length) {
  auto cut = [](Enc* e, size_t n) {
    if (e->ids.size() > n) {
      e->ids.resize(n);
      e->type_ids.resize(n);
    }
  };
  if (max_length == 0) {
    cut(a, 0);
    if (b != nullptr) cut(b, 0);
    return;
  }
  const size_t total = a->ids.size() + (b != nullptr ? b->ids.size() : 0);
  const size_t max = static_cast<size_t>(max_length);
  if (total <= max) return;
  if (b == nullptr) {
    cut(a, max);
    return;
  }
  size_t n1 = a->ids.size(), n2 = b->ids.size();
  const bool swap = n1 > n2;
  if (swap) std::swap(n1, n2);
  if (n1 > max) {
    n2 = n1;
  } else {
    n2 = std::max(n1, max - n1);
  }
  if (n1 + n2 > max) {
    n1 = max / 2;
    n2 = n1 + max % 2;
  }
  if (swap) std::swap(n1, n2);
  cut(a, n1);
  cut(b, n2);
}

}  // namespace
}  // namespace tokjson

int UnicodeAge(int32_t c) {
#ifdef FTUNE_HAVE_ICU
  UVersionInfo age;
  u_charAge(c, age);
  return age[0] * 10 + age[1];
#else
  (void)c;
  return -1;
#endif
}

JsonTokenizer::JsonTokenizer() = default;
JsonTokenizer::~JsonTokenizer() = default;

absl::StatusOr<std::unique_ptr<JsonTokenizer>> JsonTokenizer::FromFile(const std::string& path) {
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return FromJson(text, path);
}

absl::StatusOr<std::unique_ptr<JsonTokenizer>> JsonTokenizer::FromJson(absl::string_view text, absl::string_view name) {
  using tokjson::json;
  json root;
  try {
    root = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    std::string what = e.what();
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": not valid JSON (", utf8::Printable(what, 200), "); is this a tokenizer.json?"));
  }
  auto t = std::unique_ptr<JsonTokenizer>(new JsonTokenizer());
  t->p_ = std::make_unique<tokjson::Pipeline>();
  t->sha256_ = Sha256Hex(text);
  try {
    tokjson::Parser(t->p_.get()).ParseTop(root);
  } catch (const tokjson::ParseError& e) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", e.message));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", utf8::Printable(e.what(), 200)));
  }
  t->p_->settings["type"] = "tokenizer.json";
  t->p_->settings["sha256"] = t->sha256_;
  t->p_->settings["vocab_size"] = t->p_->vocab_size;
  t->p_->settings["truncation"] = "longest_first, right (transformers' truncation=True)";
  t->p_->settings["reference"] = "huggingface tokenizers 0.23 (Tokenizer.from_file)";
  return t;
}

void JsonTokenizer::EncodeSequence(absl::string_view text, std::vector<int32_t>* ids) const { p_->EncodeOne(text, ids); }

void JsonTokenizer::Encode(absl::string_view a, const absl::string_view* b, int32_t max_length,
                           std::vector<int32_t>* ids, std::vector<int32_t>* type_ids, int64_t* untruncated) const {
  tokjson::Enc ea, eb;
  const int32_t added = num_special_tokens(b != nullptr);
  // With truncation HF stops tokenizing each sequence once it has max_length tokens (which
  // matters for pairs: longest_first then sees those lengths); the untruncated length is counted
  // without that stop.
  const size_t limit = max_length > 0 ? static_cast<size_t>(max_length) : 0;
  size_t na = 0, nb = 0;
  size_t* want = untruncated != nullptr ? &na : nullptr;
  p_->EncodeOne(a, &ea.ids, limit, want);
  if (b != nullptr) p_->EncodeOne(*b, &eb.ids, limit, untruncated != nullptr ? &nb : nullptr);
  if (untruncated != nullptr) {
    *untruncated = static_cast<int64_t>(ea.ids.size() + eb.ids.size()) + added;
    if (limit > 0) {
      ea.ids.resize(na);
      eb.ids.resize(nb);
    }
  }
  ea.type_ids.assign(ea.ids.size(), 0);
  eb.type_ids.assign(eb.ids.size(), 1);
  if (max_length > 0) tokjson::Truncate(&ea, b != nullptr ? &eb : nullptr, std::max(0, max_length - added));
  std::vector<tokjson::Enc> encs;
  encs.push_back(std::move(ea));
  if (b != nullptr) encs.push_back(std::move(eb));
  if (p_->post != nullptr) p_->post->Process(&encs);
  ids->clear();
  if (type_ids != nullptr) type_ids->clear();
  for (const auto& e : encs) {
    ids->insert(ids->end(), e.ids.begin(), e.ids.end());
    if (type_ids != nullptr) type_ids->insert(type_ids->end(), e.type_ids.begin(), e.type_ids.end());
  }
}

std::vector<std::string> JsonTokenizer::Words(absl::string_view text) const {
  std::vector<std::string> words;
  p_->EncodeOne(text, nullptr, 0, nullptr, &words);
  return words;
}

int32_t JsonTokenizer::num_special_tokens(bool pair) const { return p_->post != nullptr ? p_->post->Added(pair) : 0; }

bool JsonTokenizer::pair_type_ids() const {
  std::vector<int32_t> ids, types;
  const absl::string_view b = "b";
  Encode("a", &b, 0, &ids, &types);
  for (int32_t t : types) {
    if (t != 0) return true;
  }
  return false;
}

int64_t JsonTokenizer::vocab_size() const { return p_->vocab_size; }

int32_t JsonTokenizer::token_id(absl::string_view token) const {
  if (auto it = p_->added_ids.find(token); it != p_->added_ids.end()) return it->second;
  if (auto it = p_->model->vocab_.find(token); it != p_->model->vocab_.end()) return it->second;
  return -1;
}

std::string JsonTokenizer::SettingsJson() const { return p_->settings.dump(); }

}  // namespace ftune::prep
