// PEFT LoRA adapter directories (adapter_config.json + adapter_model.safetensors), the format
// `PeftModel.from_pretrained` reads. Keys are "base_model.model.<parameter>"; the trained
// classification head travels inside the adapter (modules_to_save), so a saved adapter is complete.
#pragma once

#include <string>

#include "common/status.h"
#include "model/distilbert.h"
#include "model/lora.h"

namespace ftune::model {

struct AdapterInfo {
  LoraOptions lora;
  std::vector<std::string> modules_to_save;
  std::string base_model_name_or_path;
};

// Reads and validates adapter_config.json (peft_type LORA; DoRA, rsLoRA, biases, fan_in_fan_out
// and per-layer rank patterns are refused with a clear message).
absl::StatusOr<AdapterInfo> ReadAdapterConfig(const std::string& dir);

// Applies the adapter to `model` (which must not have LoRA layers yet) and loads its weights,
// including the saved head. Errors if any LoRA weight is missing or mis-shaped.
absl::StatusOr<AdapterInfo> LoadAdapter(DistilBertForSequenceClassification& model, const std::string& dir);

// Writes the LoRA A/B matrices and the head of `model` (which must have LoRA layers).
absl::Status SaveAdapter(DistilBertForSequenceClassification& model, const LoraOptions& lora,
                         const std::string& base_model_name_or_path, const std::string& dir);

}  // namespace ftune::model
