// What `ftune report`'s two tables share: report_command.cc (the comparison and sweep summary)
// and bench_report.cc (--bench, the speed table of launch/bench.sh).
#pragma once

#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

ABSL_DECLARE_FLAG(std::vector<std::string>, runs);
ABSL_DECLARE_FLAG(std::string, title);

namespace ftune::cli {

using json = nlohmann::json;

// --title's default (the comparison's); the speed table replaces it with its own.
inline constexpr char kCompareTitle[] = "ftune: full vs head vs LoRA";

// A JSON file, or null where it is absent; an unreadable or malformed one is an error.
absl::StatusOr<json> ReadJsonIfPresent(const std::string& path);
// A setting's value from run_config.json, as text (typed values, and the strings older versions wrote).
std::string ConfigValue(const json& config, const char* name, const std::string& fallback);

// `ftune report --bench`: the table from --runs, --hf_results, --title and --output.
absl::Status RunBenchReport();

}  // namespace ftune::cli
