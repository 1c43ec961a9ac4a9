// `ftune inspect`: placeholder until the model lands.
#include "cli/command.h"

namespace ftune::cli {
namespace {
int Run(const std::vector<std::string>&) {
  return ReportFailure(absl::UnimplementedError("ftune inspect is not implemented yet"));
}
}  // namespace

const Command& InspectCommand() {
  static const Command c{"inspect", "print the model tree and its trainable parameter count", "", {}, &Run};
  return c;
}
}  // namespace ftune::cli
