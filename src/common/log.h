// Rank-aware logging. Progress goes to stdout from rank 0 only; warnings and errors go to stderr
// from any rank, tagged with the rank when the world has more than one process.
#pragma once

#include <cstdio>
#include <string>

#include "absl/strings/str_format.h"

namespace ftune {

// Set once by the distributed context (dist/) after MPI_Init; defaults to a single process.
void SetLogRank(int rank, int world_size);
int LogRank();
bool IsLogRankZero();

void LogInfoLine(const std::string& line);   // rank 0 only, stdout
void LogWarnLine(const std::string& line);   // any rank, stderr, "[rank r] warning: ..."
void LogErrorLine(const std::string& line);  // any rank, stderr, "[rank r] error: ..."

template <typename... Args>
void LogInfo(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  if (IsLogRankZero()) LogInfoLine(absl::StrFormat(fmt, args...));
}
template <typename... Args>
void LogWarn(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  LogWarnLine(absl::StrFormat(fmt, args...));
}
template <typename... Args>
void LogError(const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  LogErrorLine(absl::StrFormat(fmt, args...));
}

}  // namespace ftune
