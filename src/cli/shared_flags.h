// Flags read by more than one subcommand, each defined once (shared_flags.cc), and their
// conversion into the option structs the libraries take.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/strings/string_view.h"
#include "common/status.h"
#include "model/hf_checkpoint.h"
#include "model/lora.h"
#include "model/methods.h"
#include "nlohmann/json.hpp"

namespace ftune::cli {

// The typed values of the shared flags that name a choice (Abseil parses them: a bad one is a bad
// command line naming the choices).
enum class Precision { kFp32, kBf16, kFp16 };
enum class DeviceChoice { kAuto, kCpu, kCuda };
enum class GradientComm { kAuto, kNone, kMpi, kNccl };
const char* PrecisionName(Precision p);
const char* GradientCommName(GradientComm g);
bool AbslParseFlag(absl::string_view text, Precision* out, std::string* error);
std::string AbslUnparseFlag(Precision p);
bool AbslParseFlag(absl::string_view text, DeviceChoice* out, std::string* error);
std::string AbslUnparseFlag(DeviceChoice d);
bool AbslParseFlag(absl::string_view text, GradientComm* out, std::string* error);
std::string AbslUnparseFlag(GradientComm g);

}  // namespace ftune::cli

ABSL_DECLARE_FLAG(std::string, model_dir);
ABSL_DECLARE_FLAG(std::string, model_config);
ABSL_DECLARE_FLAG(std::string, vocab);
ABSL_DECLARE_FLAG(int32_t, max_length);
ABSL_DECLARE_FLAG(std::string, output);
ABSL_DECLARE_FLAG(int32_t, threads);
ABSL_DECLARE_FLAG(ftune::model::Method, method);
ABSL_DECLARE_FLAG(int32_t, last_k_layers);
ABSL_DECLARE_FLAG(int32_t, lora_rank);
ABSL_DECLARE_FLAG(double, lora_alpha);
ABSL_DECLARE_FLAG(double, lora_dropout);
ABSL_DECLARE_FLAG(std::vector<std::string>, lora_targets);
ABSL_DECLARE_FLAG(std::vector<std::string>, ia3_targets);
ABSL_DECLARE_FLAG(std::vector<std::string>, ia3_feedforward);
ABSL_DECLARE_FLAG(std::string, adapter_dir);
ABSL_DECLARE_FLAG(int32_t, num_labels);
ABSL_DECLARE_FLAG(ftune::cli::DeviceChoice, device);
ABSL_DECLARE_FLAG(ftune::cli::Precision, precision);
ABSL_DECLARE_FLAG(bool, cudnn_sdp);
ABSL_DECLARE_FLAG(double, comm_timeout);
ABSL_DECLARE_FLAG(ftune::cli::GradientComm, gradient_comm);

namespace ftune::cli {

model::LoraOptions LoraOptionsFromFlags();
// --lora_*, --ia3_* and --last_k_layers (the options of every method), with `family`'s adapter
// targets where the flags name none.
model::MethodOptions MethodOptionsFromFlags(const model::ModelFamily& family);
// --method, --last_k_layers, --lora_*, --ia3_* as run_config.json records them.
nlohmann::json MethodFlagsToJson();

// Loads/builds the model named by the flags (no method applied). With neither --model_dir nor
// --model_config: the default family's default architecture, randomly initialised.
// `default_num_labels` (> 0) stands in for an unset --num_labels (1 for regression data).
absl::StatusOr<model::LoadedModel> LoadModelFromFlags(const model::ModelOptions& options,
                                                      int64_t default_num_labels = 0);

}  // namespace ftune::cli
