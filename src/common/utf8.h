// Strict UTF-8 decoding/encoding (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF), shared
// by the input readers (validation with positions) and the tokenizer, and Printable(): the one way
// ftune quotes bytes from a file in an error message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace ftune::utf8 {

// Decodes the code point at s[i]. On success returns it and sets *len to its byte length;
// on an invalid sequence returns -1 and sets *len = 1.
inline int32_t Decode(absl::string_view s, size_t i, size_t* len) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const size_t n = s.size();
  const uint8_t c = b(i);
  *len = 1;
  if (c < 0x80) return c;
  int need;
  int32_t cp;
  int32_t min;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1, cp = c & 0x1F, min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2, cp = c & 0x0F, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3, cp = c & 0x07, min = 0x10000;
  } else {
    return -1;
  }
  if (i + static_cast<size_t>(need) >= n) return -1;  // truncated sequence
  for (int k = 1; k <= need; ++k) {
    const uint8_t d = b(i + static_cast<size_t>(k));
    if ((d & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (d & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  *len = static_cast<size_t>(need) + 1;
  return cp;
}

// Byte offset of the first invalid sequence in `s`, or npos when `s` is valid UTF-8.
inline size_t FindInvalid(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    if (Decode(s, i, &len) < 0) return i;
    i += len;
  }
  return absl::string_view::npos;
}

inline void Append(int32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// `s` (bytes from an input file) made safe to quote in a one-line error message: valid UTF-8 is
// kept, C0 control characters and invalid bytes become \xNN (\n, \r and \t as such), and input
// past `max_bytes` is cut at a character boundary and marked with its full size.
inline std::string Printable(absl::string_view s, size_t max_bytes = 64) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  size_t i = 0;
  while (i < s.size() && i < max_bytes) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    size_t len = 1;
    if (c >= 0x80 && Decode(s, i, &len) >= 0) {
      out.append(s.data() + i, len);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c >= 0x80) {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
    i += len;
  }
  if (i < s.size()) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

}  // namespace ftune::utf8
