#include "cli/model_flags.h"

#include "absl/flags/flag.h"
#include "cli/shared_flags.h"

namespace ftune::cli {

model::LoraOptions LoraOptionsFromFlags() {
  model::LoraOptions o;
  o.rank = absl::GetFlag(FLAGS_lora_rank);
  o.alpha = absl::GetFlag(FLAGS_lora_alpha);
  o.dropout = absl::GetFlag(FLAGS_lora_dropout);
  o.targets = absl::GetFlag(FLAGS_lora_targets);
  return o;
}

model::MethodOptions MethodOptionsFromFlags() {
  model::MethodOptions o(LoraOptionsFromFlags());
  o.ia3.targets = absl::GetFlag(FLAGS_ia3_targets);
  o.ia3.feedforward = absl::GetFlag(FLAGS_ia3_feedforward);
  o.last_k_layers = absl::GetFlag(FLAGS_last_k_layers);
  return o;
}

absl::StatusOr<model::Method> MethodFromFlags() { return model::ParseMethod(absl::GetFlag(FLAGS_method)); }

absl::StatusOr<model::LoadedModel> LoadModelFromFlags(const model::ModelOptions& options) {
  const std::string dir = absl::GetFlag(FLAGS_model_dir);
  const std::string config = absl::GetFlag(FLAGS_model_config);
  const int64_t num_labels = absl::GetFlag(FLAGS_num_labels);
  if (num_labels < 0) return absl::InvalidArgumentError("--num_labels must be >= 0");
  if (!dir.empty() && !config.empty()) {
    return absl::InvalidArgumentError("give --model_dir (pretrained weights) or --model_config (random init), not both");
  }
  if (!dir.empty()) return model::LoadPretrained(dir, options, num_labels);
  if (!config.empty()) return model::BuildFromConfigFile(config, options, num_labels);
  io::DistilBertConfig c = io::DefaultDistilBertConfig();
  if (num_labels > 0) {
    c.num_labels = num_labels;
    c.id2label.clear();
    for (int64_t i = 0; i < num_labels; ++i) c.id2label.push_back("LABEL_" + std::to_string(i));
  }
  model::LoadedModel m = model::BuildFromConfig(c, options);
  m.source = "distilbert-base-uncased architecture (random init; pass --model_dir for pretrained weights)";
  return m;
}

}  // namespace ftune::cli
