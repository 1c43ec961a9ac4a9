// Shared helpers of the libFuzzer targets in tests/fuzz: an always-on invariant check that aborts
// with a readable reason (libFuzzer then saves the input as a crash), and the error-message
// contract every parser keeps: one line, valid UTF-8, bounded length, naming the input.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "common/utf8.h"

namespace ftune::fuzz {

[[noreturn]] inline void Fail(const char* file, int line, const char* cond, const std::string& detail) {
  std::fprintf(stderr, "\n*** invariant violated at %s:%d: %s\n*** %s\n", file, line, cond, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

// FUZZ_CHECK(cond, detail): `detail` (a std::string expression) is evaluated only on failure.
#define FUZZ_CHECK(cond, detail)                                           \
  do {                                                                     \
    if (!(cond)) ::ftune::fuzz::Fail(__FILE__, __LINE__, #cond, (detail)); \
  } while (0)

// Longest error message a parser may produce, whatever the input (no echo of a 100 MB field).
inline constexpr size_t kMaxMessageBytes = 2048;

// An error status keeps the contract: one of `codes`, a single line of valid UTF-8 with no C0
// control characters (no line break, NUL or ESC: nothing can forge log lines or drive a terminal),
// at most kMaxMessageBytes, and it names the input (`must_contain`, e.g. the file label).
inline void CheckError(const absl::Status& st, absl::string_view must_contain,
                       std::initializer_list<absl::StatusCode> codes) {
  const std::string text = st.ToString();
  FUZZ_CHECK(!st.ok(), "expected an error");
  bool code_ok = false;
  for (absl::StatusCode c : codes) code_ok |= st.code() == c;
  FUZZ_CHECK(code_ok, "unexpected status code: " + text);
  absl::string_view m = st.message();
  FUZZ_CHECK(!m.empty(), "empty message: " + text);
  FUZZ_CHECK(m.size() <= kMaxMessageBytes,
             "message of " + std::to_string(m.size()) + " bytes: " + std::string(m.substr(0, 300)) + "...");
  FUZZ_CHECK(utf8::FindInvalid(m) == absl::string_view::npos, "message is not valid UTF-8: " + text);
  for (char c : m) {
    const auto u = static_cast<unsigned char>(c);
    FUZZ_CHECK(u >= 0x20, "message has control byte " + std::to_string(u) + ": " + text);
  }
  FUZZ_CHECK(absl::StrContains(m, must_contain), "message does not name '" + std::string(must_contain) + "': " + text);
}

}  // namespace ftune::fuzz
