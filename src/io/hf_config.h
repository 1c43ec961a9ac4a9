// Hugging Face DistilBERT config.json: parse with validation, and write one that
// transformers' from_pretrained accepts. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace ftune::io {

struct DistilBertConfig {
  int64_t vocab_size = 30522;
  int64_t max_position_embeddings = 512;
  int64_t dim = 768;
  int64_t n_layers = 6;
  int64_t n_heads = 12;
  int64_t hidden_dim = 3072;
  double dropout = 0.1;
  double attention_dropout = 0.1;
  double seq_classif_dropout = 0.2;
  double initializer_range = 0.02;
  std::string activation = "gelu";  // "gelu" (exact erf) or "relu"
  int64_t pad_token_id = 0;
  int64_t num_labels = 2;
  std::vector<std::string> id2label;  // size num_labels; default LABEL_0, LABEL_1, ...
  // The parsed document, so a save keeps keys ftune does not interpret (e.g. transformers_version).
  std::string original_json;

  int64_t head_dim() const { return dim / n_heads; }
};

// distilbert-base-uncased's architecture with a 2-label classifier.
DistilBertConfig DefaultDistilBertConfig();

// Parses and validates. `source` names the file in error messages.
absl::StatusOr<DistilBertConfig> ParseDistilBertConfig(absl::string_view json_text, absl::string_view source);
absl::StatusOr<DistilBertConfig> LoadDistilBertConfig(const std::string& path);

// Range and consistency checks (dim % n_heads, positive sizes, dropouts in [0, 1), ...).
absl::Status ValidateDistilBertConfig(const DistilBertConfig& c, absl::string_view source);

// JSON for a DistilBertForSequenceClassification (architectures, model_type, id2label/label2id, ...).
std::string DistilBertConfigToJson(const DistilBertConfig& c);

}  // namespace ftune::io
