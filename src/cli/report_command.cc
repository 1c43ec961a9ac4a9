// `ftune report`: the comparison table over finished runs (the answer to "which method should I
// use, and what does it cost?"): compare.md, compare.csv and compare.svg (accuracy per epoch and
// throughput per method, drawn with gnuplot when it is installed).
#include <cstdio>
#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/command.h"
#include "cli/shared_flags.h"
#include "common/files.h"
#include "common/log.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::vector<std::string>, runs, {}, "Comma-separated run directories (each with results.json).");
ABSL_FLAG(std::string, sweep, "",
          "A launch/sweep.sh directory: writes its summary.md/summary.csv, one row per grid point of its grid.csv "
          "(done runs with their numbers, failed, stopped or pending ones with their status).");
ABSL_FLAG(std::string, title, "ftune: full vs head vs LoRA", "Title of the report.");

namespace ftune::cli {
namespace {

using json = nlohmann::json;

std::string Mib(double bytes) {
  if (bytes >= (1 << 30)) return absl::StrFormat("%.2f GiB", bytes / (1 << 30));
  if (bytes >= (1 << 20)) return absl::StrFormat("%.1f MiB", bytes / (1 << 20));
  return absl::StrFormat("%.1f KiB", bytes / 1024);
}

// A run's results.json, or NotFound when the run has not finished.
absl::StatusOr<json> ReadResults(const std::string& dir) {
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(dir + "/results.json"));
  json r = json::parse(text, nullptr, false);
  if (!r.is_object() || !r.contains("method") || !r.contains("epochs")) {
    return absl::DataLossError(absl::StrFormat("%s/results.json is not an ftune results file", dir));
  }
  return r;
}

// The final epoch's eval accuracy, or a negative value when the run evaluated nothing.
double FinalAccuracy(const json& r) {
  double acc = -1;
  for (const auto& e : r["epochs"]) acc = e.value("eval_accuracy", acc);
  return acc;
}

// summary.md + summary.csv of a sweep: <dir>/grid.csv (run,method,learning_rate,lora_rank,seed, as
// launch/sweep.sh wrote it) joined with each run's results.json or its exit code in logs/.
absl::Status RunSweepSummary(const std::string& dir) {
  FTUNE_ASSIGN_OR_RETURN(std::string grid, ReadFileToString(dir + "/grid.csv"));
  std::string csv = "run,method,learning_rate,lora_rank,seed,trainable_parameters,eval_accuracy,samples_per_second,status\n";
  std::string md = "| run | method | lr | rank | seed | trainable params | eval accuracy | samples/s | status |\n"
                   "|---|---|---|---|---|---:|---:|---:|---|\n";
  int rows = 0, line_no = 0;
  for (absl::string_view line : absl::StrSplit(grid, '\n', absl::SkipEmpty())) {
    if (++line_no == 1) continue;  // header
    std::vector<std::string> f = absl::StrSplit(line, ',');
    if (f.size() != 5) {
      return absl::DataLossError(absl::StrFormat("%s/grid.csv:%d: expected 5 fields (run,method,learning_rate,"
                                                 "lora_rank,seed), got %d", dir, line_no, f.size()));
    }
    std::string trainable, acc, sps, status = "pending";
    auto r = ReadResults(dir + "/" + f[0]);
    if (r.ok()) {
      status = "done";
      trainable = absl::StrFormat("%.0f", r->value("trainable_parameters", 0.0));
      const double a = FinalAccuracy(*r);
      if (a >= 0) acc = absl::StrFormat("%.4f", a);
      sps = absl::StrFormat("%.1f", r->value("samples_per_second", 0.0));
    } else if (!absl::IsNotFound(r.status())) {
      return r.status();
    } else if (auto code = ReadFileToString(dir + "/logs/" + f[0] + ".exit"); code.ok()) {
      const std::string c(absl::StripAsciiWhitespace(*code));
      status = c == "75" ? "preempted (resumable)" : "exit " + c;
    }
    absl::StrAppend(&csv, absl::StrJoin(f, ","), ",", trainable, ",", acc, ",", sps, ",", status, "\n");
    auto dash = [](const std::string& v) { return v.empty() ? std::string("-") : v; };
    absl::StrAppend(&md, "| ", f[0], " | ", f[1], " | ", f[2], " | ", dash(f[3]), " | ", f[4], " | ", dash(trainable),
                    " | ", dash(acc), " | ", dash(sps), " | ", status, " |\n");
    ++rows;
  }
  FTUNE_RETURN_IF_ERROR(WriteFileAtomic(dir + "/summary.csv", csv));
  FTUNE_RETURN_IF_ERROR(WriteFileAtomic(dir + "/summary.md", md));
  std::printf("%s", md.c_str());
  LogInfo("summary of %d run(s) in %s/summary.md and summary.csv", rows, dir);
  return absl::OkStatus();
}

absl::Status RunReport() {
  if (!absl::GetFlag(FLAGS_sweep).empty()) return RunSweepSummary(absl::GetFlag(FLAGS_sweep));
  const auto runs = absl::GetFlag(FLAGS_runs);
  const std::string out = absl::GetFlag(FLAGS_output);
  if (runs.empty()) return absl::InvalidArgumentError("--runs is required (run directories with results.json)");
  if (out.empty()) return absl::InvalidArgumentError("--output is required (a directory for compare.*)");
  FTUNE_RETURN_IF_ERROR(MakeDirs(out));
  std::vector<json> results;
  size_t max_epochs = 0;
  for (const auto& dir : runs) {
    FTUNE_ASSIGN_OR_RETURN(json r, ReadResults(dir));
    r["dir"] = dir;
    max_epochs = std::max(max_epochs, r["epochs"].size());
    results.push_back(r);
  }

  std::string md = absl::StrFormat("# %s\n\n", absl::GetFlag(FLAGS_title));
  std::string csv =
      "method,run,trainable_parameters,all_parameters,trainable_percent,final_eval_accuracy,train_seconds,"
      "samples_per_second,tokens_per_second,peak_memory_bytes,peak_memory_kind,comm_bytes_per_step,comm_share,"
      "world_size,device";
  for (size_t e = 1; e <= max_epochs; ++e) absl::StrAppend(&csv, ",eval_accuracy_epoch_", e);
  csv += "\n";
  md += "| method | trainable params | % of all | final eval acc. | train time | samples/s | tokens/s | "
        "peak memory | all-reduced / step | comm share |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  std::string per_epoch = "| method |";
  for (size_t e = 1; e <= max_epochs; ++e) absl::StrAppend(&per_epoch, " epoch ", e, " |");
  per_epoch += "\n|---|";
  for (size_t e = 1; e <= max_epochs; ++e) per_epoch += "---:|";
  per_epoch += "\n";
  std::string dat;  // gnuplot data: one block per method (epoch, accuracy)
  for (const auto& r : results) {
    const double trainable = r.value("trainable_parameters", 0.0), all = r.value("all_parameters", 1.0);
    double final_acc = -1;
    std::vector<std::string> accs;
    absl::StrAppend(&dat, "# ", r["method"].get<std::string>(), "\n");
    for (const auto& e : r["epochs"]) {
      if (e.contains("eval_accuracy")) {
        final_acc = e["eval_accuracy"].get<double>();
        accs.push_back(absl::StrFormat("%.4f", final_acc));
        absl::StrAppendFormat(&dat, "%d %.6f\n", e["epoch"].get<int>(), final_acc);
      } else {
        accs.push_back("");
      }
    }
    dat += "\n\n";
    const std::string method = r["method"];
    const double secs = r.value("train_seconds", 0.0);
    absl::StrAppendFormat(&md, "| %s | %s | %.2f%% | %s | %.1f s | %.1f | %.0f | %s (%s) | %s | %.1f%% |\n", method,
                          absl::StrFormat("%.0f", trainable), 100.0 * trainable / all,
                          final_acc < 0 ? "-" : absl::StrFormat("%.4f", final_acc), secs,
                          r.value("samples_per_second", 0.0), r.value("tokens_per_second", 0.0),
                          Mib(r.value("peak_memory_bytes", 0.0)), r.value("peak_memory_kind", std::string("?")),
                          Mib(r.value("comm_bytes_per_step", 0.0)), 100.0 * r.value("comm_share", 0.0));
    absl::StrAppendFormat(&per_epoch, "| %s | %s |\n", method, absl::StrJoin(accs, " | "));
    absl::StrAppendFormat(&csv, "%s,%s,%.0f,%.0f,%.4f,%s,%.3f,%.3f,%.1f,%.0f,%s,%.0f,%.5f,%d,%s", method,
                          r["dir"].get<std::string>(), trainable, all, 100.0 * trainable / all,
                          final_acc < 0 ? "" : absl::StrFormat("%.6f", final_acc), secs,
                          r.value("samples_per_second", 0.0), r.value("tokens_per_second", 0.0),
                          r.value("peak_memory_bytes", 0.0), r.value("peak_memory_kind", std::string("")),
                          r.value("comm_bytes_per_step", 0.0), r.value("comm_share", 0.0), r.value("world_size", 1),
                          r.value("device", std::string("")));
    for (size_t e = 0; e < max_epochs; ++e) absl::StrAppend(&csv, ",", e < accs.size() ? accs[e] : "");
    csv += "\n";
  }
  md += "\nEval accuracy per epoch:\n\n" + per_epoch;
  md += "\nPeak memory is the resident set (CPU) or the CUDA allocator's peak (GPU) of rank 0. "
        "\"all-reduced / step\" counts the gradient bytes each rank sends into the all-reduce: trainable "
        "parameters x 4 bytes, frozen ones never cross the wire. Throughput excludes evaluation.\n";
  md += "\n![accuracy per epoch and throughput](compare.svg)\n";
  FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out + "/compare.md", md));
  FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out + "/compare.csv", csv));
  FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out + "/compare.dat", dat));

  // The plot: accuracy per epoch (left) and samples/s (right), one colour per method.
  std::string gp = absl::StrFormat(
      "set terminal svg size 960,400 dynamic font 'sans,11'\nset output '%s/compare.svg'\n"
      "set multiplot layout 1,2 title '%s'\nset title 'eval accuracy per epoch'\nset xlabel 'epoch'\n"
      "set ylabel 'accuracy'\nset key bottom right\nset grid\nset xtics 1\nplot ",
      out, absl::GetFlag(FLAGS_title));
  for (size_t i = 0; i < results.size(); ++i) {
    absl::StrAppendFormat(&gp, "%s'%s/compare.dat' index %d with linespoints lw 2 title '%s'",
                          i ? ", " : "", out, i, results[i]["method"].get<std::string>());
  }
  gp += "\nset title 'training throughput'\nset ylabel 'samples/s'\nunset xlabel\nset style fill solid 0.6\n"
        "set boxwidth 0.6\nset xtics ()\nset yrange [0:*]\nunset key\nplot '-' using 1:2:xtic(3) with boxes\n";
  for (size_t i = 0; i < results.size(); ++i) {
    absl::StrAppendFormat(&gp, "%d %.3f %s\n", i, results[i].value("samples_per_second", 0.0),
                          results[i]["method"].get<std::string>());
  }
  gp += "e\nunset multiplot\n";
  FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out + "/compare.gp", gp));
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    if (std::system(("gnuplot '" + out + "/compare.gp' 2>/dev/null").c_str()) != 0) {
      LogWarn("gnuplot failed; %s/compare.gp is there to retry", out);
    }
  } else {
    LogWarn("gnuplot is not installed: no compare.svg (apt-get install gnuplot-nox, then gnuplot %s/compare.gp)", out);
  }
  std::printf("%s", md.c_str());
  LogInfo("wrote %s/compare.md, compare.csv, compare.svg", out);
  return absl::OkStatus();
}

int Run(const std::vector<std::string>& positional) {
  if (!positional.empty()) return ReportFailure(absl::InvalidArgumentError("unexpected argument '" + positional[0] + "'"));
  absl::Status st = RunReport();
  return st.ok() ? kExitOk : ReportFailure(st);
}

}  // namespace

const Command& ReportCommand() {
  static const Command c{"report", "compare finished runs: compare.md, compare.csv, compare.svg",
                         "Reads results.json of each run and writes the comparison: per method the trainable\n"
                         "parameters (and share of all), eval accuracy per epoch, training time, samples/s,\n"
                         "tokens/s, peak memory, gradient bytes all-reduced per step and the share of time spent\n"
                         "communicating, plus a plot (gnuplot).\n\n"
                         "  ftune report --runs=runs/full,runs/head,runs/lora --output=results/compare\n"
                         "  ftune report --sweep=runs/sweep    # summary.md/csv of a launch/sweep.sh grid",
                         {{"comparison", {"runs", "output", "title"}}, {"sweep summary", {"sweep"}}},
                         __FILE__,
                         &Run};
  return c;
}

}  // namespace ftune::cli
