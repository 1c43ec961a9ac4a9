#include "common/log.h"

#include <mutex>

namespace ftune {
namespace {
int g_rank = 0;
int g_world = 1;
std::mutex g_mu;

std::string Tag() { return g_world > 1 ? absl::StrFormat("[rank %d] ", g_rank) : std::string(); }
}  // namespace

void SetLogRank(int rank, int world_size) {
  g_rank = rank;
  g_world = world_size;
}
int LogRank() { return g_rank; }
bool IsLogRankZero() { return g_rank == 0; }

void LogInfoLine(const std::string& line) {
  if (g_rank != 0) return;
  std::lock_guard<std::mutex> lock(g_mu);
  std::fprintf(stdout, "%s\n", line.c_str());
  std::fflush(stdout);
}
void LogWarnLine(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_mu);
  std::fprintf(stderr, "%swarning: %s\n", Tag().c_str(), line.c_str());
}
void LogErrorLine(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_mu);
  std::fprintf(stderr, "%serror: %s\n", Tag().c_str(), line.c_str());
}

}  // namespace ftune
