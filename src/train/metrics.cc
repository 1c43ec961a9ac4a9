#include "train/metrics.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "io/tensorboard.h"
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
  std::swap(tensorboard_, o.tensorboard_);
  enabled_ = o.enabled_;
  tty_ = o.tty_;
  progress_shown_ = o.progress_shown_;
  return *this;
}
MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

absl::Status MetricsLog::EnableTensorBoard(const std::string& dir) {
  if (!enabled_) return absl::OkStatus();
  FTUNE_ASSIGN_OR_RETURN(tensorboard_, io::TensorBoardWriter::Open(dir));
  return absl::OkStatus();
}

std::string MetricsLog::tensorboard_file() const { return tensorboard_ ? tensorboard_->path() : ""; }

void MetricsLog::Write(const nlohmann::json& record) {
  if (!enabled_) return;
  if (file_ != nullptr) {
    std::string line = record.dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), file_);
    std::fflush(file_);
  }
  const std::string type = record.value("type", "");
  if (!tensorboard_ || (type != "train" && type != "eval") || !record.contains("step")) return;
  const int64_t step = record["step"].get<int64_t>();
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  absl::Status st;
  for (const auto& [key, value] : record.items()) {
    if (!value.is_number() || key == "step") continue;
    // HF's TensorBoardCallback tags: "eval_accuracy" -> "eval/accuracy", "loss" -> "train/loss".
    std::string tag = absl::StartsWith(key, "eval_") ? "eval/" + key.substr(5) : "train/" + key;
    if (type == "eval" && !absl::StartsWith(key, "eval_")) tag = "eval/" + key;  // epoch, best_metric
    if (st.ok()) st = tensorboard_->AddScalar(tag, value.get<double>(), step, now);
  }
  if (st.ok()) st = tensorboard_->Flush();
  if (!st.ok()) {  // the run goes on; metrics.jsonl has everything
    LogWarn("TensorBoard logging stops: %s", st.message());
    tensorboard_.reset();
  }
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
