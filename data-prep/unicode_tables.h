// Per-code-point character classes of Hugging Face's BERT normalizer and pre-tokenizer, exactly as
// `tokenizers` 0.23.2 computes them, which takes each property from a different Unicode version:
// control / nonspacing-mark / punctuation categories from Unicode 8.0 (crate unicode_categories,
// with every private-use character a control character), NFD from Unicode 9.0 (crate
// unicode-normalization-alignments), lowercase and whitespace from Unicode 17.0 (Rust's std).
// The tables (unicode_tables.cc) are generated from those versions' UCD files by
// data-prep/gen_unicode_tables.py, which documents the sources; the tokenizer (the only user) is
// checked against HF on every code point by tests/data-prep/tokenizer_oracle_test.cc.
#pragma once

#include <cstdint>

namespace ftune::prep::unicode {

enum CharFlags : uint8_t {
  kDrop = 1,       // clean_text removes it: U+0000, U+FFFD, Cc/Cf/Co (8.0) except \t \n \r
  kSpace = 2,      // char::is_whitespace (White_Space, 17.0): clean_text's ' ', the pre-tokenizer's split
  kCjk = 4,        // is_chinese_char: handle_chinese_chars puts spaces around it
  kMn = 8,         // nonspacing mark (8.0): strip_accents removes it (after NFD)
  kPunct = 16,     // ASCII punctuation or P* (8.0): the pre-tokenizer makes it a word of its own
  kHangul = 32,    // precomposed Hangul syllable: NFD decomposes it arithmetically
  kLowerSeq = 64,  // lowercases to several characters: `lower` is an offset into the lower pool
};

// One character's properties. Characters with equal properties share a record.
struct CharRecord {
  uint8_t flags;  // CharFlags
  uint8_t ccc;    // canonical combining class (9.0): NFD reorders runs of ccc != 0 by it
  uint16_t nfd;   // 0, or an offset into the NFD pool of [n, c1..cn]: the full canonical decomposition
  int32_t lower;  // to_lowercase: c + lower (or, with kLowerSeq, an offset into the lower pool of [n, c1..cn])
};

namespace internal {
inline constexpr int kBlockBits = 8;
extern const CharRecord kRecords[];
extern const uint16_t kStage1[];  // code point >> kBlockBits -> block
extern const uint16_t kStage2[];  // block << kBlockBits | low bits -> record
extern const int32_t kNfdPool[];
extern const int32_t kLowerPool[];
}  // namespace internal

// `c` must be a Unicode scalar value (0..0x10FFFF, not a surrogate).
inline const CharRecord& Lookup(int32_t c) {
  using namespace internal;
  const uint32_t block = kStage1[static_cast<uint32_t>(c) >> kBlockBits];
  return kRecords[kStage2[(block << kBlockBits) | (static_cast<uint32_t>(c) & ((1u << kBlockBits) - 1))]];
}

// Writes the canonical decomposition (NFD, before reordering) of `c` to out[0..3] and returns its
// length (1 when `c` does not decompose; at most 4).
inline int Decompose(int32_t c, const CharRecord& r, int32_t out[4]) {
  if (r.flags & kHangul) {  // Unicode 3.12: L V [T]
    const int32_t s = c - 0xAC00;
    out[0] = 0x1100 + s / (21 * 28);
    out[1] = 0x1161 + (s % (21 * 28)) / 28;
    if (s % 28 == 0) return 2;
    out[2] = 0x11A7 + s % 28;
    return 3;
  }
  if (r.nfd == 0) {
    out[0] = c;
    return 1;
  }
  const int32_t* p = internal::kNfdPool + r.nfd;
  for (int32_t k = 0; k < p[0]; ++k) out[k] = p[1 + k];
  return p[0];
}

// Writes char::to_lowercase(c) to out[0..2] and returns its length (1..3).
inline int Lowercase(int32_t c, const CharRecord& r, int32_t out[3]) {
  if (!(r.flags & kLowerSeq)) {
    out[0] = c + r.lower;
    return 1;
  }
  const int32_t* p = internal::kLowerPool + r.lower;
  for (int32_t k = 0; k < p[0]; ++k) out[k] = p[1 + k];
  return p[0];
}

}  // namespace ftune::prep::unicode
