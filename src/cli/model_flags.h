// Turns the model flags (--model_dir / --model_config / --method / --lora_* / --ia3_* /
// --last_k_layers / --adapter_dir) into a built model and method options. Shared by inspect,
// train, eval and predict.
#pragma once

#include "common/status.h"
#include "model/hf_checkpoint.h"
#include "model/lora.h"
#include "model/methods.h"

namespace ftune::cli {

model::LoraOptions LoraOptionsFromFlags();
// --lora_*, --ia3_* and --last_k_layers (the options of every method).
model::MethodOptions MethodOptionsFromFlags();
absl::StatusOr<model::Method> MethodFromFlags();

// Loads/builds the model named by the flags (no method applied). With neither --model_dir nor
// --model_config: distilbert-base-uncased's architecture, randomly initialised.
absl::StatusOr<model::LoadedModel> LoadModelFromFlags(const model::ModelOptions& options);

}  // namespace ftune::cli
