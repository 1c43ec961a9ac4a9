#include "model/peft_adapter.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "io/safetensors.h"
#include "model/hf_checkpoint.h"
#include "nlohmann/json.hpp"

namespace ftune::model {
namespace {

using json = nlohmann::json;
constexpr char kPrefix[] = "base_model.model.";

// A list of module names (target_modules, feedforward_modules, modules_to_save) from the config.
absl::StatusOr<std::vector<std::string>> NameList(const json& j, const std::string& key, const std::string& path) {
  const json& v = j.contains(key) ? j.at(key) : json();
  if (v.is_string()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: \"%s\" as a regular expression is not supported; list the module names", path, key));
  }
  if (!v.is_array()) return absl::InvalidArgumentError(absl::StrFormat("%s: \"%s\" missing", path, key));
  std::vector<std::string> out;
  for (const auto& t : v) {
    if (!t.is_string()) return absl::InvalidArgumentError(absl::StrFormat("%s: \"%s\" must be strings", path, key));
    out.push_back(t.get<std::string>());
  }
  return out;
}

// The qualified names of the layers of `model` that `targets` select (PEFT's rule).
std::set<std::string> Selected(SequenceClassifierImpl& model, const std::vector<std::string>& targets) {
  std::set<std::string> out;
  for (const LinearSlot& slot : LinearSlots(model)) {
    for (const auto& t : targets) {
      if (MatchesTarget(slot.qualified, t)) out.insert(slot.qualified);
    }
  }
  return out;
}

absl::Status CheckTargetsSelect(SequenceClassifierImpl& model, const std::vector<std::string>& targets,
                                const std::set<std::string>& wrapped, const char* what) {
  if (Selected(model, targets) == wrapped) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "the %s targets to save (%s) do not select the model's %d %s layers; save with the options the adapter was "
      "made with",
      what, absl::StrJoin(targets, ","), wrapped.size(), what));
}

}  // namespace

bool CoversModules(const std::vector<std::string>& modules_to_save, const std::vector<std::string>& modules) {
  for (const auto& m : modules) {
    if (std::find(modules_to_save.begin(), modules_to_save.end(), m) == modules_to_save.end()) return false;
  }
  return true;
}

std::string DescribeAdapter(const AdapterInfo& info) {
  if (info.method == Method::kIa3) {
    return absl::StrFormat("IA3 on %s (feedforward: %s)", absl::StrJoin(info.ia3.targets, ","),
                           info.ia3.feedforward.empty() ? "none" : absl::StrJoin(info.ia3.feedforward, ","));
  }
  return absl::StrFormat("%s r %d, alpha %g, dropout %g on %s", info.lora.use_dora ? "DoRA" : "LoRA", info.lora.rank,
                         info.lora.alpha, info.lora.dropout, absl::StrJoin(info.lora.targets, ","));
}

absl::StatusOr<AdapterInfo> ReadAdapterConfig(const std::string& dir) {
  const std::string path = dir + "/adapter_config.json";
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrFormat("%s: not a JSON object", path));
  auto bad = [&](const std::string& what) { return absl::InvalidArgumentError(absl::StrFormat("%s: %s", path, what)); };
  auto flag = [&](const char* key) { return j.contains(key) && j[key].is_boolean() && j[key].get<bool>(); };
  AdapterInfo info;
  const std::string type =
      j.contains("peft_type") && j["peft_type"].is_string() ? j["peft_type"].get<std::string>() : "";
  if (type == "LORA") {
    if (!j.contains("r") || !j["r"].is_number_integer()) return bad("\"r\" must be an integer");
    info.lora.rank = j["r"].get<int64_t>();
    if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number()) return bad("\"lora_alpha\" must be a number");
    info.lora.alpha = j["lora_alpha"].get<double>();
    if (j.contains("lora_dropout") && j["lora_dropout"].is_number())
      info.lora.dropout = j["lora_dropout"].get<double>();
    FTUNE_ASSIGN_OR_RETURN(info.lora.targets, NameList(j, "target_modules", path));
    info.lora.use_dora = flag("use_dora");
    info.method = info.lora.use_dora ? Method::kDora : Method::kLora;
    for (const char* unsupported : {"use_rslora", "lora_bias"}) {
      if (flag(unsupported)) return bad(absl::StrFormat("\"%s\": true is not supported", unsupported));
    }
    if (j.value("bias", "none") != "none") return bad("only bias \"none\" is supported");
    for (const char* pattern : {"rank_pattern", "alpha_pattern"}) {
      if (j.contains(pattern) && j[pattern].is_object() && !j[pattern].empty()) {
        return bad(absl::StrFormat("per-layer \"%s\" is not supported", pattern));
      }
    }
  } else if (type == "IA3") {
    info.method = Method::kIa3;
    FTUNE_ASSIGN_OR_RETURN(info.ia3.targets, NameList(j, "target_modules", path));
    if (!j.contains("feedforward_modules") || j["feedforward_modules"].is_null()) {
      return bad("\"feedforward_modules\" missing (say which targets scale their input; [] for none)");
    }
    FTUNE_ASSIGN_OR_RETURN(info.ia3.feedforward, NameList(j, "feedforward_modules", path));
  } else {
    return bad("peft_type must be \"LORA\" (LoRA, DoRA) or \"IA3\"");
  }
  if (flag("fan_in_fan_out")) return bad("\"fan_in_fan_out\": true is not supported (ftune's layers are nn.Linear)");
  for (const char* unsupported : {"exclude_modules", "layers_to_transform", "layers_pattern"}) {
    if (j.contains(unsupported) && !j[unsupported].is_null() && !j[unsupported].empty()) {
      return bad(absl::StrFormat("\"%s\" is not supported", unsupported));
    }
  }
  if (j.contains("modules_to_save") && !j["modules_to_save"].is_null()) {
    FTUNE_ASSIGN_OR_RETURN(info.modules_to_save, NameList(j, "modules_to_save", path));
  }
  if (j.contains("base_model_name_or_path") && j["base_model_name_or_path"].is_string()) {
    info.base_model_name_or_path = j["base_model_name_or_path"].get<std::string>();
  }
  return info;
}

absl::StatusOr<AdapterInfo> LoadAdapter(SequenceClassifierImpl& model, const std::string& dir) {
  FTUNE_ASSIGN_OR_RETURN(AdapterInfo info, ReadAdapterConfig(dir));
  if (!FindLoraLayers(model).empty() || !FindIa3Layers(model).empty()) {
    return absl::FailedPreconditionError("the model already has adapter layers; load the adapter on a base model");
  }
  absl::Status applied =
      info.method == Method::kIa3 ? ApplyIa3(model, info.ia3).status() : ApplyLora(model, info.lora).status();
  FTUNE_RETURN_IF_ERROR(Annotate(applied, dir + "/adapter_config.json"));
  FTUNE_ASSIGN_OR_RETURN(auto file, io::SafetensorsFile::Open(dir + "/adapter_model.safetensors"));
  LoadReport report;
  auto rename = [](const std::string& key) -> std::string {
    if (!absl::StartsWith(key, kPrefix)) return "\x01";  // matches no parameter: reported as unexpected
    return key.substr(sizeof(kPrefix) - 1);
  };
  FTUNE_RETURN_IF_ERROR(CopyIntoParameters(model, *file, rename, &report));
  if (!report.unexpected.empty()) {
    return absl::FailedPreconditionError(absl::StrFormat("%s: tensor \"%s\" matches no parameter of the model",
                                                         file->path(), report.unexpected.front()));
  }
  std::set<std::string> loaded(report.loaded.begin(), report.loaded.end());
  for (const auto& p : model.named_parameters()) {
    if (IsAdapterParameterName(p.key()) && !loaded.count(p.key())) {
      return absl::FailedPreconditionError(
          absl::StrFormat("%s lacks adapter weight \"%s%s\"", file->path(), kPrefix, p.key()));
    }
  }
  return info;
}

absl::Status SaveAdapter(SequenceClassifierImpl& model, const MethodOptions& given,
                         const std::string& base_model_name_or_path, const std::string& dir) {
  const auto lora_layers = FindLoraLayers(model);
  const auto ia3_layers = FindIa3Layers(model);
  const ModelFamily& family = model.family();
  const MethodOptions options = WithFamilyDefaults(given, family);
  if (lora_layers.empty() == ia3_layers.empty()) {
    return absl::FailedPreconditionError(lora_layers.empty() ? "the model has no adapter layers to save"
                                                             : "the model mixes LoRA and IA3 layers");
  }
  json cfg;
  if (!lora_layers.empty()) {
    const bool dora = lora_layers.front().second->use_dora();
    std::set<std::string> wrapped;
    for (const auto& [name, layer] : lora_layers) {
      if (layer->rank() != options.lora.rank || layer->use_dora() != dora) {
        return absl::FailedPreconditionError(absl::StrFormat("%s has rank %d%s but the options to save say rank %d",
                                                             name, layer->rank(), layer->use_dora() ? " (DoRA)" : "",
                                                             options.lora.rank));
      }
      wrapped.insert(name);
    }
    FTUNE_RETURN_IF_ERROR(CheckTargetsSelect(model, options.lora.targets, wrapped, dora ? "DoRA" : "LoRA"));
    cfg = {
        {"peft_type", "LORA"},
        {"r", options.lora.rank},
        {"lora_alpha", options.lora.alpha},
        {"lora_dropout", options.lora.dropout},
        {"target_modules", options.lora.targets},
        {"bias", "none"},
        {"init_lora_weights", true},
        {"use_dora", dora},
        {"use_rslora", false},
        {"lora_bias", false},
        {"fan_in_fan_out", false},
    };
  } else {
    std::set<std::string> wrapped;
    for (const auto& [name, layer] : ia3_layers) {
      const bool ff = std::any_of(options.ia3.feedforward.begin(), options.ia3.feedforward.end(),
                                  [&](const std::string& f) { return absl::EndsWith(name, f); });
      if (ff != layer->is_feedforward()) {
        return absl::FailedPreconditionError(
            absl::StrFormat("%s is %sa feedforward IA3 layer but the options to save say otherwise", name,
                            layer->is_feedforward() ? "" : "not "));
      }
      wrapped.insert(name);
    }
    FTUNE_RETURN_IF_ERROR(CheckTargetsSelect(model, options.ia3.targets, wrapped, "IA3"));
    cfg = {
        {"peft_type", "IA3"},
        {"target_modules", options.ia3.targets},
        {"feedforward_modules", options.ia3.feedforward},
        {"init_ia3_weights", true},
        {"fan_in_fan_out", false},
    };
  }
  cfg["task_type"] = "SEQ_CLS";
  cfg["modules_to_save"] = family.head_modules;
  cfg["inference_mode"] = true;
  cfg["base_model_name_or_path"] = base_model_name_or_path;
  cfg["auto_mapping"] = {{"base_model_class", family.classifier_class}, {"parent_library", family.module_path}};

  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : model.named_parameters()) {
    if (IsAdapterParameterName(p.key()) || InModules(p.key(), family.head_modules)) {
      tensors.emplace_back(kPrefix + p.key(), p.value().detach().to(torch::kFloat));
    }
  }
  FTUNE_RETURN_IF_ERROR(MakeDirs(dir));
  FTUNE_RETURN_IF_ERROR(WriteTensors(dir + "/adapter_model.safetensors", tensors));
  return WriteFileAtomic(dir + "/adapter_config.json", cfg.dump(2) + "\n");
}

}  // namespace ftune::model
