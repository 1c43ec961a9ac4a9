// The three fine-tuning methods and the one decision they make: which parameters train.
// SelectTrainable is called once; the optimizer, gradient buckets and checkpoints all read the
// resulting requires_grad flags (STYLE: the trainable set is decided once).
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "model/distilbert.h"
#include "model/lora.h"

namespace ftune::model {

enum class Method { kFull, kHead, kLora };

absl::StatusOr<Method> ParseMethod(absl::string_view name);  // "full" | "head" | "lora"
const char* MethodName(Method m);

// full: everything trains. head: only pre_classifier + classifier. lora: LoRA layers are swapped
// in (ApplyLora) unless the model already has them, then only their A/B matrices and the head train.
absl::Status SelectTrainable(DistilBertForSequenceClassification& model, Method method, const LoraOptions& lora);

// Names of parameters with requires_grad, in model order.
std::vector<std::string> TrainableParameterNames(const torch::nn::Module& model);

}  // namespace ftune::model
