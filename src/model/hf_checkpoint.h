// Hugging Face model directories <-> ftune models: config.json + model.safetensors, for every
// family (family.h picks it from config.json's model_type).
//
// Loading accepts the layouts users have: a saved *ForSequenceClassification (every weight), the
// hub's pretraining checkpoints (a masked-LM head, which is ignored; the classifier head is then
// initialised fresh, as HF does) and a bare encoder; the family's KeyMap says which file tensor is
// which parameter. Missing encoder weights and shape mismatches are errors; every decision is
// listed in the LoadReport.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "common/status.h"
#include "io/safetensors.h"
#include "model/family.h"
#include "model/sequence_classifier.h"

namespace ftune::model {

struct LoadReport {
  std::vector<std::string> loaded;      // model parameter names filled from the file
  std::vector<std::string> fresh;       // model parameters the file lacks, initialised fresh (head only)
  std::vector<std::string> ignored;     // file tensors deliberately unused (another task's head)
  std::vector<std::string> unexpected;  // file tensors matching nothing (warned about)
  std::string ignored_kind;             // what `ignored` is, for the log: "masked-LM head"
  std::string Summary() const;          // one paragraph for the log
};

struct LoadedModel {
  SequenceClassifier model;
  LoadReport report;
  std::string source;  // directory or config path, or the default architecture
  bool fresh_head() const { return !report.fresh.empty() || report.loaded.empty(); }
};

struct LoadedMaskedLm {
  MaskedLanguageModel model;
  LoadReport report;
  std::string source;
};

// `dir` holds config.json and model.safetensors. `num_labels` > 0 overrides the config's.
absl::StatusOr<LoadedModel> LoadPretrained(const std::string& dir, const ModelOptions& options = {},
                                           int64_t num_labels = 0);
// Random init (HF's scheme) from a config.json, or the default family's default architecture.
absl::StatusOr<LoadedModel> BuildFromConfigFile(const std::string& path, const ModelOptions& options = {},
                                                int64_t num_labels = 0);
absl::StatusOr<LoadedModel> BuildDefault(const ModelOptions& options = {}, int64_t num_labels = 0);

// Masked LMs: continued from a checkpoint (its MLM head when it has one, else a fresh one; a
// classifier head in the file is ignored), or random init.
absl::StatusOr<LoadedMaskedLm> LoadMaskedLm(const std::string& dir, const ModelOptions& options = {});
absl::StatusOr<LoadedMaskedLm> BuildMaskedLmFromConfigFile(const std::string& path, const ModelOptions& options = {});
absl::StatusOr<LoadedMaskedLm> BuildDefaultMaskedLm(const ModelOptions& options = {});

// Writes config.json + model.safetensors that transformers' from_pretrained loads (each file
// atomically). Refuses models that still carry unmerged adapter layers.
absl::Status SavePretrained(SequenceClassifierImpl& model, const std::string& dir);
absl::Status SavePretrained(MaskedLanguageModelImpl& model, const std::string& dir);

// --- lower-level pieces, shared with adapters and checkpoints ---

// A CPU tensor holding a copy of `view` (exactly one copy out of the mapped file).
torch::Tensor TensorFromView(const io::TensorView& view);
absl::StatusOr<io::DType> ToSafetensorsDType(torch::ScalarType t);
// Writes (name, tensor) pairs as safetensors; tensors are made contiguous CPU first.
absl::Status WriteTensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                          std::map<std::string, std::string> metadata = {});
// Copies file tensors into same-named parameters of `module`, after `rename` maps a file key to a
// parameter name ("" = ignore). Shape mismatches are errors naming both shapes.
absl::Status CopyIntoParameters(torch::nn::Module& module, const io::SafetensorsFile& file, const KeyMap& rename,
                                LoadReport* report);

}  // namespace ftune::model
