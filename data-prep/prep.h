// `ftune prep` as a library call: CSV (or JSONL of token ids) -> tokenized HDF5 token dataset.
// Options come from the CLI (src/cli/prep_command.cc) or tests; nothing here reads flags or prints.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/status.h"

namespace ftune::prep {

enum class InputFormat { kCsv, kJsonl };
absl::StatusOr<InputFormat> ParseInputFormat(absl::string_view name);  // "csv" | "jsonl"

struct PrepProgress {
  int64_t examples = 0;    // written so far
  int64_t bytes_done = 0;  // of the input file
  int64_t bytes_total = 0;
  double seconds = 0;
};

struct PrepOptions {
  std::string input;   // CSV with a header row, or JSONL ({"ids": [...], "label": n} per line)
  std::string output;  // .h5 path; written to a temp file and renamed only on success
  std::string vocab;   // vocab.txt: tokenizes CSV text; for JSONL, bounds the ids and is recorded
  // tokenizer.json (HF's fast-tokenizer file): tokenizes instead of `vocab` when set.
  std::string tokenizer_json;
  // The model's config.json (optional): problem_type "regression" or a single label (num_labels /
  // id2label) makes the labels floats, as HF does.
  std::string model_config;
  InputFormat input_format = InputFormat::kCsv;
  std::string text_column = "review";
  std::string label_column = "label";  // empty: no labels (CSV and JSONL); the dataset has none
  // CSV column of the second text of sentence pairs (HF's text_pair); empty: single texts.
  std::string text_pair_column;
  // Label names, label k = labels[k]. Empty: binary 0/1, negative/positive, neg/pos.
  std::vector<std::string> labels;
  // Longest sequence including the special tokens; longer texts are cut as HF's truncation=True
  // (a single text keeps its first max_length - 2 pieces with BERT; pairs: longest_first). JSONL
  // ids longer than this keep their first max_length - 1 ids and their last one.
  int32_t max_length = 512;
  int threads = 0;                                    // tokenizer threads, 0 = all hardware threads
  int64_t batch_size = 4096;                          // examples tokenized together and appended per HDF5 write
  std::function<void(const PrepProgress&)> progress;  // called after every batch, if set
};

struct PrepSummary {
  std::string input, output;
  int64_t num_examples = 0;
  int64_t num_tokens = 0;  // stored (after truncation)
  int64_t num_truncated = 0;
  double mean_length = 0;       // stored tokens per example
  int64_t max_length = 0;       // longest stored example
  int64_t max_untruncated = 0;  // longest example before truncation
  std::vector<std::string> label_names;
  std::vector<int64_t> label_counts;
  bool regression = false;  // float labels: mean/min/max below
  double target_mean = 0, target_min = 0, target_max = 0;
  bool pairs = false, token_type_ids = false;
  std::string vocab_file = "vocab.txt";  // or tokenizer.json
  std::string token_type;  // "uint16" | "int32"
  std::string vocab_sha256, source_sha256;
  int64_t output_bytes = 0;
  int threads = 1;
  double seconds = 0;

  std::string Format() const;  // the human summary `ftune prep` prints
};

// InvalidArgument naming the option when options are inconsistent (checked by RunPrep too).
absl::Status ValidatePrepOptions(const PrepOptions& options);

// Errors name the file and line: InvalidArgument for bad input (unterminated quote, missing column,
// invalid UTF-8, unknown label, empty file, bad JSON), NotFound for missing files. On any error no
// output file is left behind.
absl::StatusOr<PrepSummary> RunPrep(const PrepOptions& options);

}  // namespace ftune::prep
