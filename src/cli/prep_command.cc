// `ftune prep`: CSV/JSONL -> pre-tokenized HDF5 (placeholder until data-prep lands).
#include "cli/command.h"

namespace ftune::cli {
namespace {
int Run(const std::vector<std::string>&) {
  return ReportFailure(absl::UnimplementedError("ftune prep is not implemented yet"));
}
}  // namespace

const Command& PrepCommand() {
  static const Command c{"prep", "tokenize CSV/JSONL text into an HDF5 dataset", "", {}, &Run};
  return c;
}
}  // namespace ftune::cli
