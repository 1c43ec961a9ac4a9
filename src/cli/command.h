// The ftune binary's subcommands. Each lives in its own <name>_command.cc, defines the Abseil
// flags only it uses, and groups the flags it reads by topic so `ftune <name> --help` explains
// them; a flag defined in the command's file but in no group is still listed (under "other"), so
// --help can never miss one (a CLI test keeps "other" empty).
// Library code never reads flags: commands turn flags into option structs (STYLE: config in one place).
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace ftune::cli {

struct FlagGroup {
  const char* title;               // e.g. "optimization"
  std::vector<const char*> flags;  // names, in the order --help shows them
};

struct Command {
  const char* name;
  const char* summary;  // one line for `ftune --help`
  const char* usage;    // paragraph(s) for `ftune <name> --help`
  std::vector<FlagGroup> flag_groups;
  const char* source;  // __FILE__ of the command's .cc: its own flags (see above)
  // Runs after flags are parsed; returns the process exit code (see ExitCode in common/status.h).
  int (*run)(const std::vector<std::string>& positional);
};

const Command& PrepCommand();
const Command& InspectCommand();
const Command& TrainCommand();
const Command& EvalCommand();
const Command& PredictCommand();
const Command& ReportCommand();

// Prints `status` as "ftune <cmd>: error: ..." and returns kExitError (or kExitUsage for
// InvalidArgument coming from flag validation).
int ReportFailure(const absl::Status& status);

}  // namespace ftune::cli
