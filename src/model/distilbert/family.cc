#include "model/distilbert/family.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "io/hf_config.h"
#include "model/distilbert/masked_lm.h"
#include "model/distilbert/modeling.h"

namespace ftune::model {
namespace {

absl::StatusOr<io::DistilBertConfig> ParseConfig(absl::string_view text, absl::string_view source,
                                                 int64_t num_labels) {
  FTUNE_ASSIGN_OR_RETURN(io::DistilBertConfig c, io::ParseDistilBertConfig(text, source));
  if (num_labels > 0 && num_labels != c.num_labels) {
    c.num_labels = num_labels;
    c.id2label.clear();
    for (int64_t i = 0; i < num_labels; ++i) c.id2label.push_back(absl::StrCat("LABEL_", i));
  }
  return c;
}

// The file's key for a parameter of the classifier or the masked LM: the hub's layouts use the
// same names; a bare DistilBertModel has no "distilbert." prefix; pre-2019 checkpoints call
// LayerNorm parameters gamma/beta.
std::string Canonical(const std::string& key, bool bare) {
  std::string name = bare && !IsClassifierHeadKey(key) && !IsMaskedLmHeadKey(key) ? "distilbert." + key : key;
  if (absl::EndsWith(name, ".gamma")) name = name.substr(0, name.size() - 6) + ".weight";
  if (absl::EndsWith(name, ".beta")) name = name.substr(0, name.size() - 5) + ".bias";
  return name;
}

bool IsBare(const io::SafetensorsFile& file) {
  for (const auto& kv : file.tensors()) {
    if (absl::StartsWith(kv.first, "embeddings.") || absl::StartsWith(kv.first, "transformer.")) return true;
  }
  return false;
}

ModelFamily MakeDistilBertFamily() {
  ModelFamily f;
  f.model_type = "distilbert";
  f.classifier_class = "DistilBertForSequenceClassification";
  f.masked_lm_class = "DistilBertForMaskedLM";
  f.module_path = "transformers.models.distilbert.modeling_distilbert";
  f.head_modules = {"pre_classifier", "classifier"};
  f.masked_lm_head_modules = {"vocab_transform", "vocab_layer_norm", "vocab_projector"};
  // PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING has distilbert: q_lin, v_lin. Its IA3
  // mappings have no distilbert; these are BERT's (key, value, output.dense feedforward) by role.
  f.lora_targets = {"q_lin", "v_lin"};
  f.ia3_targets = {"k_lin", "v_lin", "lin2"};
  f.ia3_feedforward = {"lin2"};
  f.default_config_json = io::DistilBertConfigToJson(io::DefaultDistilBertConfig());
  f.default_name = "distilbert-base-uncased";
  f.build_classifier = [](absl::string_view text, absl::string_view source, const ModelOptions& options,
                          int64_t num_labels) -> absl::StatusOr<SequenceClassifier> {
    FTUNE_ASSIGN_OR_RETURN(io::DistilBertConfig c, ParseConfig(text, source, num_labels));
    return SequenceClassifier(DistilBertForSequenceClassification(c, options).ptr());
  };
  f.classifier_keys = [](const io::SafetensorsFile& file) -> KeyMap {
    return [bare = IsBare(file)](const std::string& key) {
      return IsMaskedLmHeadKey(key) ? std::string() : Canonical(key, bare);
    };
  };
  f.build_masked_lm = [](absl::string_view text, absl::string_view source,
                         const ModelOptions& options) -> absl::StatusOr<MaskedLanguageModel> {
    FTUNE_ASSIGN_OR_RETURN(io::DistilBertConfig c, io::ParseDistilBertConfig(text, source));
    return MaskedLanguageModel(DistilBertForMaskedLM(c, options).ptr());
  };
  f.masked_lm_keys = [](const io::SafetensorsFile& file) -> KeyMap {
    return [bare = IsBare(file)](const std::string& key) {
      // The projection's weight is the word embedding matrix (tied): not a parameter of its own.
      return IsClassifierHeadKey(key) || key == "vocab_projector.weight" ? std::string() : Canonical(key, bare);
    };
  };
  return f;
}

}  // namespace

const ModelFamily& DistilBertFamily() {
  static const ModelFamily family = MakeDistilBertFamily();
  return family;
}

}  // namespace ftune::model
