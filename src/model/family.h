// What ftune knows about a model family (a config.json `model_type`): the family's own names
// (Hugging Face's class names, the head modules, PEFT's default targets) and how to build its
// models. Methods, checkpoints, adapters, the trainer and the CLI work through this descriptor and
// the interfaces in sequence_classifier.h; the family's own code lives in src/model/<family>/.
//
// Adding a family: its modules (src/model/<family>/modeling.*), a config parser, a ModelFamily
// (src/model/<family>/family.cc) and one line in ModelFamilies() (family.cc).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "io/safetensors.h"
#include "model/sequence_classifier.h"

namespace ftune::model {

// Maps a tensor name in a checkpoint file to the model's parameter name; "" = deliberately unused
// (another task's head, such as a masked-LM head).
using KeyMap = std::function<std::string(const std::string& file_key)>;

struct ModelFamily {
  std::string model_type;        // "distilbert"
  std::string classifier_class;  // Hugging Face's class: "DistilBertForSequenceClassification"
  std::string masked_lm_class;   // "DistilBertForMaskedLM" ("" = no masked-LM support)
  std::string module_path;       // its Python module, PEFT's auto_mapping parent_library
  // The classifier's head: trained by every method, PEFT's modules_to_save. The masked LM's head.
  std::vector<std::string> head_modules, masked_lm_head_modules;
  // Adapter targets when the user gives none: PEFT's defaults for the family where PEFT has them.
  std::vector<std::string> lora_targets, ia3_targets, ia3_feedforward;
  // The architecture a run gets with neither --model_dir nor --model_config ("" = none), and its name.
  std::string default_config_json, default_name;

  // A randomly initialised classifier (HF's init) from config.json's text; num_labels > 0
  // overrides the config's (with LABEL_<i> names).
  std::function<absl::StatusOr<SequenceClassifier>(absl::string_view config_json, absl::string_view source,
                                                   const ModelOptions& options, int64_t num_labels)>
      build_classifier;
  // How the tensors of a checkpoint file of this family map onto the classifier's parameters.
  std::function<KeyMap(const io::SafetensorsFile& file)> classifier_keys;
  // Masked LM (empty when the family has none): a random-init model, and a checkpoint loader
  // (continues with the file's MLM head, or a fresh one when it has none).
  std::function<absl::StatusOr<MaskedLanguageModel>(absl::string_view config_json, absl::string_view source,
                                                    const ModelOptions& options)>
      build_masked_lm;
  std::function<KeyMap(const io::SafetensorsFile& file)> masked_lm_keys;
};

// Every family ftune implements, and the one named `model_type` (NotFound listing them).
const std::vector<const ModelFamily*>& ModelFamilies();
absl::StatusOr<const ModelFamily*> FindModelFamily(absl::string_view model_type);
// The family a run uses with neither --model_dir nor --model_config.
const ModelFamily& DefaultModelFamily();
// "distilbert" (for messages: the supported model types).
std::string ModelTypeList();

// config.json's text and its family, from its "model_type" (an unknown one is refused naming the
// field and the supported types). A config without model_type is taken as the default family's:
// hand-written configs for random init (configs/*.json) often omit it.
struct ConfigFile {
  std::string text;
  std::string path;
  const ModelFamily* family = nullptr;
};
absl::StatusOr<ConfigFile> ReadConfigFile(const std::string& path);
absl::StatusOr<const ModelFamily*> FamilyOfConfig(absl::string_view config_json, absl::string_view source);

// Whether `parameter` lies in one of `modules` (a module name or its dotted prefix).
bool InModules(const std::string& parameter, const std::vector<std::string>& modules);

}  // namespace ftune::model
