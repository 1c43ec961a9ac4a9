// The ftune binary's subcommands. Each lives in its own <name>_command.cc, defines the Abseil
// flags only it uses, and lists the flags it reads so `ftune <name> --help` can explain them.
// Library code never reads flags: commands turn flags into option structs (STYLE: config in one place).
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace ftune::cli {

struct Command {
  const char* name;
  const char* summary;  // one line for `ftune --help`
  const char* usage;    // paragraph(s) for `ftune <name> --help`
  std::vector<const char*> flags;  // flag names shown in `ftune <name> --help`
  // Runs after flags are parsed; returns the process exit code (see ExitCode in common/status.h).
  int (*run)(const std::vector<std::string>& positional);
};

const Command& PrepCommand();
const Command& InspectCommand();
const Command& TrainCommand();
const Command& EvalCommand();
const Command& PredictCommand();
const Command& ReportCommand();

// Status message that RunWithContext maps to kExitPreempted (75) instead of an error.
inline constexpr char kPreemptedMarker[] = "preempted: checkpoint written";

// Prints `status` as "ftune <cmd>: error: ..." and returns kExitError (or kExitUsage for
// InvalidArgument coming from flag validation).
int ReportFailure(const absl::Status& status);

}  // namespace ftune::cli
