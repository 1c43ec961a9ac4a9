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

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "common/log.h"

namespace ftune::cli {
namespace {

std::vector<const Command*> AllCommands() {
  return {&PrepCommand(), &InspectCommand(), &TrainCommand(), &EvalCommand(), &PredictCommand(), &ReportCommand()};
}

void PrintTopHelp() {
  std::printf(
      "ftune: fine-tune DistilBERT for sequence classification (full | head | lora), on one CPU or\n"
      "many GPUs under mpirun, from pre-tokenized HDF5 data.\n\n"
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

bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "-help")) {
      return true;
    }
  }
  return false;
}

// Abseil exits with 1 on an unknown flag; a bad command line is exit code 2 here, with a hint.
// (Flags inside --flagfile files are still checked by Abseil itself.)
bool CheckFlagNames(const char* command, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") break;
    if (a.rfind("--", 0) != 0 && !(a.size() > 1 && a[0] == '-' && a[1] != '-')) continue;
    std::string name = a.substr(a.rfind("--", 0) == 0 ? 2 : 1);
    name = name.substr(0, name.find('='));
    if (name == "flagfile" || name == "fromenv" || name == "tryfromenv" || name == "undefok") continue;
    if (absl::FindCommandLineFlag(name) != nullptr) continue;
    if (name.rfind("no", 0) == 0 && absl::FindCommandLineFlag(name.substr(2)) != nullptr) continue;
    std::fprintf(stderr, "ftune %s: unknown flag --%s (see `ftune %s --help`; flags use underscores)\n", command,
                 name.c_str(), command);
    return false;
  }
  return true;
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
  // Shift so argv[0] names the subcommand: "ftune prep --input ..." parses like "prep --input ...".
  std::string prog = absl::StrCat("ftune ", cmd->name);
  std::vector<char*> args(argv + 1, argv + argc);
  args[0] = prog.data();
  if (WantsHelp(static_cast<int>(args.size()), args.data())) {
    PrintCommandHelp(*cmd);
    return ftune::kExitOk;
  }
  if (!CheckFlagNames(cmd->name, static_cast<int>(args.size()), args.data())) return ftune::kExitUsage;
  absl::SetProgramUsageMessage(absl::StrCat("ftune ", cmd->name, ": ", cmd->summary));
  std::vector<char*> rest = absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  std::vector<std::string> positional(rest.begin() + 1, rest.end());
  return cmd->run(positional);
}
