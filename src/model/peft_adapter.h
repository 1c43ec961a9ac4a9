// PEFT adapter directories (adapter_config.json + adapter_model.safetensors), the format
// `PeftModel.from_pretrained` reads and `save_pretrained` writes, for the three adapter methods:
//   lora  peft_type "LORA"                   <layer>.lora_A.weight [r, in], <layer>.lora_B.weight [out, r]
//   dora  peft_type "LORA", use_dora: true   the same + <layer>.lora_magnitude_vector [out]
//   ia3   peft_type "IA3"                    <layer>.ia3_l: [out, 1], or [1, in] for feedforward_modules
// Every key is "base_model.model.<parameter>" (PEFT strips the adapter name, and DoRA's ".weight").
// The trained classification head travels inside the adapter (modules_to_save: the family's head
// modules, saved under their own names), so a saved adapter is complete. The auto_mapping names the
// family's class and module (family.h).
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "model/sequence_classifier.h"
#include "model/methods.h"

namespace ftune::model {

struct AdapterInfo {
  Method method = Method::kLora;  // kLora, kDora or kIa3
  LoraOptions lora;               // LORA adapters (use_dora set for DoRA)
  Ia3Options ia3;                 // IA3 adapters
  std::vector<std::string> modules_to_save;
  std::string base_model_name_or_path;
};

// Whether an adapter's modules_to_save include every one of `modules` (e.g. the family's head).
bool CoversModules(const std::vector<std::string>& modules_to_save, const std::vector<std::string>& modules);

// One line for logs: "LoRA r 4, alpha 8 on q_lin,v_lin", "IA3 on k_lin,v_lin,lin2 (feedforward: lin2)".
std::string DescribeAdapter(const AdapterInfo& info);

// Reads and validates adapter_config.json: peft_type LORA (plain or use_dora) or IA3. What ftune
// cannot reproduce exactly (rsLoRA, LoRA biases, fan_in_fan_out, per-layer rank patterns, regex
// target_modules, exclude_modules, other peft_types) is refused with a message naming the field.
absl::StatusOr<AdapterInfo> ReadAdapterConfig(const std::string& dir);

// Applies the adapter to `model` (which must carry no adapter layers yet) and loads its weights,
// including the saved head. Errors if any adapter weight is missing, mis-shaped or unexpected.
absl::StatusOr<AdapterInfo> LoadAdapter(SequenceClassifierImpl& model, const std::string& dir);

// Writes the adapter weights and the head of `model`, which must carry LoRA, DoRA or IA3 layers;
// the kind written follows the layers. `options` gives the config (rank, alpha, targets, ...) and
// must describe the model's layers: its targets must select exactly the wrapped layers and, for
// LoRA/DoRA, its rank must be theirs (FailedPrecondition otherwise), so the file loads back to the
// same model in PEFT and in ftune. Empty target lists are the family's defaults (as SelectTrainable).
absl::Status SaveAdapter(SequenceClassifierImpl& model, const MethodOptions& options,
                         const std::string& base_model_name_or_path, const std::string& dir);

}  // namespace ftune::model
