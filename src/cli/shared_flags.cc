#include "cli/shared_flags.h"

#include "absl/flags/flag.h"
#include "absl/flags/marshalling.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace ftune::cli {
namespace {

template <typename E>
bool ParseChoice(absl::string_view text, std::initializer_list<std::pair<E, const char*>> choices, E* out,
                 std::string* error) {
  std::vector<std::string> names;
  for (const auto& [value, name] : choices) {
    if (text == name) {
      *out = value;
      return true;
    }
    names.push_back(name);
  }
  *error = "not one of " + absl::StrJoin(names, ", ");
  return false;
}

constexpr std::initializer_list<std::pair<Precision, const char*>> kPrecisions = {
    {Precision::kFp32, "fp32"}, {Precision::kBf16, "bf16"}, {Precision::kFp16, "fp16"}};
constexpr std::initializer_list<std::pair<DeviceChoice, const char*>> kDevices = {
    {DeviceChoice::kAuto, "auto"}, {DeviceChoice::kCpu, "cpu"}, {DeviceChoice::kCuda, "cuda"}};
constexpr std::initializer_list<std::pair<GradientComm, const char*>> kGradientComms = {
    {GradientComm::kAuto, "auto"}, {GradientComm::kNone, "none"}, {GradientComm::kMpi, "mpi"},
    {GradientComm::kNccl, "nccl"}};

template <typename E>
const char* NameOf(E value, std::initializer_list<std::pair<E, const char*>> choices) {
  for (const auto& [v, name] : choices) {
    if (v == value) return name;
  }
  return "?";
}

}  // namespace

const char* PrecisionName(Precision p) { return NameOf(p, kPrecisions); }
const char* GradientCommName(GradientComm g) { return NameOf(g, kGradientComms); }
bool AbslParseFlag(absl::string_view text, Precision* out, std::string* error) {
  return ParseChoice(text, kPrecisions, out, error);
}
std::string AbslUnparseFlag(Precision p) { return PrecisionName(p); }
bool AbslParseFlag(absl::string_view text, DeviceChoice* out, std::string* error) {
  return ParseChoice(text, kDevices, out, error);
}
std::string AbslUnparseFlag(DeviceChoice d) { return NameOf(d, kDevices); }
bool AbslParseFlag(absl::string_view text, GradientComm* out, std::string* error) {
  return ParseChoice(text, kGradientComms, out, error);
}
std::string AbslUnparseFlag(GradientComm g) { return GradientCommName(g); }

}  // namespace ftune::cli

ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face model directory: config.json + model.safetensors (+ vocab.txt); its config.json's "
          "model_type picks the family (distilbert). A saved *ForSequenceClassification and the hub's pretraining "
          "layouts (e.g. distilbert-base-uncased, a masked LM: its head is ignored, a fresh classifier made) load.");
ABSL_FLAG(std::string, model_config, "",
          "A config.json to build a randomly initialised model from (no weights; model_type picks the family, "
          "distilbert when absent). With neither --model_dir nor --model_config, the distilbert-base-uncased "
          "architecture is used.");
ABSL_FLAG(std::string, vocab, "", "WordPiece vocab.txt (default: <model_dir>/vocab.txt).");
ABSL_FLAG(int32_t, max_length, 512,
          "Maximum sequence length in tokens including [CLS] and [SEP]; longer inputs keep their first "
          "max_length-2 word pieces.");
ABSL_FLAG(std::string, output, "", "Output path (file or directory, depending on the command).");
ABSL_FLAG(int32_t, threads, 0, "Worker threads (0 = all cores of this process's share of the node).");
ABSL_FLAG(ftune::model::Method, method, ftune::model::Method::kFull,
          "Fine-tuning method: full (every parameter trains), head (only pre_classifier + classifier; the "
          "encoder is frozen), bitfit (every bias, LayerNorm biases too, plus the head), last_k (the top "
          "--last_k_layers transformer blocks plus the head), lora (LoRA layers on --lora_targets, plus the head), "
          "dora (lora with DoRA's magnitude vectors), ia3 (IA3 scaling vectors on --ia3_targets, plus the head).");
ABSL_FLAG(int32_t, last_k_layers, 2, "Transformer blocks that train with --method=last_k, counted from the top.");
ABSL_FLAG(int32_t, lora_rank, 12, "LoRA rank r (--method=lora).");
ABSL_FLAG(double, lora_alpha, 24, "LoRA alpha; the update is scaled by alpha / r.");
ABSL_FLAG(double, lora_dropout, 0.0, "Dropout on the LoRA branch's input.");
ABSL_FLAG(std::vector<std::string>, lora_targets, {},
          "Comma-separated Linear layers to wrap with LoRA, by qualified-name suffix (PEFT's target_modules, e.g. "
          "q_lin,v_lin or attention.out_lin); every match in every block is replaced. Empty: the model family's "
          "default (PEFT's: distilbert q_lin,v_lin).");
ABSL_FLAG(std::vector<std::string>, ia3_targets, {},
          "Comma-separated Linear layers that get an IA3 vector (--method=ia3), by qualified-name suffix like "
          "--lora_targets (PEFT's target_modules). Empty: the family's default (distilbert k_lin,v_lin,lin2 with "
          "lin2 feedforward).");
ABSL_FLAG(std::vector<std::string>, ia3_feedforward, {},
          "Those of --ia3_targets whose IA3 vector scales the layer's input instead of its output (PEFT's "
          "feedforward_modules). With --ia3_targets empty, the family's.");
ABSL_FLAG(std::string, adapter_dir, "",
          "A PEFT adapter directory (adapter_config.json + adapter_model.safetensors: LoRA, DoRA or IA3) to "
          "apply on top of --model_dir.");
ABSL_FLAG(int32_t, num_labels, 0, "Number of classes (0 = from config.json, 2 when it says nothing).");
ABSL_FLAG(ftune::cli::DeviceChoice, device, ftune::cli::DeviceChoice::kAuto,
          "auto (CUDA when available, else CPU), cpu, or cuda.");
ABSL_FLAG(ftune::cli::Precision, precision, ftune::cli::Precision::kFp32,
          "fp32, or bf16: mixed precision (autocast) as HF's bf16=True: matmuls and attention in bfloat16, "
          "parameters, optimizer state, LayerNorm and the loss in fp32. Fast on GPUs with bf16 units; slow on most "
          "CPUs. fp16 (CUDA only): HF's fp16=True, float16 autocast with dynamic loss scaling (GradScaler: scale "
          "2^16, halved on overflow with the step skipped, doubled after 2000 good steps; in checkpoints).");
ABSL_FLAG(bool, cudnn_sdp, false,
          "Let attention use cuDNN's fused kernels on CUDA (PyTorch's torch.backends.cuda.enable_cudnn_sdp; "
          "LibTorch >= 2.3, which prefers them on Hopper from 2.9 on). Off by default: cuDNN plans every new "
          "sequence length anew (tens of ms of host time each), which dynamic padding keeps paying for (full "
          "fine-tuning on an H200: 60 samples/s with it, 371 without); the flash and memory-efficient kernels "
          "serve instead. No effect on CPU.");
ABSL_FLAG(double, comm_timeout, 900,
          "Seconds any collective (gradient all-reduce, metric sums, checkpoint agreement) may take before the "
          "rank gives up and aborts the job, so a stuck or dead peer is an error, not a hang (0 = wait forever; "
          "MPI backend).");
ABSL_FLAG(ftune::cli::GradientComm, gradient_comm, ftune::cli::GradientComm::kAuto,
          "How gradients are summed over ranks: auto (none with one rank; NCCL between CUDA ranks when built with "
          "it; else MPI), none (one rank only), mpi, or nccl. Forcing mpi/nccl on one rank exercises that path.");

namespace ftune::cli {

model::LoraOptions LoraOptionsFromFlags() {
  model::LoraOptions o;
  o.rank = absl::GetFlag(FLAGS_lora_rank);
  o.alpha = absl::GetFlag(FLAGS_lora_alpha);
  o.dropout = absl::GetFlag(FLAGS_lora_dropout);
  o.targets = absl::GetFlag(FLAGS_lora_targets);
  return o;
}

model::MethodOptions MethodOptionsFromFlags(const model::ModelFamily& family) {
  model::MethodOptions o(LoraOptionsFromFlags());
  o.ia3.targets = absl::GetFlag(FLAGS_ia3_targets);
  o.ia3.feedforward = absl::GetFlag(FLAGS_ia3_feedforward);
  o.last_k_layers = absl::GetFlag(FLAGS_last_k_layers);
  return model::WithFamilyDefaults(o, family);
}

nlohmann::json MethodFlagsToJson() {
  return {{"method", model::MethodName(absl::GetFlag(FLAGS_method))},
          {"last_k_layers", absl::GetFlag(FLAGS_last_k_layers)},
          {"lora_rank", absl::GetFlag(FLAGS_lora_rank)},
          {"lora_alpha", absl::GetFlag(FLAGS_lora_alpha)},
          {"lora_dropout", absl::GetFlag(FLAGS_lora_dropout)},
          {"lora_targets", absl::GetFlag(FLAGS_lora_targets)},
          {"ia3_targets", absl::GetFlag(FLAGS_ia3_targets)},
          {"ia3_feedforward", absl::GetFlag(FLAGS_ia3_feedforward)}};
}

absl::StatusOr<model::LoadedModel> LoadModelFromFlags(const model::ModelOptions& options,
                                                      int64_t default_num_labels) {
  const std::string dir = absl::GetFlag(FLAGS_model_dir);
  const std::string config = absl::GetFlag(FLAGS_model_config);
  if (absl::GetFlag(FLAGS_num_labels) < 0) return absl::InvalidArgumentError("--num_labels must be >= 0");
  const int64_t num_labels = absl::GetFlag(FLAGS_num_labels) > 0 ? absl::GetFlag(FLAGS_num_labels) : default_num_labels;
  if (!dir.empty() && !config.empty()) {
    return absl::InvalidArgumentError(
        "give --model_dir (pretrained weights) or --model_config (random init), not both");
  }
  if (!dir.empty()) return model::LoadPretrained(dir, options, num_labels);
  if (!config.empty()) return model::BuildFromConfigFile(config, options, num_labels);
  return model::BuildDefault(options, num_labels);
}

}  // namespace ftune::cli
