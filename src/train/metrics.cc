#include "train/metrics.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace ftune::train {

absl::StatusOr<MetricsLog> MetricsLog::Open(const std::string& path, bool enabled) {
  MetricsLog log;
  log.enabled_ = enabled;
  log.tty_ = enabled && isatty(fileno(stderr));
  if (enabled && !path.empty()) {
    log.file_ = std::fopen(path.c_str(), "a");
    if (log.file_ == nullptr) {
      return absl::UnavailableError(absl::StrFormat("cannot open %s: %s", path, std::strerror(errno)));
    }
  }
  return log;
}

MetricsLog::MetricsLog(MetricsLog&& o) noexcept { *this = std::move(o); }
MetricsLog& MetricsLog::operator=(MetricsLog&& o) noexcept {
  std::swap(file_, o.file_);
  enabled_ = o.enabled_;
  tty_ = o.tty_;
  progress_shown_ = o.progress_shown_;
  return *this;
}
MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::Write(const nlohmann::json& record) {
  if (!enabled_ || file_ == nullptr) return;
  std::string line = record.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

void MetricsLog::Progress(const std::string& line) {
  if (!tty_) return;
  std::fprintf(stderr, "\r%-100s", line.c_str());
  std::fflush(stderr);
  progress_shown_ = true;
}

void MetricsLog::EndProgress() {
  if (tty_ && progress_shown_) std::fprintf(stderr, "\r%-100s\r", "");
  progress_shown_ = false;
}

std::string FormatDuration(double s) {
  if (s < 60) return absl::StrFormat("%.1fs", s);
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t < 3600) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%dh%02dm", t / 3600, (t % 3600) / 60);
}

}  // namespace ftune::train
