#include "model/methods.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace ftune::model {
namespace {

// Wraps the adapter layers `method` needs, or checks that the model's existing ones are that kind.
absl::Status EnsureAdapterLayers(SequenceClassifierImpl& model, Method method, const MethodOptions& options) {
  auto lora_layers = FindLoraLayers(model);
  const bool has_ia3 = !FindIa3Layers(model).empty();
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
      if (!has_lora) FTUNE_RETURN_IF_ERROR(ApplyLora(model, options.lora).status());
      break;
    case Method::kDora: {
      if (has_ia3) return mismatch("ia3");
      if (has_lora && !has_dora) return mismatch("lora");
      LoraOptions dora = options.lora;
      dora.use_dora = true;
      if (!has_lora) FTUNE_RETURN_IF_ERROR(ApplyLora(model, dora).status());
      break;
    }
    case Method::kIa3:
      if (has_dora) return mismatch("dora");
      if (has_lora) return mismatch("lora");
      if (!has_ia3) FTUNE_RETURN_IF_ERROR(ApplyIa3(model, options.ia3).status());
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

bool AbslParseFlag(absl::string_view text, Method* out, std::string* error) {
  auto m = ParseMethod(text);
  if (!m.ok()) {
    *error = "not one of full, head, bitfit, last_k, lora, dora, ia3";
    return false;
  }
  *out = *m;
  return true;
}

std::string AbslUnparseFlag(Method m) { return MethodName(m); }

bool IsAdapterMethod(Method m) { return m == Method::kLora || m == Method::kDora || m == Method::kIa3; }

bool IsAdapterParameterName(const std::string& name) {
  return absl::StrContains(name, ".lora_A.") || absl::StrContains(name, ".lora_B.") ||
         absl::EndsWith(name, ".lora_magnitude_vector") || absl::EndsWith(name, ".ia3_l");
}

MethodOptions WithFamilyDefaults(MethodOptions o, const ModelFamily& family) {
  if (o.lora.targets.empty()) o.lora.targets = family.lora_targets;
  if (o.ia3.targets.empty()) {
    o.ia3.targets = family.ia3_targets;
    if (o.ia3.feedforward.empty()) o.ia3.feedforward = family.ia3_feedforward;
  }
  return o;
}

absl::Status SelectTrainable(SequenceClassifierImpl& model, Method method, const MethodOptions& given) {
  const MethodOptions options = WithFamilyDefaults(given, model.family());
  const int64_t n_blocks = model.num_blocks();
  if (method == Method::kLastK && (options.last_k_layers < 1 || options.last_k_layers > n_blocks)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--last_k_layers must be in [1, %d] (the model's blocks); got %d", n_blocks, options.last_k_layers));
  }
  FTUNE_RETURN_IF_ERROR(EnsureAdapterLayers(model, method, options));
  const std::vector<std::string>& head = model.family().head_modules;
  for (auto& p : model.named_parameters()) {
    const std::string& n = p.key();
    bool train = InModules(n, head);
    switch (method) {
      case Method::kFull: train = true; break;
      case Method::kHead:
      case Method::kLastK: break;  // the top blocks: below
      case Method::kBitFit: train = train || absl::EndsWith(n, ".bias"); break;
      case Method::kLora:
      case Method::kDora:
      case Method::kIa3: train = train || IsAdapterParameterName(n); break;
    }
    p.value().set_requires_grad(train);
  }
  if (method == Method::kLastK) {
    const auto blocks = model.blocks();
    for (int64_t i = n_blocks - options.last_k_layers; i < n_blocks; ++i) {
      for (auto& p : blocks[i]->parameters()) p.set_requires_grad(true);
    }
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

std::optional<int64_t> FrozenBlockPrefix(SequenceClassifierImpl& model) {
  for (const auto& p : model.embeddings().parameters()) {
    if (p.requires_grad()) return std::nullopt;
  }
  const auto blocks = model.blocks();
  for (size_t i = 0; i < blocks.size(); ++i) {
    for (const auto& p : blocks[i]->parameters()) {
      if (p.requires_grad()) return static_cast<int64_t>(i);
    }
  }
  return static_cast<int64_t>(blocks.size());
}

}  // namespace ftune::model
