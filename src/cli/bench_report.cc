// `ftune report --bench`: the speed table of launch/bench.sh, one row per run directory (failed
// and unrun ones too), with the ratios to the Hugging Face Trainer anchor.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/report_common.h"
#include "cli/shared_flags.h"
#include "common/files.h"
#include "common/log.h"
#include "train/run_summary.h"

ABSL_FLAG(std::string, hf_results, "",
          "--bench: the JSON hfbench.py wrote (HF Trainer runs on the same device), for the ftune / HF ratios.");

namespace ftune::cli {
namespace {

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
double ModelTflops(const train::RunSummary& r) {
  if (r.feature_cache || r.train_seconds <= 0) return -1;
  const double layers = static_cast<double>(r.model.num_hidden_layers), d = static_cast<double>(r.model.hidden_size);
  const double ff = static_cast<double>(r.model.intermediate_size);
  const double secs = r.train_seconds;
  const double padded = r.tokens_per_second * secs / std::max(1e-9, 1.0 - r.padding_fraction);
  const double samples = std::max(1.0, r.samples_per_second * secs);
  const double per_token_forward = 2 * layers * (4 * d * d + 2 * d * ff) + layers * 4 * (padded / samples) * d;
  const double passes = r.method == "full" ? 3 : r.method == "lora" ? 2 : 1;
  return passes * per_token_forward * padded / secs / 1e12;
}

// A run's results.json, absent (nullopt) when the run did not finish.
absl::StatusOr<std::optional<train::RunSummary>> ReadIfPresent(const std::string& path) {
  if (!PathExists(path)) return std::optional<train::RunSummary>();
  FTUNE_ASSIGN_OR_RETURN(train::RunSummary r, train::RunSummary::Read(path));
  return std::optional<train::RunSummary>(std::move(r));
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

}  // namespace

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
    FTUNE_ASSIGN_OR_RETURN(std::optional<train::RunSummary> results, ReadIfPresent(dir + "/results.json"));
    FTUNE_ASSIGN_OR_RETURN(json config, ReadJsonIfPresent(dir + "/run_config.json"));
    FTUNE_ASSIGN_OR_RETURN(std::optional<train::RunSummary> phases, ReadIfPresent(dir + "-phases/results.json"));
    json row = {{"run", Basename(dir)}};
    if (!results) {
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
    const train::RunSummary& r = *results;
    if (!r.torch.empty()) torch_version = r.torch;
    const std::string& method = r.method;
    const std::string& precision = r.precision;
    const bool cache = r.feature_cache;
    const int pad = std::atoi(ConfigValue(config, "pad_to_multiple_of", "1").c_str());
    const bool cudnn = ConfigValue(config, "cudnn_sdp", "true") != "false";  // runs before it was a flag: on
    const bool whole_epochs = std::atoi(ConfigValue(config, "max_steps", "-1").c_str()) <= 0;
    std::vector<std::string> settings;
    if (cache) settings.push_back("feature cache");
    settings.push_back(pad > 1 ? absl::StrFormat("padded to x%d", pad) : "dynamic padding");
    if (cudnn) settings.push_back("cuDNN attention");

    const double train_s = r.train_seconds, cache_s = r.feature_cache_seconds;
    double sps = r.samples_per_second;
    std::string sps_cell = Rate(sps);
    if (cache && whole_epochs && train_s + cache_s > 0) {
      // Over whole epochs the one-time encoding is charged to the run, as a user waits for it.
      sps = sps * train_s / (train_s + cache_s);
      sps_cell = absl::StrFormat("%s (training alone %s; encoding once %.1f s)", Rate(sps), Rate(r.samples_per_second),
                                 cache_s);
    }
    const std::string hf_key = method + "_dyn" + (precision == "bf16" ? "_bf16" : "");
    const HfRun* same = hf.count(hf_key) ? &hf.at(hf_key) : nullptr;
    const HfRun* best = hf_best(method);
    double eval_acc = -1;
    if (!r.epochs.empty() && r.epochs.back().eval) eval_acc = r.epochs.back().eval->accuracy();
    const double tflops = ModelTflops(r);
    std::string step_ms;
    json step = json();
    if (phases && phases->step_seconds) {
      step = phases->ToJson()["step_seconds"];
      const auto& p = *phases->step_seconds;
      std::vector<std::string> parts;
      for (double seconds : {p.data, p.forward, p.backward, p.comm, p.optimizer}) {
        parts.push_back(absl::StrFormat("%.2f", 1e3 * seconds));
      }
      step_ms = absl::StrJoin(parts, " / ");
    }
    const int64_t skipped = r.skipped_steps;
    row.update({{"status", "ok"},
                {"method", method},
                {"precision", precision},
                {"feature_cache", cache},
                {"pad_to_multiple_of", pad},
                {"cudnn_sdp", cudnn},
                {"samples_per_second", sps},
                {"train_samples_per_second", r.samples_per_second},
                {"tokens_per_second", r.tokens_per_second},
                {"padding_fraction", r.padding_fraction},
                {"peak_memory_bytes", r.peak_memory_bytes},
                {"peak_memory_kind", r.peak_memory_kind},
                {"steps", r.steps},
                {"skipped_steps", skipped},
                {"train_seconds", train_s},
                {"feature_cache_seconds", cache_s},
                {"device", r.device}});
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
                          cache ? "" : absl::StrFormat("%.0f", r.tokens_per_second), 100 * r.padding_fraction,
                          static_cast<double>(r.peak_memory_bytes) / (1 << 30), r.peak_memory_kind,
                          tflops < 0 ? "" : absl::StrFormat("%.1f", tflops),
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

}  // namespace ftune::cli
