// Helpers of the bad-input tests: the error contract every parser keeps (the specific code, one
// line of valid UTF-8 without control characters, bounded, naming the file and what is wrong), and
// a snapshot of a directory so a test can prove a failed writer left nothing behind.
#pragma once

#include <dirent.h>
#include <sys/stat.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "common/files.h"
#include "common/utf8.h"
#include "gtest/gtest.h"

namespace ftune::hardening {

inline constexpr size_t kMaxMessageBytes = 2048;

// `st` is an error with `code` whose message is one printable line that contains every `part`.
inline ::testing::AssertionResult IsOneLineError(const absl::Status& st, absl::StatusCode code,
                                                 const std::vector<std::string>& parts) {
  if (st.ok()) return ::testing::AssertionFailure() << "expected " << absl::StatusCodeToString(code) << ", got OK";
  if (st.code() != code) {
    return ::testing::AssertionFailure() << "expected " << absl::StatusCodeToString(code) << ", got " << st;
  }
  absl::string_view m = st.message();
  if (m.size() > kMaxMessageBytes) return ::testing::AssertionFailure() << "message of " << m.size() << " bytes";
  if (utf8::FindInvalid(m) != absl::string_view::npos) {
    return ::testing::AssertionFailure() << "message is not valid UTF-8: " << st;
  }
  for (char c : m) {
    if (static_cast<unsigned char>(c) < 0x20) {
      return ::testing::AssertionFailure() << "message has control byte " << int(c) << ": " << utf8::Printable(m, 4096);
    }
  }
  for (const std::string& p : parts) {
    if (!absl::StrContains(m, p)) return ::testing::AssertionFailure() << "no '" << p << "' in: " << st;
  }
  return ::testing::AssertionSuccess();
}

// name -> contents of every regular file in `dir` (one level).
inline std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      auto contents = ReadFileToString(dir + "/" + n);
      out[n] = contents.ok() ? *contents : "<unreadable>";
    }
    closedir(d);
  }
  return out;
}

inline double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace ftune::hardening
