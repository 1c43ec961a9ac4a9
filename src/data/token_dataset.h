// Reader for the pre-tokenized HDF5 datasets written by `ftune prep` (layout: data/dataset_format.h,
// documented in data-prep/README.md). Open() validates the whole contract up front, keeps the
// per-example offsets and labels in memory, and Read() fetches any subset of examples with one
// hyperslab read, so each rank reads only its own share of the tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/status.h"

namespace ftune::data {

// The file's attributes (see dataset_format.h for their meaning).
struct DatasetInfo {
  int format_version = 0;
  int64_t num_examples = 0;
  int64_t num_tokens = 0;
  int64_t vocab_size = 0;
  std::string vocab_sha256;
  int32_t max_length = 0;                // 0 = no truncation was applied
  std::vector<std::string> label_names;  // label k is label_names[k]; empty: the dataset has no labels
  std::string source_name, source_sha256;
  std::string tokenizer_json;  // tokenizer settings as a JSON object ("{}" when absent)
  int64_t num_truncated = 0;
  std::string label_mapping_json;  // raw input label -> id, JSON object ("{}" when absent)
  std::string created_by;
  std::string token_type;  // on-disk type of input_ids: "uint16", "int32", ...
  bool regression = false;  // label_kind "regression": float labels, no label_names
  bool has_token_type_ids = false;  // the file has token_type_ids (sentence pairs)
  std::string text_pair;    // the pairs' second column (empty: single texts)
  std::string vocab_file;   // what vocab_sha256 hashes: "vocab.txt" (default) or "tokenizer.json"
};

struct Example {
  int64_t index = 0;  // position in the dataset
  int64_t label = 0;  // -1 in a dataset without labels, and in a regression dataset
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;  // token_type_ids, as long as ids; empty when the file has none
  float target = 0;               // the float label of a regression dataset
  bool has_target = false;        // a regression dataset's example
};

// Not thread-safe: one thread reads a given instance (the loader uses one reader thread).
class TokenDataset {
 public:
  // Validates everything: format version, dataset shapes and types, offsets monotonic and in range,
  // labels in [0, num_labels) (or neither labels nor label_names: an unlabeled dataset), lengths
  // <= max_length. Token ids are checked (< vocab_size) on read.
  // Errors: NotFound (no file), DataLoss (not HDF5 / broken contents, or an example of more than
  // 2^20 tokens), FailedPrecondition (not an ftune dataset or another format version),
  // ResourceExhausted (more than 2^26 examples: the index would not fit in memory).
  static absl::StatusOr<std::unique_ptr<TokenDataset>> Open(const std::string& path);

  ~TokenDataset();
  TokenDataset(const TokenDataset&) = delete;
  TokenDataset& operator=(const TokenDataset&) = delete;

  const DatasetInfo& info() const { return info_; }
  const std::string& path() const { return path_; }
  int64_t size() const { return info_.num_examples; }
  int32_t length(int64_t i) const { return static_cast<int32_t>(offsets_[i + 1] - offsets_[i]); }
  bool has_labels() const { return !info_.label_names.empty() || info_.regression; }
  bool is_regression() const { return info_.regression; }
  bool has_token_type_ids() const { return info_.has_token_type_ids; }
  int64_t label(int64_t i) const { return !info_.label_names.empty() ? labels_[i] : -1; }
  float target(int64_t i) const { return info_.regression ? targets_[i] : 0.0f; }

  // Examples `indices` (any order, duplicates allowed) with one H5Dread over an OR-ed hyperslab
  // selection; the result is in the order of `indices`. OutOfRange for a bad index, DataLoss for a
  // token id outside [0, vocab_size).
  absl::StatusOr<std::vector<Example>> Read(absl::Span<const int64_t> indices) const;

  // FailedPrecondition naming both hashes and the file when the dataset was tokenized with another
  // vocabulary than the model's.
  absl::Status CheckVocab(absl::string_view vocab_sha256, int64_t vocab_size) const;

 private:
  struct Hdf5;  // open file + dataset handles (keeps hdf5.h out of this header)
  TokenDataset() = default;

  std::string path_;
  DatasetInfo info_;
  std::vector<int64_t> offsets_;  // num_examples + 1
  std::vector<int64_t> labels_;
  std::vector<float> targets_;  // regression labels
  std::unique_ptr<Hdf5> h5_;
};

}  // namespace ftune::data
