#include "model/peft_adapter.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "common/files.h"
#include "io/safetensors.h"
#include "model/hf_checkpoint.h"
#include "nlohmann/json.hpp"

namespace ftune::model {
namespace {

using json = nlohmann::json;
constexpr char kPrefix[] = "base_model.model.";
const std::vector<std::string> kHeadModules = {"pre_classifier", "classifier"};

bool IsAdapterParam(const std::string& name) {
  return absl::StrContains(name, ".lora_A.") || absl::StrContains(name, ".lora_B.");
}

bool InModules(const std::string& name, const std::vector<std::string>& modules) {
  for (const auto& m : modules) {
    if (absl::StartsWith(name, m + ".")) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<AdapterInfo> ReadAdapterConfig(const std::string& dir) {
  const std::string path = dir + "/adapter_config.json";
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrFormat("%s: not a JSON object", path));
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %s", path, what));
  };
  if (j.value("peft_type", "") != "LORA") return bad("peft_type must be \"LORA\"");
  AdapterInfo info;
  if (!j["r"].is_number_integer()) return bad("\"r\" must be an integer");
  info.lora.rank = j["r"].get<int64_t>();
  if (!j["lora_alpha"].is_number()) return bad("\"lora_alpha\" must be a number");
  info.lora.alpha = j["lora_alpha"].get<double>();
  if (j.contains("lora_dropout") && j["lora_dropout"].is_number()) info.lora.dropout = j["lora_dropout"].get<double>();
  const json& tm = j["target_modules"];
  info.lora.targets.clear();
  if (tm.is_string()) {
    return bad("target_modules as a regular expression is not supported; list the module names");
  } else if (tm.is_array()) {
    for (const auto& t : tm) {
      if (!t.is_string()) return bad("target_modules must be strings");
      info.lora.targets.push_back(t.get<std::string>());
    }
  } else {
    return bad("target_modules missing");
  }
  for (const char* flag : {"use_dora", "use_rslora", "fan_in_fan_out", "lora_bias"}) {
    if (j.value(flag, false)) return bad(absl::StrFormat("\"%s\": true is not supported", flag));
  }
  if (j.value("bias", "none") != "none") return bad("only bias \"none\" is supported");
  for (const char* pattern : {"rank_pattern", "alpha_pattern"}) {
    if (j.contains(pattern) && j[pattern].is_object() && !j[pattern].empty()) {
      return bad(absl::StrFormat("per-layer \"%s\" is not supported", pattern));
    }
  }
  if (j.contains("modules_to_save") && j["modules_to_save"].is_array()) {
    for (const auto& m : j["modules_to_save"]) info.modules_to_save.push_back(m.get<std::string>());
  }
  info.base_model_name_or_path = j.value("base_model_name_or_path", "");
  return info;
}

absl::StatusOr<AdapterInfo> LoadAdapter(DistilBertForSequenceClassification& model, const std::string& dir) {
  FTUNE_ASSIGN_OR_RETURN(AdapterInfo info, ReadAdapterConfig(dir));
  if (!FindLoraLayers(*model).empty()) {
    return absl::FailedPreconditionError("the model already has LoRA layers; load the adapter on a base model");
  }
  FTUNE_RETURN_IF_ERROR(Annotate(ApplyLora(*model, info.lora).status(), dir + "/adapter_config.json"));
  FTUNE_ASSIGN_OR_RETURN(auto file, io::SafetensorsFile::Open(dir + "/adapter_model.safetensors"));
  LoadReport report;
  auto rename = [](const std::string& key) -> std::string {
    if (!absl::StartsWith(key, kPrefix)) return "\x01";  // matches no parameter: reported as unexpected
    return key.substr(sizeof(kPrefix) - 1);
  };
  FTUNE_RETURN_IF_ERROR(CopyIntoParameters(*model, *file, rename, &report));
  if (!report.unexpected.empty()) {
    return absl::FailedPreconditionError(absl::StrFormat("%s: tensor \"%s\" matches no parameter of the model",
                                                         file->path(), report.unexpected.front()));
  }
  std::set<std::string> loaded(report.loaded.begin(), report.loaded.end());
  for (const auto& p : model->named_parameters()) {
    if (IsAdapterParam(p.key()) && !loaded.count(p.key())) {
      return absl::FailedPreconditionError(
          absl::StrFormat("%s lacks LoRA weight \"%s%s\"", file->path(), kPrefix, p.key()));
    }
  }
  return info;
}

absl::Status SaveAdapter(DistilBertForSequenceClassification& model, const LoraOptions& lora,
                         const std::string& base_model_name_or_path, const std::string& dir) {
  if (FindLoraLayers(*model).empty()) return absl::FailedPreconditionError("the model has no LoRA layers to save");
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : model->named_parameters()) {
    if (IsAdapterParam(p.key()) || InModules(p.key(), kHeadModules)) {
      tensors.emplace_back(kPrefix + p.key(), p.value().detach().to(torch::kFloat));
    }
  }
  json cfg = {
      {"peft_type", "LORA"},
      {"task_type", "SEQ_CLS"},
      {"r", lora.rank},
      {"lora_alpha", lora.alpha},
      {"lora_dropout", lora.dropout},
      {"target_modules", lora.targets},
      {"modules_to_save", kHeadModules},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"init_lora_weights", true},
      {"inference_mode", true},
      {"use_dora", false},
      {"use_rslora", false},
      {"base_model_name_or_path", base_model_name_or_path},
      {"auto_mapping",
       {{"base_model_class", "DistilBertForSequenceClassification"},
        {"parent_library", "transformers.models.distilbert.modeling_distilbert"}}},
  };
  FTUNE_RETURN_IF_ERROR(MakeDirs(dir));
  FTUNE_RETURN_IF_ERROR(WriteTensors(dir + "/adapter_model.safetensors", tensors));
  return WriteFileAtomic(dir + "/adapter_config.json", cfg.dump(2) + "\n");
}

}  // namespace ftune::model
