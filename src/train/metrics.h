// Run metrics: rank 0 appends one JSON object per line to <output_dir>/metrics.jsonl (a log step,
// an evaluation, or the run summary) and prints a human line per epoch; a live progress line on
// stderr when it is a terminal. Other ranks write nothing. With TensorBoard on, every number of a
// train or eval record also becomes a scalar at its step, under HF's TensorBoardCallback tags
// ("train/loss", "train/learning_rate", "eval/accuracy", "eval/macro_f1", ...).
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "common/status.h"
#include "nlohmann/json_fwd.hpp"

namespace ftune::io {
class TensorBoardWriter;
}

namespace ftune::train {

class MetricsLog {
 public:
  // `path` empty: no file (tests). Only the process with `enabled` writes.
  static absl::StatusOr<MetricsLog> Open(const std::string& path, bool enabled);
  MetricsLog(MetricsLog&&) noexcept;
  MetricsLog& operator=(MetricsLog&&) noexcept;
  ~MetricsLog();

  void Write(const nlohmann::json& record);  // one line, flushed
  bool enabled() const { return enabled_; }
  // Also write TensorBoard event files into `dir` (a new file per run or resume); rank 0 only.
  absl::Status EnableTensorBoard(const std::string& dir);
  std::string tensorboard_file() const;

  // "\r[epoch 1/3] step 120/250 loss 0.512 12.3 samples/s eta 1m02s" on a terminal; nothing otherwise.
  void Progress(const std::string& line);
  void EndProgress();

 private:
  MetricsLog() = default;
  std::FILE* file_ = nullptr;
  std::unique_ptr<io::TensorBoardWriter> tensorboard_;
  bool enabled_ = false;
  bool tty_ = false;
  bool progress_shown_ = false;
};

std::string FormatDuration(double seconds);  // "1h02m", "3m05s", "12.3s"

}  // namespace ftune::train
