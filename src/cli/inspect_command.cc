// `ftune inspect`: print the model tree (PyTorch repr style) and the trainable parameter count for
// a method: the assignment's print(model) and count_trainable_parameters, without training.
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/command.h"
#include "cli/shared_flags.h"
#include "common/torch_compat.h"
#include "model/peft_adapter.h"
#include "model/repr.h"

namespace ftune::cli {
namespace {

int InspectMain(const std::vector<std::string>& positional) {
  if (!positional.empty()) {
    return ReportFailure(absl::InvalidArgumentError("unexpected argument '" + positional[0] + "'"));
  }
  std::optional<model::Method> method = absl::GetFlag(FLAGS_method);
  const int threads = absl::GetFlag(FLAGS_threads);
  if (threads < 0) return ReportFailure(absl::InvalidArgumentError("--threads must be >= 0"));
  if (threads > 0) at::set_num_threads(threads);  // building distilbert-base initialises 66 M weights
  auto loaded = LoadModelFromFlags({});
  if (!loaded.ok()) return ReportFailure(loaded.status());
  model::SequenceClassifierImpl& m = *loaded->model;
  model::MethodOptions options = MethodOptionsFromFlags(m.family());
  const std::string adapter = absl::GetFlag(FLAGS_adapter_dir);
  if (!adapter.empty()) {
    auto info = model::LoadAdapter(m, adapter);
    if (!info.ok()) return ReportFailure(info.status());
    options.lora = info->lora;
    options.ia3 = info->ia3;
    *method = info->method;
  }
  absl::Status st = model::SelectTrainable(m, *method, options);
  if (!st.ok()) return ReportFailure(st);
  const model::ModelConfig c = m.config();
  std::printf("model: %s\n", loaded->source.c_str());
  std::printf("config: %s, hidden %ld, %ld layers, %ld heads, ffn %ld, vocab %ld, positions %ld, %ld labels\n",
              c.model_type.c_str(), static_cast<long>(c.hidden_size), static_cast<long>(c.num_hidden_layers),
              static_cast<long>(c.num_attention_heads), static_cast<long>(c.intermediate_size),
              static_cast<long>(c.vocab_size), static_cast<long>(c.max_position_embeddings),
              static_cast<long>(c.num_labels));
  if (!loaded->report.loaded.empty()) std::printf("weights: %s\n", loaded->report.Summary().c_str());
  std::printf("\n%s\n\n", model::ModuleTreeString(m).c_str());
  const int64_t trainable = model::CountTrainableParameters(m);
  const int64_t all = model::CountAllParameters(m);
  std::printf("method: %s", model::MethodName(*method));
  if (*method == model::Method::kLastK) {
    std::printf(" (top %ld of %ld blocks)", static_cast<long>(options.last_k_layers), static_cast<long>(m.num_blocks()));
  } else if (model::IsAdapterMethod(*method)) {
    model::AdapterInfo info{*method, options.lora, options.ia3, {}, {}};
    info.lora.use_dora = *method == model::Method::kDora;
    const size_t layers =
        *method == model::Method::kIa3 ? model::FindIa3Layers(m).size() : model::FindLoraLayers(m).size();
    std::printf(" (%s: %zu layers)", model::DescribeAdapter(info).c_str(), layers);
  }
  std::printf("\ntrainable parameters: %ld\n", static_cast<long>(trainable));
  std::printf("all parameters: %ld (%.2f%% trainable)\n", static_cast<long>(all), 100.0 * trainable / all);
  return kExitOk;
}

}  // namespace

const Command& InspectCommand() {
  static const Command c{
      "inspect",
      "print the model tree and its trainable parameter count",
      "Builds the model exactly as `ftune train` would (same flags), prints its module tree in\n"
      "PyTorch's repr style and counts the parameters that would train.\n\n"
      "  ftune inspect                                  # distilbert-base-uncased: 66955010\n"
      "  ftune inspect --method=head                    # 592130\n"
      "  ftune inspect --method=lora --lora_rank=12     # 813314\n"
      "  ftune inspect --method=bitfit                  # 643586\n"
      "  ftune inspect --method=last_k --last_k_layers=2  # 14767874\n"
      "  ftune inspect --method=ia3                     # 619778\n"
      "  ftune inspect --method=dora                    # 822530\n"
      "  ftune inspect --model_dir=DIR --adapter_dir=A  # a saved PEFT adapter (LoRA, DoRA, IA3) on its base",
      {{"model and method",
        {"model_dir", "model_config", "num_labels", "method", "last_k_layers", "lora_rank", "lora_alpha",
         "lora_dropout", "lora_targets", "ia3_targets", "ia3_feedforward", "adapter_dir"}},
       {"speed", {"threads"}}},
      __FILE__,
      &InspectMain};
  return c;
}

}  // namespace ftune::cli
