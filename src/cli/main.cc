// ftune: subcommand dispatch. Parses flags for the chosen subcommand, runs it, maps Status to an
// exit code. Everything else lives in the libraries under src/ and data-prep/.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "absl/flags/reflection.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "cli/command_line.h"
#include "common/log.h"

namespace ftune::cli {
namespace {

std::vector<const Command*> AllCommands() {
  return {&PrepCommand(), &InspectCommand(), &TrainCommand(), &EvalCommand(), &PredictCommand(), &ReportCommand()};
}

void PrintTopHelp() {
  std::printf(
      "ftune: fine-tune transformer encoders for sequence classification and compare the methods\n"
      "(full, head, bitfit, last_k, lora, dora, ia3) on one CPU or many GPUs under mpirun, from\n"
      "pre-tokenized HDF5 data.\n\n"
      "usage: ftune <command> [--flag=value ...] [--flagfile=FILE]\n\ncommands:\n");
  for (const Command* c : AllCommands()) std::printf("  %-10s %s\n", c->name, c->summary);
  std::printf(
      "\n`ftune <command> --help` explains a command and its flags. Flags use underscores\n"
      "(--model_dir); --flagfile=configs/X.flags reads one flag per line.\n"
      "Exit codes: 0 ok, 1 error, 2 bad command line, 75 preempted after checkpointing.\n");
}

void PrintFlag(const absl::CommandLineFlag& f) {
  std::printf("  --%s (default: %s)\n      %s\n", std::string(f.Name()).c_str(),
              f.DefaultValue().empty() ? "\"\"" : f.DefaultValue().c_str(), f.Help().c_str());
}

void PrintCommandHelp(const Command& c) {
  std::printf("usage: ftune %s [flags]\n\n%s\n", c.name, c.usage);
  std::set<std::string> shown;
  for (const FlagGroup& g : c.flag_groups) {
    std::printf("\n%s:\n", g.title);
    for (const char* name : g.flags) {
      const absl::CommandLineFlag* f = absl::FindCommandLineFlag(name);
      if (f == nullptr) {
        std::fprintf(stderr, "ftune %s --help: internal error: no flag --%s\n", c.name, name);
        continue;
      }
      PrintFlag(*f);
      shown.insert(name);
    }
  }
  // The command's own flags that no group lists (a CLI test keeps this empty).
  bool header = false;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (flag->Filename() != c.source || shown.count(std::string(name))) continue;
    if (!header) std::printf("\nother flags:\n");
    header = true;
    PrintFlag(*flag);
  }
  std::printf("\n  --flagfile=FILE\n      read flags from FILE, one --name=value per line\n");
}

// argv[0] is the command's name.
bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "-help")) {
      return true;
    }
  }
  return false;
}

}  // namespace

int ReportFailure(const absl::Status& status) {
  LogErrorLine(std::string(status.message()));
  return status.code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitError;
}

}  // namespace ftune::cli

namespace {
// A training step allocates and frees the same activations, gradients and workspaces (tens to
// hundreds of MB) every step. By default glibc hands freed blocks above its mmap threshold back to
// the kernel and trims the heap's free top, so each step pays page faults and page zeroing for all
// of it again: on 2 CPU cores a third of ftune's time went to the kernel (tiny model, 2,000 reviews
// at 256 tokens: 70 samples/s; with the heap kept, 242, against 190 for a plain PyTorch loop on the
// same LibTorch). So no block is mmap'd (M_MMAP_MAX 0, the real-time Linux idiom: raising the mmap
// threshold stops at 32 MiB, and the distilbert-base embedding's 94 MB gradient alone faulted
// 23,000 pages a step) and up to 1 GiB of free heap is kept: the process holds on to its peak
// working set, as PyTorch's GPU caching allocator does. A user's own GLIBC_TUNABLES malloc settings
// win.
void KeepFreedMemoryForReuse() {
#ifdef __GLIBC__
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) return;
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}
}  // namespace

int main(int argc, char** argv) {
  using namespace ftune::cli;
  KeepFreedMemoryForReuse();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    PrintTopHelp();
    return argc < 2 ? ftune::kExitUsage : ftune::kExitOk;
  }
  const Command* cmd = nullptr;
  for (const Command* c : AllCommands()) {
    if (std::strcmp(c->name, argv[1]) == 0) cmd = c;
  }
  if (cmd == nullptr) {
    std::fprintf(stderr, "ftune: unknown command '%s' (try `ftune --help`)\n", argv[1]);
    return ftune::kExitUsage;
  }
  if (WantsHelp(argc - 1, argv + 1)) {
    PrintCommandHelp(*cmd);
    return ftune::kExitOk;
  }
  auto positional = ParseCommandFlags(*cmd, AllCommands(), std::vector<std::string>(argv + 2, argv + argc));
  if (!positional.ok()) {
    std::fprintf(stderr, "ftune %s: %s\n", cmd->name, std::string(positional.status().message()).c_str());
    return ftune::kExitUsage;
  }
  return cmd->run(*positional);
}
