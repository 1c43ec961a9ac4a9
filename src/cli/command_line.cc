#include "cli/command_line.h"

#include <optional>
#include <set>

#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/utf8.h"

namespace ftune::cli {
namespace {

constexpr int kMaxFlagfileDepth = 16;

// For messages: what a flag's value must be.
std::string FlagTypeName(const absl::CommandLineFlag& f) {
  if (f.IsOfType<bool>()) return "true/false";
  if (f.IsOfType<int32_t>() || f.IsOfType<int64_t>()) return "integer";
  if (f.IsOfType<double>()) return "number";
  if (f.IsOfType<std::optional<int64_t>>()) return "integer (or empty)";
  return "value";
}

// One flag occurrence, and where it came from for messages ("the command line", "FILE:3").
struct Arg {
  std::string text;
  std::string where;
};

class Parser {
 public:
  Parser(const Command& command, const std::vector<const Command*>& all) : command_(command), all_(all) {
    for (const std::string& f : FlagsOf(command)) allowed_.insert(f);
  }

  absl::StatusOr<std::vector<std::string>> Run(const std::vector<std::string>& args) {
    std::vector<Arg> list;
    for (const auto& a : args) list.push_back({a, "the command line"});
    FTUNE_RETURN_IF_ERROR(Consume(list, 0));
    return positional_;
  }

 private:
  absl::Status Bad(const Arg& a, const std::string& what) const {
    const std::string at = a.where == "the command line" ? "" : a.where + ": ";
    return absl::InvalidArgumentError(absl::StrFormat("%s%s (see `ftune %s --help`)", at, what, command_.name));
  }

  // The command(s) whose flag `name` is, for a flag this command does not take.
  std::string OwnersOf(const std::string& name) const {
    std::vector<std::string> owners;
    for (const Command* c : all_) {
      for (const std::string& f : FlagsOf(*c)) {
        if (f == name) owners.push_back(absl::StrCat("`ftune ", c->name, "`"));
      }
    }
    return absl::StrJoin(owners, ", ");
  }

  absl::Status Consume(const std::vector<Arg>& list, int depth) {
    for (size_t i = 0; i < list.size(); ++i) {
      const Arg& a = list[i];
      if (flags_ended_ || a.text.empty() || a.text[0] != '-' || a.text == "-") {
        if (depth > 0) return Bad(a, absl::StrFormat("\"%s\" is not a flag", utf8::Printable(a.text)));
        positional_.push_back(a.text);
        continue;
      }
      if (a.text == "--") {
        if (depth > 0) return Bad(a, "a flagfile cannot hold \"--\"");
        flags_ended_ = true;
        continue;
      }
      absl::string_view body = a.text;
      if (!absl::ConsumePrefix(&body, "--")) absl::ConsumePrefix(&body, "-");
      const size_t eq = body.find('=');
      std::string name(body.substr(0, eq));
      std::optional<std::string> value;
      if (eq != absl::string_view::npos) value = std::string(body.substr(eq + 1));
      if (name == "flagfile") {
        if (!value) {
          if (i + 1 >= list.size()) return Bad(a, "--flagfile needs a file");
          value = list[++i].text;
        }
        for (absl::string_view file : absl::StrSplit(*value, ',', absl::SkipEmpty())) {
          FTUNE_RETURN_IF_ERROR(ReadFlagfile(std::string(file), a, depth));
        }
        continue;
      }
      const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
      bool negated = false;
      if (flag == nullptr && absl::StartsWith(name, "no") && !value) {
        flag = absl::FindCommandLineFlag(name.substr(2));
        if (flag != nullptr && flag->IsOfType<bool>()) {
          negated = true;
          name = name.substr(2);
        } else {
          flag = nullptr;
        }
      }
      if (flag == nullptr || allowed_.count(name) == 0) {
        const std::string owners = flag == nullptr ? "" : OwnersOf(name);
        if (owners.empty()) {
          return Bad(a, absl::StrFormat("unknown flag --%s (flags use underscores)", utf8::Printable(name)));
        }
        // A flagfile is a named run (configs/*.flags) that several commands read: the lines for
        // the others are theirs. On the command line, a flag this command would ignore is an error.
        if (depth > 0) continue;
        return Bad(a, absl::StrFormat("--%s is a flag of %s, not of `ftune %s`", name, owners, command_.name));
      }
      if (negated) {
        value = "false";
      } else if (!value) {
        if (flag->IsOfType<bool>()) {
          value = "true";
        } else if (i + 1 < list.size()) {
          value = list[++i].text;
        } else {
          return Bad(a, absl::StrFormat("--%s needs a value (--%s=VALUE)", name, name));
        }
      }
      std::string error;
      absl::CommandLineFlag* mutable_flag = absl::FindCommandLineFlag(name);
      if (!mutable_flag->ParseFrom(*value, &error)) {
        // Abseil says "Illegal value 'x' specified for flag 'name'[; why]": keep the why.
        const size_t why = error.find("; ");
        const std::string reason = why == std::string::npos ? "" : error.substr(why + 2);
        if (reason.empty()) {
          return Bad(a, absl::StrFormat("--%s=%s: not a valid %s", name, utf8::Printable(*value),
                                        FlagTypeName(*mutable_flag)));
        }
        return Bad(a, absl::StrFormat("--%s \"%s\" is %s", name, utf8::Printable(*value), reason));
      }
    }
    return absl::OkStatus();
  }

  absl::Status ReadFlagfile(const std::string& path, const Arg& from, int depth) {
    if (depth >= kMaxFlagfileDepth) return Bad(from, absl::StrFormat("--flagfile=%s nests too deeply", path));
    auto text = ReadFileToString(path);
    if (!text.ok()) return Bad(from, absl::StrFormat("--flagfile=%s: %s", path, text.status().message()));
    std::vector<Arg> list;
    int line_no = 0;
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      ++line_no;
      absl::string_view stripped = absl::StripAsciiWhitespace(line);
      if (stripped.empty() || stripped[0] == '#') continue;
      list.push_back({std::string(stripped), absl::StrFormat("%s:%d", path, line_no)});
    }
    return Consume(list, depth + 1);
  }

  const Command& command_;
  const std::vector<const Command*>& all_;
  std::set<std::string> allowed_;
  std::vector<std::string> positional_;
  bool flags_ended_ = false;
};

}  // namespace

std::vector<std::string> FlagsOf(const Command& command) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const FlagGroup& g : command.flag_groups) {
    for (const char* f : g.flags) {
      if (seen.insert(f).second) out.push_back(f);
    }
  }
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (flag->Filename() == command.source && seen.insert(std::string(name)).second) out.push_back(std::string(name));
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ParseCommandFlags(const Command& command,
                                                          const std::vector<const Command*>& all,
                                                          const std::vector<std::string>& args) {
  Parser parser(command, all);
  return parser.Run(args);
}

}  // namespace ftune::cli
