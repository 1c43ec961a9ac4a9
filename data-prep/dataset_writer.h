// Writes an ftune token dataset (layout: src/data/dataset_format.h) by appending batches of
// examples to chunked, compressed, extendible datasets. Everything goes to a temp file next to the
// output, renamed onto it only by Finish(); a writer destroyed before Finish() deletes the temp
// file, so a failed prep never leaves a half-written dataset.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "data/token_dataset.h"

namespace ftune::prep {

class DatasetWriter {
 public:
  // Token ids are stored as uint16 when vocab_size <= 65536, else int32. Without `labeled`, the
  // dataset has no labels (no `labels` dataset, no label_names): text for pretraining.
  // `regression`: the labels are floats (Append's `targets`), and there are no label_names.
  // `type_ids`: a token_type_ids dataset beside input_ids (Append's `type_ids`).
  static absl::StatusOr<std::unique_ptr<DatasetWriter>> Create(const std::string& path, int64_t vocab_size,
                                                               bool labeled = true, bool regression = false,
                                                               bool type_ids = false);
  ~DatasetWriter();

  // Appends examples (ids[i] with labels[i]; `labels` empty when unlabeled); ids must be in
  // [0, vocab_size).
  // A regression dataset takes `targets` (one per example) instead of `labels`; a dataset with
  // token_type_ids takes `type_ids` (as long as each example's ids, values in [0, 255]).
  absl::Status Append(const std::vector<std::vector<int32_t>>& ids, const std::vector<int32_t>& labels,
                      const std::vector<std::vector<int32_t>>* type_ids = nullptr,
                      const std::vector<float>* targets = nullptr);

  // Writes the attributes from `info` (its counts must match what was appended; label_names and
  // label_mapping only when labeled), closes the file and renames it onto the output path.
  absl::Status Finish(const data::DatasetInfo& info);

  int64_t num_examples() const { return num_examples_; }
  int64_t num_tokens() const { return num_tokens_; }
  const char* token_type() const { return uint16_ ? "uint16" : "int32"; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  struct Hdf5;
  DatasetWriter() = default;
  void Abandon();

  std::string path_, temp_path_;
  int64_t vocab_size_ = 0;
  bool uint16_ = true;
  bool labeled_ = true, regression_ = false, type_ids_ = false;
  int64_t num_examples_ = 0, num_tokens_ = 0;
  std::unique_ptr<Hdf5> h5_;
  bool finished_ = false;
};

}  // namespace ftune::prep
