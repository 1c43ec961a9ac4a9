#include "model/methods.h"

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace ftune::model {

absl::StatusOr<Method> ParseMethod(absl::string_view name) {
  if (name == "full") return Method::kFull;
  if (name == "head") return Method::kHead;
  if (name == "lora") return Method::kLora;
  return absl::InvalidArgumentError(absl::StrFormat("--method \"%s\" is not one of full, head, lora", name));
}

const char* MethodName(Method m) {
  switch (m) {
    case Method::kFull: return "full";
    case Method::kHead: return "head";
    case Method::kLora: return "lora";
  }
  return "?";
}

absl::Status SelectTrainable(DistilBertForSequenceClassification& model, Method method, const LoraOptions& lora) {
  // A model that already carries LoRA layers (a loaded PEFT adapter) keeps them.
  if (method == Method::kLora && FindLoraLayers(*model).empty()) {
    FTUNE_RETURN_IF_ERROR(ApplyLora(*model, lora).status());
  }
  for (auto& p : model->named_parameters()) {
    const std::string& n = p.key();
    bool head = absl::StartsWith(n, "pre_classifier.") || absl::StartsWith(n, "classifier.");
    bool adapter = absl::StrContains(n, ".lora_A.") || absl::StrContains(n, ".lora_B.");
    bool train = method == Method::kFull || head || (method == Method::kLora && adapter);
    p.value().set_requires_grad(train);
  }
  return absl::OkStatus();
}

std::vector<std::string> TrainableParameterNames(const torch::nn::Module& model) {
  std::vector<std::string> out;
  for (const auto& p : model.named_parameters()) {
    if (p.value().requires_grad()) out.push_back(p.key());
  }
  return out;
}

}  // namespace ftune::model
