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
#include "cli/shared_flags.h"
#include "common/files.h"
#include "common/log.h"
#include "nlohmann/json.hpp"
#include "report/stats.h"

ABSL_FLAG(std::vector<std::string>, runs, {}, "Comma-separated run directories (each with results.json).");
ABSL_FLAG(std::string, sweep, "",
          "A launch/sweep.sh directory: writes its summary.md/summary.csv, one row per grid point of its grid.csv "
          "(done runs with their numbers, failed, stopped or pending ones with their status).");
constexpr char kCompareTitle[] = "ftune: full vs head vs LoRA";
ABSL_FLAG(std::string, title, kCompareTitle, "Title of the report.");
ABSL_FLAG(bool, bench, false,
          "The speed table of launch/bench.sh instead of the comparison: one row per run (failed and unrun "
          "ones too), ratios to the Hugging Face Trainer anchor (--hf_results); --output=FILE.md, and FILE.json "
          "beside it.");
ABSL_FLAG(std::string, hf_results, "",
          "--bench: the JSON hfbench.py wrote (HF Trainer runs on the same device), for the ftune / HF ratios.");

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

// A JSON file, or null where it is absent; an unreadable or malformed one is an error.
absl::StatusOr<json> ReadJsonIfPresent(const std::string& path) {
  if (!PathExists(path)) return json();
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return absl::DataLossError(absl::StrFormat("%s is not a JSON object", path));
  return j;
}

// A flag's value from run_config.json (Abseil writes every value as a string).
std::string ConfigValue(const json& config, const char* name, const std::string& fallback) {
  return config.is_object() && config.contains(name) && config[name].is_string() ? config[name].get<std::string>()
                                                                                 : fallback;
}

// Per method over its seeds: mean eval accuracy with a 95% Student-t interval, the paired test
// against full fine-tuning on the same eval examples (exact McNemar on <run>/predictions.csv,
// written by launch/compare.sh, per seed), and the costs; then the cost/accuracy frontier plot
// (compare-frontier.svg/.png). Appended to `md` as its own section.
absl::Status AppendMethodSummary(const std::vector<json>& results, const std::string& out, std::string* md) {
  struct Method {
    std::string name;
    std::vector<double> acc;
    std::map<std::string, std::vector<bool>> correct;  // seed -> per-example correctness
    double trainable = 0, bytes = 0, seconds = 0, memory = 0;
    int runs = 0;
  };
  std::vector<Method> methods;
  for (const auto& r : results) {
    const std::string name = r["method"];
    auto it = std::find_if(methods.begin(), methods.end(), [&](const Method& m) { return m.name == name; });
    if (it == methods.end()) {
      it = methods.emplace(methods.end());
      it->name = name;
    }
    const double acc = FinalAccuracy(r);
    if (acc < 0) continue;
    it->acc.push_back(acc);
    ++it->runs;
    it->trainable = r.value("trainable_parameters", 0.0);
    it->bytes = r.value("comm_bytes_per_step", 0.0);
    it->seconds += r.value("train_seconds", 0.0);
    it->memory += r.value("peak_memory_bytes", 0.0);
    const std::string preds = r["dir"].get<std::string>() + "/predictions.csv";
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
    it->correct[r["seed"].get<std::string>()] = std::move(ok);
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
  std::vector<json> results;
  size_t max_epochs = 0;
  for (const auto& dir : runs) {
    FTUNE_ASSIGN_OR_RETURN(json r, ReadResults(dir));
    r["dir"] = dir;
    FTUNE_ASSIGN_OR_RETURN(json config, ReadJsonIfPresent(dir + "/run_config.json"));
    r["seed"] = ConfigValue(config, "seed", "42");
    max_epochs = std::max(max_epochs, r["epochs"].size());
    results.push_back(r);
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
  for (const auto& r : results) {
    const double trainable = r.value("trainable_parameters", 0.0), all = r.value("all_parameters", 1.0);
    double final_acc = -1, final_f1 = -1;
    std::vector<std::string> accs;
    absl::StrAppend(&dat, "# ", r["method"].get<std::string>(), "\n");
    for (const auto& e : r["epochs"]) {
      if (e.contains("eval_accuracy")) {
        final_acc = e["eval_accuracy"].get<double>();
        final_f1 = e.value("eval_macro_f1", -1.0);
        accs.push_back(absl::StrFormat("%.4f", final_acc));
        absl::StrAppendFormat(&dat, "%d %.6f\n", e["epoch"].get<int>(), final_acc);
      } else {
        accs.push_back("");
      }
    }
    dat += "\n\n";
    const std::string method = r["method"];
    const double secs = r.value("train_seconds", 0.0);
    absl::StrAppendFormat(&md, "| %s | %s | %.2f%% | %s | %s | %.1f s | %.1f | %.0f | %s (%s) | %s | %.1f%% |\n",
                          method, absl::StrFormat("%.0f", trainable), 100.0 * trainable / all,
                          final_acc < 0 ? "-" : absl::StrFormat("%.4f", final_acc),
                          final_f1 < 0 ? "-" : absl::StrFormat("%.4f", final_f1), secs,
                          r.value("samples_per_second", 0.0), r.value("tokens_per_second", 0.0),
                          Mib(r.value("peak_memory_bytes", 0.0)), r.value("peak_memory_kind", std::string("?")),
                          Mib(r.value("comm_bytes_per_step", 0.0)), 100.0 * r.value("comm_share", 0.0));
    absl::StrAppendFormat(&per_epoch, "| %s | %s |\n", method, absl::StrJoin(accs, " | "));
    absl::StrAppendFormat(&csv, "%s,%s,%.0f,%.0f,%.4f,%s,%.3f,%.3f,%.1f,%.0f,%s,%.0f,%.5f,%d,%s,%s", method,
                          r["dir"].get<std::string>(), trainable, all, 100.0 * trainable / all,
                          final_acc < 0 ? "" : absl::StrFormat("%.6f", final_acc), secs,
                          r.value("samples_per_second", 0.0), r.value("tokens_per_second", 0.0),
                          r.value("peak_memory_bytes", 0.0), r.value("peak_memory_kind", std::string("")),
                          r.value("comm_bytes_per_step", 0.0), r.value("comm_share", 0.0), r.value("world_size", 1),
                          r.value("device", std::string("")), final_f1 < 0 ? "" : absl::StrFormat("%.6f", final_f1));
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
                          results[i]["method"].get<std::string>());
  }
  gp +=
      "\nset title 'training throughput'\nset ylabel 'samples/s'\nunset xlabel\nset style fill solid 0.6\n"
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

// ---- --bench: the speed table of launch/bench.sh ------------------------------------------------

std::string Basename(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string Rate(double x) { return x >= 100 ? absl::StrFormat("%.0f", x) : absl::StrFormat("%.1f", x); }

// Approximate model TFLOP/s of a run: 2 FLOPs per multiply-add of the encoder's matmuls and
// attention over the padded tokens the device computed; full = forward + input and weight
// gradients (3x forward), lora = forward + input gradients (2x; frozen weights get none), head =
// the encoder's forward (1x). -1 for the feature cache, whose encoder ran once before training.
double ModelTflops(const json& r) {
  if (r.value("feature_cache", false) || r.value("train_seconds", 0.0) <= 0) return -1;
  const json m = r.value("model", json{{"dim", 768}, {"n_layers", 6}, {"hidden_dim", 3072}});
  const double layers = m.value("n_layers", 6), d = m.value("dim", 768), ff = m.value("hidden_dim", 3072);
  const double secs = r["train_seconds"].get<double>();
  const double padded =
      r.value("tokens_per_second", 0.0) * secs / std::max(1e-9, 1.0 - r.value("padding_fraction", 0.0));
  const double samples = std::max(1.0, r.value("samples_per_second", 0.0) * secs);
  const double per_token_forward = 2 * layers * (4 * d * d + 2 * d * ff) + layers * 4 * (padded / samples) * d;
  const std::string method = r.value("method", std::string("full"));
  const double passes = method == "full" ? 3 : method == "lora" ? 2 : 1;
  return passes * per_token_forward * padded / secs / 1e12;
}

// The HF anchor: hfbench.py's {"runs": {"full_dyn_bf16": {"train_metrics": {...}, "peak_mem_gib"}, ...}}.
struct HfRun {
  std::string name;  // hfbench's method name: <full|lora|head>[_dyn][_bf16]
  double samples_per_second = 0;
  double peak_gib = 0;
};

// "5.3x (HF full_dyn_bf16: 55)", or "" without that HF run.
std::string VsHf(double ours, const HfRun* hf) {
  if (hf == nullptr || hf->samples_per_second <= 0) return "";
  return absl::StrFormat("%.1fx (HF %s: %s)", ours / hf->samples_per_second, hf->name, Rate(hf->samples_per_second));
}

absl::Status RunBenchReport() {
  const auto runs = absl::GetFlag(FLAGS_runs);
  const std::string out = absl::GetFlag(FLAGS_output);
  if (runs.empty()) return absl::InvalidArgumentError("--runs is required (the benchmark's run directories)");
  if (out.size() < 4 || out.substr(out.size() - 3) != ".md") {
    return absl::InvalidArgumentError("--bench needs --output=FILE.md (FILE.json is written beside it)");
  }
  const std::string out_json = out.substr(0, out.size() - 3) + ".json";
  if (const size_t slash = out.rfind('/'); slash != std::string::npos && slash > 0) {
    FTUNE_RETURN_IF_ERROR(MakeDirs(out.substr(0, slash)));
  }

  std::map<std::string, HfRun> hf;
  json hf_doc = json::object();
  if (const std::string path = absl::GetFlag(FLAGS_hf_results); !path.empty()) {
    // A missing or cut-off anchor (hfbench.py stopped by the time limit mid-write) costs only its columns.
    absl::StatusOr<json> doc = ReadJsonIfPresent(path);
    if (doc.ok() && doc->is_object()) {
      hf_doc = *doc;
    } else {
      LogWarn("%s: %s: no HF anchor in the table", path, doc.ok() ? "not found" : doc.status().message());
    }
    const json hf_runs = hf_doc.value("runs", json::object());
    for (const auto& [name, v] : hf_runs.items()) {
      if (!v.is_object() || !v.contains("train_metrics")) continue;
      HfRun h{name, v["train_metrics"].value("train_samples_per_second", 0.0), v.value("peak_mem_gib", 0.0)};
      if (h.samples_per_second > 0) hf[name] = h;
    }
  }
  // HF's fastest run of a method, whatever its padding and precision (the bar the goals set).
  auto hf_best = [&](const std::string& method) -> const HfRun* {
    const HfRun* best = nullptr;
    for (const auto& [name, h] : hf) {
      if (name.substr(0, name.find('_')) == method && (!best || h.samples_per_second > best->samples_per_second)) {
        best = &h;
      }
    }
    return best;
  };

  std::string torch_version = "?", md_rows;
  json rows = json::array();
  for (const auto& dir : runs) {
    FTUNE_ASSIGN_OR_RETURN(json r, ReadJsonIfPresent(dir + "/results.json"));
    FTUNE_ASSIGN_OR_RETURN(json config, ReadJsonIfPresent(dir + "/run_config.json"));
    FTUNE_ASSIGN_OR_RETURN(json phases, ReadJsonIfPresent(dir + "-phases/results.json"));
    json row = {{"run", Basename(dir)}};
    if (r.is_null()) {
      // launch/bench.sh leaves a one-line `status` saying why (failed, timed out, not run for lack of time).
      std::string why = "failed (no results.json)";
      if (auto st = ReadFileToString(dir + "/status"); st.ok() && !st->empty()) why = st->substr(0, st->find('\n'));
      row["status"] = why;
      // run_config.json is written before training starts, so a run that died later still names its set-up.
      const std::string method = ConfigValue(config, "method", ""), precision = ConfigValue(config, "precision", "");
      if (!method.empty()) row.update({{"method", method}, {"precision", precision}});
      absl::StrAppendFormat(&md_rows, "| %s | %s | %s | | %s | | | | | | | | |\n", Basename(dir), method, precision,
                            why);
      rows.push_back(row);
      continue;
    }
    torch_version = r.value("torch", torch_version);
    const std::string method = r.value("method", std::string("?")), precision = r.value("precision", std::string("?"));
    const bool cache = r.value("feature_cache", false);
    const int pad = std::atoi(ConfigValue(config, "pad_to_multiple_of", "1").c_str());
    const bool cudnn = ConfigValue(config, "cudnn_sdp", "true") != "false";  // runs before it was a flag: on
    const bool whole_epochs = std::atoi(ConfigValue(config, "max_steps", "-1").c_str()) <= 0;
    std::vector<std::string> settings;
    if (cache) settings.push_back("feature cache");
    settings.push_back(pad > 1 ? absl::StrFormat("padded to x%d", pad) : "dynamic padding");
    if (cudnn) settings.push_back("cuDNN attention");

    const double train_s = r.value("train_seconds", 0.0), cache_s = r.value("feature_cache_seconds", 0.0);
    double sps = r.value("samples_per_second", 0.0);
    std::string sps_cell = Rate(sps);
    if (cache && whole_epochs && train_s + cache_s > 0) {
      // Over whole epochs the one-time encoding is charged to the run, as a user waits for it.
      sps = sps * train_s / (train_s + cache_s);
      sps_cell = absl::StrFormat("%s (training alone %s; encoding once %.1f s)", Rate(sps),
                                 Rate(r.value("samples_per_second", 0.0)), cache_s);
    }
    const std::string hf_key = method + "_dyn" + (precision == "bf16" ? "_bf16" : "");
    const HfRun* same = hf.count(hf_key) ? &hf.at(hf_key) : nullptr;
    const HfRun* best = hf_best(method);
    double eval_acc = -1;
    if (r.contains("epochs") && !r["epochs"].empty()) eval_acc = r["epochs"].back().value("eval_accuracy", -1.0);
    const double tflops = ModelTflops(r);
    std::string step_ms;
    json step = json();
    if (phases.is_object() && phases.contains("step_seconds")) {
      step = phases["step_seconds"];
      std::vector<std::string> parts;
      for (const char* k : {"data", "forward", "backward", "comm", "optimizer"}) {
        parts.push_back(absl::StrFormat("%.2f", 1e3 * step.value(k, 0.0)));
      }
      step_ms = absl::StrJoin(parts, " / ");
    }
    const int64_t skipped = r.value("skipped_steps", int64_t{0});
    row.update({{"status", "ok"},
                {"method", method},
                {"precision", precision},
                {"feature_cache", cache},
                {"pad_to_multiple_of", pad},
                {"cudnn_sdp", cudnn},
                {"samples_per_second", sps},
                {"train_samples_per_second", r.value("samples_per_second", 0.0)},
                {"tokens_per_second", r.value("tokens_per_second", 0.0)},
                {"padding_fraction", r.value("padding_fraction", 0.0)},
                {"peak_memory_bytes", r.value("peak_memory_bytes", 0.0)},
                {"peak_memory_kind", r.value("peak_memory_kind", std::string())},
                {"steps", r.value("steps", 0)},
                {"skipped_steps", skipped},
                {"train_seconds", train_s},
                {"feature_cache_seconds", cache_s},
                {"device", r.value("device", std::string())}});
    if (tflops >= 0) row["model_tflops"] = tflops;
    if (eval_acc >= 0) row["eval_accuracy"] = eval_acc;
    if (!step.is_null()) row["step_seconds"] = step;
    if (same)
      row["hf_same_config"] = {{"run", same->name},
                               {"samples_per_second", same->samples_per_second},
                               {"ratio", sps / same->samples_per_second},
                               {"peak_mem_gib", same->peak_gib}};
    if (best)
      row["hf_best"] = {{"run", best->name},
                        {"samples_per_second", best->samples_per_second},
                        {"ratio", sps / best->samples_per_second},
                        {"peak_mem_gib", best->peak_gib}};
    rows.push_back(row);
    absl::StrAppendFormat(&md_rows, "| %s | %s | %s | %s | %s%s | %s | %.1f%% | %.2f %s | %s | %s | %s | %s | %s |\n",
                          Basename(dir), method, precision, absl::StrJoin(settings, ", "), sps_cell,
                          skipped ? absl::StrFormat(" (%d non-finite steps skipped)", skipped) : "",
                          cache ? "" : absl::StrFormat("%.0f", r.value("tokens_per_second", 0.0)),
                          100 * r.value("padding_fraction", 0.0), r.value("peak_memory_bytes", 0.0) / (1 << 30),
                          r.value("peak_memory_kind", std::string()), tflops < 0 ? "" : absl::StrFormat("%.1f", tflops),
                          eval_acc < 0 ? "" : absl::StrFormat("%.3f", eval_acc), step_ms, VsHf(sps, same),
                          VsHf(sps, best));
  }

  std::string title = absl::GetFlag(FLAGS_title);
  if (title == kCompareTitle) title = "ftune training speed";
  std::string md = absl::StrFormat(
      "# %s\n\nLibTorch %s. Each row is one `ftune train` run; samples/s and tokens/s are over "
      "its training (evaluation excluded, first steps included).\n\n",
      title, torch_version);
  md +=
      "| run | method | precision | settings | samples/s | tokens/s | padding | peak memory GiB | model TFLOP/s "
      "(approx.) | eval acc. | step ms: data / fwd / bwd / comm / opt | vs HF Trainer, same settings | vs HF "
      "Trainer's fastest run of the method |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---|\n";
  md += md_rows;
  if (hf_doc.contains("runs") && hf_doc["runs"].is_object() && !hf_doc["runs"].empty()) {
    absl::StrAppendFormat(&md,
                          "\nHugging Face Trainer anchor (hfbench.py, same call; transformers %s, torch %s):\n\n"
                          "| HF run | samples/s | peak memory GiB | eval acc. |\n|---|---:|---:|---:|\n",
                          hf_doc.value("transformers", std::string("?")), hf_doc.value("torch", std::string("?")));
    for (const auto& [name, v] : hf_doc["runs"].items()) {
      if (hf.count(name)) {
        double acc = -1;
        if (v.contains("eval") && v["eval"].is_object()) acc = v["eval"].value("eval_accuracy", -1.0);
        absl::StrAppendFormat(&md, "| %s | %s | %.2f | %s |\n", name, Rate(hf[name].samples_per_second),
                              hf[name].peak_gib, acc < 0 ? "" : absl::StrFormat("%.3f", acc));
      } else {
        absl::StrAppendFormat(&md, "| %s | failed: see the log | | |\n", name);
      }
    }
  }
  md +=
      "\n- settings: `--pad_to_multiple_of` (dynamic padding pads each batch to its longest review only), "
      "`--cudnn_sdp`, `--cache_frozen_features` (head: samples/s over the whole epoch charges the one-time "
      "encoding to it; in brackets the training alone and the encoding).\n"
      "- step ms: a separate short run with `--time_phases`, which synchronises the device at each phase "
      "boundary, so the phases add up to more than an unsynchronised step.\n"
      "- model TFLOP/s: 2 FLOPs per multiply-add of the encoder's matmuls and attention over the padded tokens; "
      "full = 3x forward, LoRA = 2x, head = 1x.\n"
      "- vs HF: ftune's samples/s over HF Trainer's (hfbench.py: Trainer + PEFT, random init) for the same "
      "method, precision and dynamic padding, and over HF's fastest run of the method in this call (`_dyn` = "
      "dynamic padding with length grouping, else every review padded to 512).\n";
  json doc = {{"title", title}, {"torch", torch_version}, {"rows", rows}, {"hf", hf_doc}};
  FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out, md));
  FTUNE_RETURN_IF_ERROR(WriteFileAtomic(out_json, doc.dump(1) + "\n"));
  std::printf("%s", md.c_str());
  LogInfo("wrote %s and %s", out, out_json);
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
