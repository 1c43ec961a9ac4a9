// `ftune prep`: CSV/JSONL -> pre-tokenized HDF5 token dataset. Turns flags into
// prep::PrepOptions, shows progress on stderr and prints the summary; the work is in data-prep/.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cli/command.h"
#include "cli/shared_flags.h"
#include "common/log.h"
#include "data-prep/prep.h"

ABSL_FLAG(std::string, input, "", "Input file: a CSV with a header row, or JSONL with --input_format=jsonl.");
ABSL_FLAG(std::string, input_format, "csv",
          "csv (text + label columns) or jsonl (one {\"ids\": [...], \"label\": n} per line: bring your own tokens).");
ABSL_FLAG(std::string, text_column, "review", "CSV column holding the text.");
ABSL_FLAG(std::string, label_column, "label",
          "CSV column holding the label. Empty (--label_column=) writes a dataset without labels, text for "
          "pretraining (with jsonl: a \"label\" key is then not read); a classifier refuses to train on it.");
ABSL_FLAG(std::vector<std::string>, labels, {},
          "Comma-separated label names; label k is the k-th name and the input may use the names "
          "(case-insensitive) or their indices. Default: binary 0/1, negative/positive, neg/pos.");
ABSL_FLAG(std::string, text_pair_column, "",
          "CSV column holding the second text of sentence pairs (HF's text_pair); pairs are truncated "
          "longest_first to --max_length and their token_type_ids stored where the tokenizer gives them.");
ABSL_FLAG(std::string, tokenizer_json, "",
          "Hugging Face tokenizer.json to tokenize with (default: <model_dir>/tokenizer.json when present).");
ABSL_FLAG(int64_t, progress_every, 100000,
          "When stderr is not a terminal, print a progress line every this many examples (0 = never).");

namespace ftune::cli {
namespace {

constexpr char kUsage[] =
    "Tokenizes a CSV of texts and labels (or a JSONL of token ids) into an HDF5 token dataset that\n"
    "`ftune train` reads: ragged token ids (no padding), per-example offsets, labels (none with\n"
    "--label_column=), and the vocab hash, tokenizer settings and source file recorded as\n"
    "attributes. The tokenizer is Hugging Face's, token for token: <model_dir>/tokenizer.json when\n"
    "present (or --tokenizer_json), else the BERT WordPiece of vocab.txt (--vocab, <model_dir>/vocab.txt);\n"
    "texts are truncated to --max_length as HF's truncation=True (pairs: longest_first). Labels are\n"
    "floats (regression) when <model_dir>/config.json says problem_type regression or one label, or\n"
    "when the label column holds non-integer numbers. Output is written to a temp file and renamed\n"
    "only on success.\n\n"
    "  ftune prep --input train.csv --output train.h5 --vocab vocab.txt\n"
    "  ftune prep --input data.csv --text_column text --label_column stars --labels bad,ok,good \\\n"
    "             --model_dir models/distilbert-base-uncased --output data.h5\n"
    "  ftune prep --input unsup.csv --label_column= --output unsup.h5 --vocab vocab.txt   # no labels\n"
    "  ftune prep --input mrpc.csv --text_column sentence1 --text_pair_column sentence2 \\\n"
    "             --model_dir models/roberta-base --output mrpc.h5                      # pairs\n\n"
    "Exit status: 0 ok, 1 bad input or I/O error (the message names file:line), 2 bad flags.";

// Progress on stderr: a self-updating line on a terminal, else a line every --progress_every examples.
class Progress {
 public:
  explicit Progress(int64_t every) : tty_(isatty(fileno(stderr)) == 1), every_(every) {}
  void operator()(const prep::PrepProgress& p) {
    if (tty_) {
      if (p.seconds - last_ < 0.2 && p.bytes_done < p.bytes_total) return;
      last_ = p.seconds;
      std::fprintf(stderr, "\r\033[Kprep: %lld examples, %.0f%% of input, %.1f s", static_cast<long long>(p.examples),
                   p.bytes_total > 0 ? 100.0 * p.bytes_done / p.bytes_total : 100.0, p.seconds);
      std::fflush(stderr);
      shown_ = true;
    } else if (every_ > 0 && p.examples / every_ > printed_) {
      printed_ = p.examples / every_;
      std::fprintf(stderr, "prep: %lld examples (%.0f%% of input, %.1f s)\n", static_cast<long long>(p.examples),
                   p.bytes_total > 0 ? 100.0 * p.bytes_done / p.bytes_total : 100.0, p.seconds);
    }
  }
  void Done() {
    if (shown_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  bool tty_;
  int64_t every_;
  int64_t printed_ = 0;
  double last_ = -1;
  bool shown_ = false;
};

int PrepMain(const std::vector<std::string>& positional) {
  if (!positional.empty()) {
    return ReportFailure(absl::InvalidArgumentError(
        absl::StrCat("ftune prep: unexpected argument '", positional[0], "' (use --input=FILE)")));
  }
  prep::PrepOptions opt;
  opt.input = absl::GetFlag(FLAGS_input);
  opt.output = absl::GetFlag(FLAGS_output);
  opt.vocab = absl::GetFlag(FLAGS_vocab);
  opt.tokenizer_json = absl::GetFlag(FLAGS_tokenizer_json);
  if (!absl::GetFlag(FLAGS_model_dir).empty()) {
    const std::string dir(absl::StripSuffix(absl::GetFlag(FLAGS_model_dir), "/"));
    // HF's AutoTokenizer: the fast tokenizer's tokenizer.json when the directory has one.
    if (opt.vocab.empty() && opt.tokenizer_json.empty()) {
      if (access((dir + "/tokenizer.json").c_str(), F_OK) == 0) {
        opt.tokenizer_json = dir + "/tokenizer.json";
      } else {
        opt.vocab = dir + "/vocab.txt";
      }
    }
    opt.model_config = dir + "/config.json";
  }
  opt.text_pair_column = absl::GetFlag(FLAGS_text_pair_column);
  auto format = prep::ParseInputFormat(absl::GetFlag(FLAGS_input_format));
  if (!format.ok()) return ReportFailure(format.status());
  opt.input_format = *format;
  opt.text_column = absl::GetFlag(FLAGS_text_column);
  opt.label_column = absl::GetFlag(FLAGS_label_column);
  opt.labels = absl::GetFlag(FLAGS_labels);
  opt.max_length = absl::GetFlag(FLAGS_max_length);
  opt.threads = absl::GetFlag(FLAGS_threads);
  absl::Status valid = prep::ValidatePrepOptions(opt);
  if (!valid.ok()) return ReportFailure(valid);  // bad flags: exit 2

  Progress progress(absl::GetFlag(FLAGS_progress_every));
  opt.progress = [&progress](const prep::PrepProgress& p) { progress(p); };
  absl::StatusOr<prep::PrepSummary> summary = prep::RunPrep(opt);
  progress.Done();
  if (!summary.ok()) {
    // Bad input data is not a command-line mistake: exit 1 whatever the code.
    LogErrorLine(absl::StrCat("ftune prep: ", summary.status().message()));
    return kExitError;
  }
  LogInfoLine(std::string(absl::StripSuffix(summary->Format(), "\n")));
  return kExitOk;
}

}  // namespace

const Command& PrepCommand() {
  static const Command c{"prep",
                         "tokenize CSV/JSONL text into an HDF5 dataset",
                         kUsage,
                         {{"input", {"input", "input_format", "text_column", "text_pair_column", "label_column", "labels"}},
                          {"tokenizer", {"vocab", "tokenizer_json", "model_dir", "max_length"}},
                          {"output", {"output", "threads", "progress_every"}}},
                         __FILE__,
                         &PrepMain};
  return c;
}

}  // namespace ftune::cli
