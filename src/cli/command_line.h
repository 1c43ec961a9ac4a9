// The command line of one subcommand: its flags (on the command line and in --flagfile files) set
// through Abseil's flag registry, but checked here first, so that every mistake is a bad command
// line (exit code 2) with one line that names it: an unknown flag, a flag of another command on
// the command line (`ftune eval --learning_rate=1`), a value the flag's type refuses, a missing or
// malformed --flagfile (file:line). Abseil's own parser exits with 1 and lets any flag of the
// binary through. A flagfile is a named run that several commands read (configs/lora.flags for
// train and inspect): its lines of another command's flags are that command's, and skipped.
//
// Syntax (Abseil's): --name=value, --name value (not for bools), --name / --noname (bools), -name
// as --name, --flagfile=FILE[,FILE] (one --name=value per line, # comments, nested flagfiles), --
// ends the flags. Later values win.
#pragma once

#include <string>
#include <vector>

#include "cli/command.h"
#include "common/status.h"

namespace ftune::cli {

// The flags `command` accepts: those its --help groups list and any other defined in its own file.
std::vector<std::string> FlagsOf(const Command& command);

// Parses `args` (after the command's name) for `command` and sets the flags; returns the positional
// arguments. InvalidArgument, naming the flag or file:line, for anything it refuses. `all` lists
// every command, to say which one a misplaced flag belongs to.
absl::StatusOr<std::vector<std::string>> ParseCommandFlags(const Command& command,
                                                          const std::vector<const Command*>& all,
                                                          const std::vector<std::string>& args);

}  // namespace ftune::cli
