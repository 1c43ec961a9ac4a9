#include "model/methods.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace ftune::model {
namespace {

constexpr char kBlockPrefix[] = "distilbert.transformer.layer.";

bool IsHead(const std::string& name) {
  return absl::StartsWith(name, "pre_classifier.") || absl::StartsWith(name, "classifier.");
}

// The block index of a parameter under distilbert.transformer.layer.<i>., or -1.
int64_t BlockIndex(const std::string& name) {
  if (!absl::StartsWith(name, kBlockPrefix)) return -1;
  absl::string_view rest = absl::string_view(name).substr(sizeof(kBlockPrefix) - 1);
  int64_t i = -1;
  if (!absl::SimpleAtoi(rest.substr(0, rest.find('.')), &i)) return -1;
  return i;
}

// Wraps the adapter layers `method` needs, or checks that the model's existing ones are that kind.
absl::Status EnsureAdapterLayers(DistilBertForSequenceClassification& model, Method method,
                                 const MethodOptions& options) {
  auto lora_layers = FindLoraLayers(*model);
  const bool has_ia3 = !FindIa3Layers(*model).empty();
  const bool has_lora = !lora_layers.empty();
  const bool has_dora = has_lora && lora_layers.front().second->use_dora();
  auto mismatch = [&](const char* has) {
    return absl::FailedPreconditionError(
        absl::StrFormat("the model already carries %s layers (a loaded adapter?) and --method=%s would add others; use "
                        "--method=%s or start from the base model",
                        has, MethodName(method), has));
  };
  const bool has_any = has_lora || has_ia3;
  if (has_any && method != Method::kLora && method != Method::kDora && method != Method::kIa3) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the model carries adapter layers (a loaded adapter) but --method=%s trains no adapter; merge it first",
        MethodName(method)));
  }
  switch (method) {
    case Method::kLora:
      if (has_ia3) return mismatch("ia3");
      if (has_dora) return mismatch("dora");
      if (!has_lora) FTUNE_RETURN_IF_ERROR(ApplyLora(*model, options.lora).status());
      break;
    case Method::kDora: {
      if (has_ia3) return mismatch("ia3");
      if (has_lora && !has_dora) return mismatch("lora");
      LoraOptions dora = options.lora;
      dora.use_dora = true;
      if (!has_lora) FTUNE_RETURN_IF_ERROR(ApplyLora(*model, dora).status());
      break;
    }
    case Method::kIa3:
      if (has_dora) return mismatch("dora");
      if (has_lora) return mismatch("lora");
      if (!has_ia3) FTUNE_RETURN_IF_ERROR(ApplyIa3(*model, options.ia3).status());
      break;
    default: break;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Method> ParseMethod(absl::string_view name) {
  for (Method m :
       {Method::kFull, Method::kHead, Method::kBitFit, Method::kLastK, Method::kLora, Method::kDora, Method::kIa3}) {
    if (name == MethodName(m)) return m;
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("--method \"%s\" is not one of full, head, bitfit, last_k, lora, dora, ia3", name));
}

const char* MethodName(Method m) {
  switch (m) {
    case Method::kFull: return "full";
    case Method::kHead: return "head";
    case Method::kBitFit: return "bitfit";
    case Method::kLastK: return "last_k";
    case Method::kLora: return "lora";
    case Method::kDora: return "dora";
    case Method::kIa3: return "ia3";
  }
  return "?";
}

bool IsAdapterMethod(Method m) { return m == Method::kLora || m == Method::kDora || m == Method::kIa3; }

bool IsAdapterParameterName(const std::string& name) {
  return absl::StrContains(name, ".lora_A.") || absl::StrContains(name, ".lora_B.") ||
         absl::EndsWith(name, ".lora_magnitude_vector") || absl::EndsWith(name, ".ia3_l");
}

absl::Status SelectTrainable(DistilBertForSequenceClassification& model, Method method, const MethodOptions& options) {
  const int64_t n_layers = model->config().n_layers;
  if (method == Method::kLastK && (options.last_k_layers < 1 || options.last_k_layers > n_layers)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--last_k_layers must be in [1, %d] (the model's n_layers); got %d", n_layers, options.last_k_layers));
  }
  FTUNE_RETURN_IF_ERROR(EnsureAdapterLayers(model, method, options));
  for (auto& p : model->named_parameters()) {
    const std::string& n = p.key();
    bool train = IsHead(n);
    switch (method) {
      case Method::kFull: train = true; break;
      case Method::kHead: break;
      case Method::kBitFit: train = train || absl::EndsWith(n, ".bias"); break;
      case Method::kLastK: train = train || BlockIndex(n) >= n_layers - options.last_k_layers; break;
      case Method::kLora:
      case Method::kDora:
      case Method::kIa3: train = train || IsAdapterParameterName(n); break;
    }
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

int MergeAdapters(torch::nn::Module& root) { return MergeLora(root) + MergeIa3(root); }

std::optional<int64_t> FrozenBlockPrefix(DistilBertForSequenceClassification& model) {
  for (const auto& p : model->distilbert->embeddings->parameters()) {
    if (p.requires_grad()) return std::nullopt;
  }
  const auto& layers = *model->distilbert->transformer->layer;
  for (size_t i = 0; i < layers.size(); ++i) {
    for (const auto& p : layers[i]->parameters()) {
      if (p.requires_grad()) return static_cast<int64_t>(i);
    }
  }
  return static_cast<int64_t>(layers.size());
}

}  // namespace ftune::model
