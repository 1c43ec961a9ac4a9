// Hugging Face model directories <-> ftune models: config.json + model.safetensors.
//
// Loading accepts both layouts users have: a saved DistilBertForSequenceClassification (every
// weight), and the hub's distilbert-base-uncased (DistilBertForMaskedLM: `distilbert.*` plus MLM
// head keys, which are ignored; the classifier head is then initialised fresh, as HF does). A bare
// DistilBertModel (`embeddings.*`, `transformer.*`) loads too. Missing encoder weights and shape
// mismatches are errors; every decision is listed in the LoadReport.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "common/status.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/distilbert.h"

namespace ftune::model {

struct LoadReport {
  std::vector<std::string> loaded;      // model parameter names filled from the file
  std::vector<std::string> fresh;       // model parameters the file lacks, initialised fresh (head only)
  std::vector<std::string> ignored;     // file tensors deliberately unused (MLM head)
  std::vector<std::string> unexpected;  // file tensors matching nothing (warned about)
  std::string Summary() const;          // one paragraph for the log
};

struct LoadedModel {
  io::DistilBertConfig config;
  DistilBertForSequenceClassification model{nullptr};
  LoadReport report;
  std::string source;  // directory or config path, or "default"
};

// `dir` holds config.json and model.safetensors. `num_labels` > 0 overrides the config's.
absl::StatusOr<LoadedModel> LoadPretrained(const std::string& dir, const ModelOptions& options = {},
                                           int64_t num_labels = 0);
// Random init (HF's scheme) from a config.json, or from `config` directly.
absl::StatusOr<LoadedModel> BuildFromConfigFile(const std::string& path, const ModelOptions& options = {},
                                                int64_t num_labels = 0);
LoadedModel BuildFromConfig(const io::DistilBertConfig& config, const ModelOptions& options = {});

// Writes config.json + model.safetensors that transformers' from_pretrained loads. Each file is
// written atomically. Refuses models that still carry unmerged adapter layers.
absl::Status SavePretrained(DistilBertForSequenceClassification& model, const std::string& dir);

// --- lower-level pieces, shared with adapters and checkpoints ---

// A CPU tensor holding a copy of `view` (exactly one copy out of the mapped file).
torch::Tensor TensorFromView(const io::TensorView& view);
absl::StatusOr<io::DType> ToSafetensorsDType(torch::ScalarType t);
// Writes (name, tensor) pairs as safetensors; tensors are made contiguous CPU first.
absl::Status WriteTensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                          std::map<std::string, std::string> metadata = {});
// Copies file tensors into same-named parameters of `module`, after `rename` maps a file key to a
// parameter name ("" = ignore). Shape mismatches are errors naming both shapes.
absl::Status CopyIntoParameters(torch::nn::Module& module, const io::SafetensorsFile& file,
                                const std::function<std::string(const std::string&)>& rename, LoadReport* report);

}  // namespace ftune::model
