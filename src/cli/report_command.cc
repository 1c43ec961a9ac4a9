// `ftune report`: the comparison table over finished runs (the answer to "which method should I
// use, and what does it cost?"): compare.md, compare.csv and compare.svg (accuracy per epoch and
// throughput per method, drawn with gnuplot when it is installed).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/command.h"
#include "cli/report_common.h"
#include "cli/shared_flags.h"
#include "common/files.h"
#include "common/log.h"
#include "nlohmann/json.hpp"
#include "report/stats.h"
#include "train/run_summary.h"

ABSL_FLAG(std::vector<std::string>, runs, {}, "Comma-separated run directories (each with results.json).");
ABSL_FLAG(std::string, sweep, "",
          "A launch/sweep.sh directory: writes its summary.md/summary.csv, one row per grid point of its grid.csv "
          "(done runs with their numbers, failed, stopped or pending ones with their status).");
ABSL_FLAG(std::string, title, ftune::cli::kCompareTitle, "Title of the report.");
ABSL_FLAG(bool, bench, false,
          "The speed table of launch/bench.sh instead of the comparison: one row per run (failed and unrun "
          "ones too), ratios to the Hugging Face Trainer anchor (--hf_results); --output=FILE.md, and FILE.json "
          "beside it.");

namespace ftune::cli {

absl::StatusOr<json> ReadJsonIfPresent(const std::string& path) {
  if (!PathExists(path)) return json();
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return absl::DataLossError(absl::StrFormat("%s is not a JSON object", path));
  return j;
}

std::string ConfigValue(const json& config, const char* name, const std::string& fallback) {
  if (!config.is_object() || !config.contains(name)) return fallback;
  const json& v = config[name];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean() || v.is_number()) return v.dump();  // typed run_config.json (and Abseil's "true"/"1")
  return fallback;
}

namespace {

std::string Mib(double bytes) {
  if (bytes >= (1 << 30)) return absl::StrFormat("%.2f GiB", bytes / (1 << 30));
  if (bytes >= (1 << 20)) return absl::StrFormat("%.1f MiB", bytes / (1 << 20));
  return absl::StrFormat("%.1f KiB", bytes / 1024);
}

// A finished run: its directory and results.json.
struct Run {
  std::string dir;
  train::RunSummary r;
};

// A run's results.json, or NotFound when the run has not finished.
absl::StatusOr<Run> ReadResults(const std::string& dir) {
  FTUNE_ASSIGN_OR_RETURN(train::RunSummary r, train::RunSummary::Read(dir + "/results.json"));
  return Run{dir, std::move(r)};
}

// summary.md + summary.csv of a sweep: <dir>/grid.csv (run,method,learning_rate,lora_rank,seed, as
// launch/sweep.sh wrote it) joined with each run's results.json or its exit code in logs/.
absl::Status RunSweepSummary(const std::string& dir) {
  FTUNE_ASSIGN_OR_RETURN(std::string grid, ReadFileToString(dir + "/grid.csv"));
  std::string csv =
      "run,method,learning_rate,lora_rank,seed,trainable_parameters,eval_accuracy,samples_per_second,status\n";
  std::string md =
      "| run | method | lr | rank | seed | trainable params | eval accuracy | samples/s | status |\n"
      "|---|---|---|---|---|---:|---:|---:|---|\n";
  int rows = 0, line_no = 0;
  for (absl::string_view line : absl::StrSplit(grid, '\n', absl::SkipEmpty())) {
    if (++line_no == 1) continue;  // header
    std::vector<std::string> f = absl::StrSplit(line, ',');
    if (f.size() != 5) {
      return absl::DataLossError(
          absl::StrFormat("%s/grid.csv:%d: expected 5 fields (run,method,learning_rate,"
                          "lora_rank,seed), got %d",
                          dir, line_no, f.size()));
    }
    std::string trainable, acc, sps, status = "pending";
    auto run = ReadResults(dir + "/" + f[0]);
    if (run.ok()) {
      status = "done";
      trainable = absl::StrFormat("%d", run->r.trainable_parameters);
      const double a = run->r.final_eval_accuracy();
      if (a >= 0) acc = absl::StrFormat("%.4f", a);
      sps = absl::StrFormat("%.1f", run->r.samples_per_second);
    } else if (!absl::IsNotFound(run.status())) {
      return run.status();
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

// Per method over its seeds: mean eval accuracy with a 95% Student-t interval, the paired test
// against full fine-tuning on the same eval examples (exact McNemar on <run>/predictions.csv,
// written by launch/compare.sh, per seed), and the costs; then the cost/accuracy frontier plot
// (compare-frontier.svg/.png). Appended to `md` as its own section.
absl::Status AppendMethodSummary(const std::vector<Run>& results, const std::string& out, std::string* md) {
  struct Method {
    std::string name;
    std::vector<double> acc;
    std::map<std::string, std::vector<bool>> correct;  // seed -> per-example correctness
    double trainable = 0, bytes = 0, seconds = 0, memory = 0;
    int runs = 0;
  };
  std::vector<Method> methods;
  for (const auto& [dir, r] : results) {
    const std::string& name = r.method;
    auto it = std::find_if(methods.begin(), methods.end(), [&](const Method& m) { return m.name == name; });
    if (it == methods.end()) {
      it = methods.emplace(methods.end());
      it->name = name;
    }
    const double acc = r.final_eval_accuracy();
    if (acc < 0) continue;
    it->acc.push_back(acc);
    ++it->runs;
    it->trainable = static_cast<double>(r.trainable_parameters);
    it->bytes = static_cast<double>(r.comm_bytes_per_step);
    it->seconds += r.train_seconds;
    it->memory += static_cast<double>(r.peak_memory_bytes);
    const std::string preds = dir + "/predictions.csv";
    if (!PathExists(preds)) continue;
    FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(preds));
    std::vector<bool> ok;
    int line_no = 0;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      if (++line_no == 1) continue;  // row,label,pred,logit_...
      std::vector<absl::string_view> f = absl::StrSplit(line, ',');
      if (f.size() < 3)
        return absl::DataLossError(absl::StrFormat("%s:%d: expected row,label,pred,...", preds, line_no));
      ok.push_back(f[1] == f[2]);
    }
    it->correct[std::to_string(r.seed)] = std::move(ok);
  }
  const Method* full = nullptr;
  for (const auto& m : methods) {
    if (m.name == "full") full = &m;
  }
  *md +=
      "\n## Per method, over seeds\n\n"
      "| method | seeds | eval accuracy (mean, 95% CI) | vs full | McNemar p vs full, per seed | trainable params | "
      "all-reduced / step | train time | peak memory |\n|---|---:|---|---:|---|---:|---:|---:|---:|\n";
  std::string dat;  // frontier: one line per method
  for (const auto& m : methods) {
    if (m.runs == 0) continue;
    FTUNE_ASSIGN_OR_RETURN(report::MeanInterval ci, report::MeanConfidenceInterval(m.acc));
    std::string interval = absl::StrFormat("%.4f", ci.mean);
    if (ci.n > 1) absl::StrAppendFormat(&interval, " [%.4f, %.4f]", ci.lower(), ci.upper());
    std::string delta = "-", tests = "-";
    if (full != nullptr && full != &m && !full->acc.empty()) {
      FTUNE_ASSIGN_OR_RETURN(report::MeanInterval f, report::MeanConfidenceInterval(full->acc));
      delta = absl::StrFormat("%+.4f", ci.mean - f.mean);
      std::vector<std::string> ps;
      int significant = 0;
      for (const auto& [seed, correct] : m.correct) {
        auto other = full->correct.find(seed);
        if (other == full->correct.end()) continue;
        FTUNE_ASSIGN_OR_RETURN(report::McNemarResult t, report::McNemarExact(other->second, correct));
        ps.push_back(absl::StrFormat("%.3g", t.p_value));
        significant += t.p_value < 0.05;
      }
      if (!ps.empty()) {
        tests = absl::StrFormat("%s (%s)", absl::StrJoin(ps, ", "),
                                significant == 0 ? "no seed differs at 0.05"
                                                 : absl::StrFormat("%d of %d seeds differ at 0.05", significant,
                                                                   static_cast<int>(ps.size())));
      }
    }
    const double seconds = m.seconds / m.runs, memory = m.memory / m.runs;
    absl::StrAppendFormat(md, "| %s | %d | %s | %s | %s | %.0f | %s | %.1f s | %s |\n", m.name, m.runs, interval, delta,
                          tests, m.trainable, Mib(m.bytes), seconds, Mib(memory));
    absl::StrAppendFormat(&dat, "%s %.6f %.6f %.0f %.0f %.3f %.3f\n", m.name, ci.mean, ci.n > 1 ? ci.half_width : 0.0,
                          std::max(1.0, m.trainable), std::max(1.0, m.bytes), seconds, memory / (1 << 20));
  }
  *md +=
      "\nThe interval is Student's t over seeds (none from one seed). McNemar's exact test compares each "
      "method with full fine-tuning on the same eval examples and seed (predictions.csv in each run); p >= 0.05 "
      "means this eval set cannot tell them apart. Times and memory are means over seeds.\n\n"
      "![cost/accuracy frontier](compare-frontier.svg)\n";
  FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out + "/compare-frontier.dat", dat));
  // Four panels, one point per method with its interval: accuracy against what the method costs.
  std::string gp;
  for (const char* term : {"svg size 1000,760 dynamic font 'sans,11'", "pngcairo size 1200,900 font 'sans,11'"}) {
    const bool svg = absl::StartsWith(term, "svg");
    absl::StrAppendFormat(&gp,
                          "set terminal %s\nset termoption noenhanced\nset output '%s/compare-frontier.%s'\n"
                          "set multiplot layout 2,2 title \"%s\\neval accuracy against cost (mean and 95%% CI over "
                          "seeds)\" noenhanced\nset grid\nunset key\nset ylabel 'eval accuracy'\nset offsets graph "
                          "0.08, graph 0.08, graph 0.08, graph 0.08\n",
                          term, out, svg ? "svg" : "png", absl::GetFlag(FLAGS_title));
    const struct {
      int column;
      const char* label;
      bool log;
    } panels[] = {{4, "trainable parameters", true},
                  {5, "bytes all-reduced per step (per rank)", true},
                  {6, "training time (s)", false},
                  {7, "peak memory (MiB)", false}};
    for (const auto& p : panels) {
      // Labels alternate above and below their points, so neighbours do not print over each other.
      absl::StrAppendFormat(&gp,
                            "%sset logscale x\nset xlabel '%s'\nplot '%s/compare-frontier.dat' using %d:2:3 with "
                            "yerrorbars pt 7 ps 1, '' every 2 using %d:2:1 with labels offset 1.5,0.8 font ',10', "
                            "'' every 2::1 using %d:2:1 with labels offset 1.5,-0.8 font ',10'\n",
                            p.log ? "" : "un", p.label, out, p.column, p.column, p.column);
    }
    gp += "unset multiplot\nunset logscale x\n";
  }
  FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out + "/compare-frontier.gp", gp));
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0 &&
      std::system(("gnuplot '" + out + "/compare-frontier.gp' 2>/dev/null").c_str()) != 0) {
    LogWarn("gnuplot failed; %s/compare-frontier.gp is there to retry", out);
  }
  return absl::OkStatus();
}

absl::Status RunReport() {
  if (!absl::GetFlag(FLAGS_sweep).empty()) return RunSweepSummary(absl::GetFlag(FLAGS_sweep));
  const auto runs = absl::GetFlag(FLAGS_runs);
  const std::string out = absl::GetFlag(FLAGS_output);
  if (runs.empty()) return absl::InvalidArgumentError("--runs is required (run directories with results.json)");
  if (out.empty()) return absl::InvalidArgumentError("--output is required (a directory for compare.*)");
  FTUNE_RETURN_IF_ERROR(MakeDirs(out));
  std::vector<Run> results;
  size_t max_epochs = 0;
  for (const auto& dir : runs) {
    FTUNE_ASSIGN_OR_RETURN(Run run, ReadResults(dir));
    if (!run.r.seed_recorded) {  // results of an older ftune: the seed is in run_config.json
      FTUNE_ASSIGN_OR_RETURN(json config, ReadJsonIfPresent(dir + "/run_config.json"));
      run.r.seed = std::stoull(ConfigValue(config, "seed", "42"));
    }
    max_epochs = std::max(max_epochs, run.r.epochs.size());
    results.push_back(std::move(run));
  }

  std::string md = absl::StrFormat("# %s\n\n", absl::GetFlag(FLAGS_title));
  std::string csv =
      "method,run,trainable_parameters,all_parameters,trainable_percent,final_eval_accuracy,train_seconds,"
      "samples_per_second,tokens_per_second,peak_memory_bytes,peak_memory_kind,comm_bytes_per_step,comm_share,"
      "world_size,device,final_eval_macro_f1";
  for (size_t e = 1; e <= max_epochs; ++e) absl::StrAppend(&csv, ",eval_accuracy_epoch_", e);
  csv += "\n";
  md +=
      "| method | trainable params | % of all | final eval acc. | macro-F1 | train time | samples/s | tokens/s | "
      "peak memory | all-reduced / step | comm share |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  std::string per_epoch = "| method |";
  for (size_t e = 1; e <= max_epochs; ++e) absl::StrAppend(&per_epoch, " epoch ", e, " |");
  per_epoch += "\n|---|";
  for (size_t e = 1; e <= max_epochs; ++e) per_epoch += "---:|";
  per_epoch += "\n";
  std::string dat;  // gnuplot data: one block per method (epoch, accuracy)
  for (const auto& [dir, r] : results) {
    const double trainable = static_cast<double>(r.trainable_parameters);
    const double all = static_cast<double>(std::max<int64_t>(1, r.all_parameters));
    double final_acc = -1, final_f1 = -1;
    std::vector<std::string> accs;
    absl::StrAppend(&dat, "# ", r.method, "\n");
    for (const auto& e : r.epochs) {
      if (e.eval) {
        final_acc = e.eval->accuracy();
        final_f1 = e.eval->num_labels > 0 ? e.eval->macro_f1() : -1.0;
        accs.push_back(absl::StrFormat("%.4f", final_acc));
        absl::StrAppendFormat(&dat, "%d %.6f\n", e.epoch, final_acc);
      } else {
        accs.push_back("");
      }
    }
    dat += "\n\n";
    const std::string& method = r.method;
    const double secs = r.train_seconds;
    absl::StrAppendFormat(&md, "| %s | %s | %.2f%% | %s | %s | %.1f s | %.1f | %.0f | %s (%s) | %s | %.1f%% |\n",
                          method, absl::StrFormat("%.0f", trainable), 100.0 * trainable / all,
                          final_acc < 0 ? "-" : absl::StrFormat("%.4f", final_acc),
                          final_f1 < 0 ? "-" : absl::StrFormat("%.4f", final_f1), secs, r.samples_per_second,
                          r.tokens_per_second, Mib(static_cast<double>(r.peak_memory_bytes)), r.peak_memory_kind,
                          Mib(static_cast<double>(r.comm_bytes_per_step)), 100.0 * r.comm_share);
    absl::StrAppendFormat(&per_epoch, "| %s | %s |\n", method, absl::StrJoin(accs, " | "));
    absl::StrAppendFormat(&csv, "%s,%s,%.0f,%.0f,%.4f,%s,%.3f,%.3f,%.1f,%d,%s,%d,%.5f,%d,%s,%s", method, dir, trainable,
                          all, 100.0 * trainable / all, final_acc < 0 ? "" : absl::StrFormat("%.6f", final_acc), secs,
                          r.samples_per_second, r.tokens_per_second, r.peak_memory_bytes, r.peak_memory_kind,
                          r.comm_bytes_per_step, r.comm_share, r.world_size, r.device,
                          final_f1 < 0 ? "" : absl::StrFormat("%.6f", final_f1));
    for (size_t e = 0; e < max_epochs; ++e) absl::StrAppend(&csv, ",", e < accs.size() ? accs[e] : "");
    csv += "\n";
  }
  md += "\nEval accuracy per epoch:\n\n" + per_epoch;
  md +=
      "\nPeak memory is the resident set (CPU) or the CUDA allocator's peak (GPU) of rank 0. "
      "\"all-reduced / step\" counts the gradient bytes each rank sends into the all-reduce: trainable "
      "parameters x 4 bytes, frozen ones never cross the wire. Throughput excludes evaluation.\n";
  md += "\n![accuracy per epoch and throughput](compare.svg)\n";
  FTUNE_RETURN_IF_ERROR(AppendMethodSummary(results, out, &md));
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
    absl::StrAppendFormat(&gp, "%s'%s/compare.dat' index %d with linespoints lw 2 title '%s'", i ? ", " : "", out, i,
                          results[i].r.method);
  }
  gp +=
      "\nset title 'training throughput'\nset ylabel 'samples/s'\nunset xlabel\nset style fill solid 0.6\n"
      "set boxwidth 0.6\nset xtics ()\nset yrange [0:*]\nunset key\nplot '-' using 1:2:xtic(3) with boxes\n";
  for (size_t i = 0; i < results.size(); ++i) {
    absl::StrAppendFormat(&gp, "%d %.3f %s\n", i, results[i].r.samples_per_second, results[i].r.method);
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

int ReportMain(const std::vector<std::string>& positional) {
  if (!positional.empty())
    return ReportFailure(absl::InvalidArgumentError("unexpected argument '" + positional[0] + "'"));
  absl::Status st = absl::GetFlag(FLAGS_bench) ? RunBenchReport() : RunReport();
  return st.ok() ? kExitOk : ReportFailure(st);
}

}  // namespace

const Command& ReportCommand() {
  static const Command c{
      "report",
      "compare finished runs: compare.md, compare.csv, compare.svg",
      "Reads results.json of each run and writes the comparison: per method the trainable\n"
      "parameters (and share of all), eval accuracy per epoch, training time, samples/s,\n"
      "tokens/s, peak memory, gradient bytes all-reduced per step and the share of time spent\n"
      "communicating, plus a plot (gnuplot).\n\n"
      "  ftune report --runs=runs/full,runs/head,runs/lora --output=results/compare\n"
      "  ftune report --sweep=runs/sweep    # summary.md/csv of a launch/sweep.sh grid\n\n"
      "With --bench, the speed table of launch/bench.sh instead: a row per run directory\n"
      "(samples/s, tokens/s, padding, peak memory, model TFLOP/s, eval accuracy, the\n"
      "--time_phases breakdown of <run>-phases/, and the ratio to the HF Trainer runs in\n"
      "--hf_results), as FILE.md and FILE.json:\n\n"
      "  ftune report --bench --runs=b/full-bf16,b/lora-bf16 --hf_results=b/hf.json --output=bench.md",
      {{"comparison", {"runs", "output", "title"}},
       {"sweep summary", {"sweep"}},
       {"speed table (launch/bench.sh)", {"bench", "hf_results"}}},
      __FILE__,
      &ReportMain};
  return c;
}

}  // namespace ftune::cli
