// Flags read by more than one subcommand. Each is defined once, in shared_flags.cc.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(std::string, model_dir);
ABSL_DECLARE_FLAG(std::string, model_config);
ABSL_DECLARE_FLAG(std::string, vocab);
ABSL_DECLARE_FLAG(int32_t, max_length);
ABSL_DECLARE_FLAG(std::string, output);
ABSL_DECLARE_FLAG(int32_t, threads);
ABSL_DECLARE_FLAG(std::string, method);
ABSL_DECLARE_FLAG(int32_t, last_k_layers);
ABSL_DECLARE_FLAG(int32_t, lora_rank);
ABSL_DECLARE_FLAG(double, lora_alpha);
ABSL_DECLARE_FLAG(double, lora_dropout);
ABSL_DECLARE_FLAG(std::vector<std::string>, lora_targets);
ABSL_DECLARE_FLAG(std::vector<std::string>, ia3_targets);
ABSL_DECLARE_FLAG(std::vector<std::string>, ia3_feedforward);
ABSL_DECLARE_FLAG(std::string, adapter_dir);
ABSL_DECLARE_FLAG(int32_t, num_labels);
ABSL_DECLARE_FLAG(std::string, device);
ABSL_DECLARE_FLAG(std::string, precision);
ABSL_DECLARE_FLAG(double, comm_timeout);
