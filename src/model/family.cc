#include "model/family.h"

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/utf8.h"
#include "model/distilbert/family.h"
#include "nlohmann/json.hpp"

namespace ftune::model {

const std::vector<const ModelFamily*>& ModelFamilies() {
  static const std::vector<const ModelFamily*> families = {&DistilBertFamily()};
  return families;
}

const ModelFamily& DefaultModelFamily() { return DistilBertFamily(); }

std::string ModelTypeList() {
  std::vector<std::string> names;
  for (const ModelFamily* f : ModelFamilies()) names.push_back(f->model_type);
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<const ModelFamily*> FindModelFamily(absl::string_view model_type) {
  for (const ModelFamily* f : ModelFamilies()) {
    if (f->model_type == model_type) return f;
  }
  return absl::NotFoundError(absl::StrFormat("model_type \"%s\" is not one ftune implements (%s)",
                                             utf8::Printable(model_type), ModelTypeList()));
}

absl::StatusOr<const ModelFamily*> FamilyOfConfig(absl::string_view text, absl::string_view source) {
  // Only the model_type is read here; the family's parser checks the rest (and the JSON itself).
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("model_type") || j["model_type"].is_null()) {
    // A hand-written config (or an unparsable one, which its parser then refuses with the reason).
    return &DefaultModelFamily();
  }
  if (!j["model_type"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: field \"model_type\" is %s; ftune supports %s", source,
                        utf8::Printable(j["model_type"].dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)),
                        ModelTypeList()));
  }
  auto family = FindModelFamily(j["model_type"].get<std::string>());
  if (!family.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: field \"model_type\": %s", source, family.status().message()));
  }
  return *family;
}

absl::StatusOr<ConfigFile> ReadConfigFile(const std::string& path) {
  ConfigFile c;
  c.path = path;
  FTUNE_ASSIGN_OR_RETURN(c.text, ReadFileToString(path));
  FTUNE_ASSIGN_OR_RETURN(c.family, FamilyOfConfig(c.text, path));
  return c;
}

bool InModules(const std::string& parameter, const std::vector<std::string>& modules) {
  for (const auto& m : modules) {
    if (parameter == m || absl::StartsWith(parameter, m + ".")) return true;
  }
  return false;
}

}  // namespace ftune::model
