#include "data-prep/prep.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/utf8.h"
#include "data-prep/csv_reader.h"
#include "data-prep/dataset_writer.h"
#include "data-prep/labels.h"
#include "data-prep/parallel.h"
#include "data-prep/wordpiece_tokenizer.h"
#include "nlohmann/json.hpp"

namespace ftune::prep {
namespace {

constexpr char kCreatedBy[] = "ftune prep 0.1.0";

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

absl::Status InputError(const std::string& file, int64_t line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrFormat("%s:%d: %s", file, line, what));
}

// Running statistics + the HDF5 writer; both input formats feed batches into it.
class Sink {
 public:
  Sink(DatasetWriter* writer, const PrepOptions& opt, int64_t bytes_total, int num_labels)
      : writer_(writer),
        opt_(opt),
        bytes_total_(bytes_total),
        label_counts_(static_cast<size_t>(num_labels), 0),
        start_(std::chrono::steady_clock::now()) {}

  absl::Status Add(const std::vector<std::vector<int32_t>>& ids, const std::vector<int32_t>& labels,
                   const std::vector<int64_t>& untruncated, int64_t bytes_done) {
    for (size_t i = 0; i < ids.size(); ++i) {
      max_length_ = std::max<int64_t>(max_length_, static_cast<int64_t>(ids[i].size()));
      max_untruncated_ = std::max(max_untruncated_, untruncated[i]);
      if (untruncated[i] > static_cast<int64_t>(ids[i].size())) ++truncated_;
    }
    for (int32_t label : labels) {
      if (label >= static_cast<int32_t>(label_counts_.size())) label_counts_.resize(static_cast<size_t>(label) + 1, 0);
      ++label_counts_[static_cast<size_t>(label)];
    }
    FTUNE_RETURN_IF_ERROR(writer_->Append(ids, labels));
    if (opt_.progress) {
      PrepProgress p;
      p.examples = writer_->num_examples();
      p.bytes_done = bytes_done;
      p.bytes_total = bytes_total_;
      p.seconds = Seconds();
      opt_.progress(p);
    }
    return absl::OkStatus();
  }

  double Seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

  DatasetWriter* writer_;
  const PrepOptions& opt_;
  int64_t bytes_total_;
  std::vector<int64_t> label_counts_;
  int64_t truncated_ = 0, max_length_ = 0, max_untruncated_ = 0;
  std::chrono::steady_clock::time_point start_;
};

bool IsBlank(absl::string_view s) { return absl::StripAsciiWhitespace(s).empty(); }

// The header's column names for a one-line message: each escaped and cut, at most 10 of them.
std::string HeaderForMessage(const std::vector<std::string>& header) {
  constexpr size_t kMaxColumns = 10;
  std::vector<std::string> cols;
  for (size_t c = 0; c < header.size() && c < kMaxColumns; ++c) cols.push_back(utf8::Printable(header[c], 40));
  std::string out = absl::StrJoin(cols, ", ");
  if (header.size() > kMaxColumns) absl::StrAppend(&out, ", ... (", header.size(), " columns)");
  return out;
}

absl::Status ReadCsv(const PrepOptions& opt, absl::string_view data, const WordPieceTokenizer& tok, LabelMapper* labels,
                     Sink* sink, int threads) {
  FTUNE_ASSIGN_OR_RETURN(CsvReader reader, CsvReader::Create(opt.input, data));
  std::vector<std::string> header;
  int64_t line = 1;
  FTUNE_ASSIGN_OR_RETURN(bool has_header, reader.Next(&header, &line));
  if (!has_header) return InputError(opt.input, 1, "empty file (expected a header row, then one row per example)");
  const bool labeled = !opt.label_column.empty();
  int text_col = -1, label_col = -1;
  for (size_t c = 0; c < header.size(); ++c) {
    if (header[c] == opt.text_column && text_col < 0) text_col = static_cast<int>(c);
    if (labeled && header[c] == opt.label_column && label_col < 0) label_col = static_cast<int>(c);
  }
  auto no_column = [&](const std::string& name, absl::string_view flag) {
    return InputError(opt.input, line,
                      absl::StrFormat("no column named '%s' in the header (columns: %s); pass %s",
                                      utf8::Printable(name), HeaderForMessage(header), flag));
  };
  if (text_col < 0) return no_column(opt.text_column, "--text_column");
  if (labeled && label_col < 0) {
    return no_column(opt.label_column, "--label_column (or --label_column= for a dataset without labels)");
  }
  const int64_t batch = std::max<int64_t>(1, opt.batch_size);
  std::vector<std::string> fields, texts;
  std::vector<int32_t> batch_labels;
  std::vector<std::vector<int32_t>> ids;
  std::vector<int64_t> untruncated;
  int64_t rows = 0;
  bool more = true;
  while (more) {
    texts.clear();
    batch_labels.clear();
    while (static_cast<int64_t>(texts.size()) < batch) {
      FTUNE_ASSIGN_OR_RETURN(more, reader.Next(&fields, &line));
      if (!more) break;
      if (fields.size() != header.size()) {
        return InputError(opt.input, line,
                          absl::StrFormat("row has %d fields but the header has %d (a field with commas or "
                                          "newlines must be quoted)",
                                          fields.size(), header.size()));
      }
      if (labeled) {
        auto label = labels->Map(fields[static_cast<size_t>(label_col)]);
        if (!label.ok()) return InputError(opt.input, line, label.status().message());
        batch_labels.push_back(*label);
      }
      texts.push_back(std::move(fields[static_cast<size_t>(text_col)]));
    }
    if (texts.empty()) break;
    rows += static_cast<int64_t>(texts.size());
    ids.assign(texts.size(), {});
    untruncated.assign(texts.size(), 0);
    ParallelFor(static_cast<int64_t>(texts.size()), threads, [&](int64_t i) {
      ids[static_cast<size_t>(i)] =
          tok.Encode(texts[static_cast<size_t>(i)], opt.max_length, &untruncated[static_cast<size_t>(i)]);
    });
    FTUNE_RETURN_IF_ERROR(sink->Add(ids, batch_labels, untruncated, static_cast<int64_t>(reader.bytes_consumed())));
  }
  if (rows == 0) {
    return InputError(opt.input, line + 1, "no examples: the file has a header row but no data rows");
  }
  return absl::OkStatus();
}

absl::Status ReadJsonl(const PrepOptions& opt, absl::string_view data, const WordPieceTokenizer& tok,
                       LabelMapper* labels, Sink* sink) {
  size_t bad = utf8::FindInvalid(data);
  if (bad != absl::string_view::npos) {
    int64_t line, col;
    LineAndColumn(data, bad, &line, &col);
    return InputError(
        opt.input, line,
        absl::StrFormat("invalid UTF-8 (byte 0x%02x at column %d)", static_cast<uint8_t>(data[bad]), col));
  }
  const int64_t batch = std::max<int64_t>(1, opt.batch_size);
  const int64_t vocab = tok.vocab_size();
  std::vector<std::vector<int32_t>> ids;
  std::vector<int32_t> batch_labels;
  std::vector<int64_t> untruncated;
  int64_t line = 0, rows = 0;
  size_t pos = 0;
  auto flush = [&]() -> absl::Status {
    if (ids.empty()) return absl::OkStatus();
    FTUNE_RETURN_IF_ERROR(sink->Add(ids, batch_labels, untruncated, static_cast<int64_t>(pos)));
    ids.clear();
    batch_labels.clear();
    untruncated.clear();
    return absl::OkStatus();
  };
  while (pos < data.size()) {
    size_t nl = data.find('\n', pos);
    if (nl == absl::string_view::npos) nl = data.size();
    absl::string_view text = data.substr(pos, nl - pos);
    pos = nl + 1;
    ++line;
    if (IsBlank(text)) continue;
    // nlohmann's parser stops at a NUL byte and would ignore the rest of the line.
    if (size_t nul = text.find('\0'); nul != absl::string_view::npos) {
      return InputError(opt.input, line, absl::StrFormat("invalid JSON: NUL byte at column %d", nul + 1));
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::exception& e) {
      return InputError(opt.input, line, absl::StrCat("invalid JSON: ", utf8::Printable(e.what(), 300)));
    }
    if (!j.is_object() || !j.contains("ids") || !j["ids"].is_array()) {
      return InputError(opt.input, line, "expected an object {\"ids\": [...], \"label\": n}");
    }
    const auto& arr = j["ids"];
    if (arr.empty()) return InputError(opt.input, line, "\"ids\" is empty");
    std::vector<int32_t> v;
    v.reserve(arr.size());
    for (size_t k = 0; k < arr.size(); ++k) {
      const auto& x = arr[k];
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= vocab) {
        return InputError(opt.input, line,
                          absl::StrFormat("ids[%d] = %s is not a token id in [0, %d) (vocab %s)", k,
                                          utf8::Printable(x.dump()), vocab, opt.vocab));
      }
      v.push_back(static_cast<int32_t>(x.get<int64_t>()));
    }
    if (!opt.label_column.empty()) {  // else a dataset without labels: "label" is not read
      if (!j.contains("label")) {
        return InputError(opt.input, line, "missing \"label\" (pass --label_column= for a dataset without labels)");
      }
      const auto& lj = j["label"];
      absl::StatusOr<int32_t> label = absl::InvalidArgumentError("\"label\" must be an integer or a string");
      if (lj.is_number_integer()) {
        label = labels->MapInt(lj.get<int64_t>());
      } else if (lj.is_string()) {
        label = labels->Map(lj.get<std::string>());
      }
      if (!label.ok()) return InputError(opt.input, line, label.status().message());
      batch_labels.push_back(*label);
    }
    const int64_t full = static_cast<int64_t>(v.size());
    if (opt.max_length > 0 && full > opt.max_length) {
      int32_t last = v.back();
      v.resize(static_cast<size_t>(opt.max_length - 1));
      v.push_back(last);  // keep the final id ([SEP] in BERT-style input)
    }
    ids.push_back(std::move(v));
    untruncated.push_back(full);
    ++rows;
    if (static_cast<int64_t>(ids.size()) >= batch) FTUNE_RETURN_IF_ERROR(flush());
  }
  FTUNE_RETURN_IF_ERROR(flush());
  if (rows == 0) return InputError(opt.input, 1, "empty file (expected one JSON object per line)");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<InputFormat> ParseInputFormat(absl::string_view name) {
  std::string low = absl::AsciiStrToLower(name);
  if (low == "csv") return InputFormat::kCsv;
  if (low == "jsonl") return InputFormat::kJsonl;
  return absl::InvalidArgumentError(absl::StrCat("--input_format must be csv or jsonl, not '", name, "'"));
}

absl::Status ValidatePrepOptions(const PrepOptions& o) {
  if (o.input.empty()) return absl::InvalidArgumentError("--input is required (a CSV or JSONL file)");
  if (o.output.empty()) return absl::InvalidArgumentError("--output is required (the .h5 file to write)");
  if (o.vocab.empty()) {
    return absl::InvalidArgumentError("no vocabulary: pass --vocab=vocab.txt or --model_dir with a vocab.txt");
  }
  if (o.max_length < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_length must be at least 2 ([CLS] and [SEP]), got ", o.max_length));
  }
  if (o.threads < 0) return absl::InvalidArgumentError("--threads must be >= 0");
  if (o.input_format == InputFormat::kCsv) {
    if (o.text_column.empty()) return absl::InvalidArgumentError("--text_column must not be empty");
    if (o.text_column == o.label_column) {
      return absl::InvalidArgumentError("--text_column and --label_column name the same column");
    }
  }
  if (o.label_column.empty() && !o.labels.empty()) {
    return absl::InvalidArgumentError("--labels names labels, but --label_column is empty (no labels are read)");
  }
  std::set<std::string> seen;
  for (const std::string& l : o.labels) {
    if (IsBlank(l)) return absl::InvalidArgumentError("--labels has an empty name");
    if (!seen.insert(absl::AsciiStrToLower(l)).second) {
      return absl::InvalidArgumentError(absl::StrCat("--labels names '", l, "' twice"));
    }
  }
  if (PathExists(o.output) && o.output == o.input) {
    return absl::InvalidArgumentError("--output is the same file as --input");
  }
  return absl::OkStatus();
}

absl::StatusOr<PrepSummary> RunPrep(const PrepOptions& opt) {
  FTUNE_RETURN_IF_ERROR(ValidatePrepOptions(opt));
  const auto start = std::chrono::steady_clock::now();
  auto tok_or = WordPieceTokenizer::FromVocabFile(opt.vocab);
  if (!tok_or.ok()) return Annotate(tok_or.status(), "loading the vocabulary");
  const WordPieceTokenizer& tok = *tok_or;
  auto data_or = ReadFileToString(opt.input);
  if (!data_or.ok()) return Annotate(data_or.status(), "reading --input");
  const std::string& data = *data_or;
  if (IsBlank(data) || data == "\xEF\xBB\xBF") {
    return InputError(opt.input, 1, "empty file");
  }
  LabelMapper labels(opt.labels);
  const int threads = ResolveThreads(opt.threads);

  const bool labeled = !opt.label_column.empty();
  FTUNE_ASSIGN_OR_RETURN(std::unique_ptr<DatasetWriter> writer,
                         DatasetWriter::Create(opt.output, tok.vocab_size(), labeled));
  Sink sink(writer.get(), opt, static_cast<int64_t>(data.size()), static_cast<int>(labels.names().size()));
  if (opt.input_format == InputFormat::kCsv) {
    FTUNE_RETURN_IF_ERROR(ReadCsv(opt, data, tok, &labels, &sink, threads));
  } else {
    FTUNE_RETURN_IF_ERROR(ReadJsonl(opt, data, tok, &labels, &sink));
  }

  data::DatasetInfo info;
  info.format_version = 1;
  info.num_examples = writer->num_examples();
  info.num_tokens = writer->num_tokens();
  info.vocab_size = tok.vocab_size();
  info.vocab_sha256 = tok.vocab_sha256();
  info.max_length = opt.max_length;
  if (labeled) info.label_names = labels.names();
  info.source_name = BaseName(opt.input);
  info.source_sha256 = Sha256Hex(data);
  info.tokenizer_json = opt.input_format == InputFormat::kCsv
                            ? tok.SettingsJson()
                            : R"({"type":"pretokenized","truncation":"keep first max_length-1 ids and the last id"})";
  info.num_truncated = sink.truncated_;
  if (labeled) info.label_mapping_json = labels.MappingJson();
  info.created_by = kCreatedBy;
  const std::string token_type = writer->token_type();
  FTUNE_RETURN_IF_ERROR(writer->Finish(info));

  PrepSummary s;
  s.input = opt.input;
  s.output = opt.output;
  s.num_examples = info.num_examples;
  s.num_tokens = info.num_tokens;
  s.num_truncated = info.num_truncated;
  s.mean_length = s.num_examples > 0 ? static_cast<double>(s.num_tokens) / s.num_examples : 0;
  s.max_length = sink.max_length_;
  s.max_untruncated = sink.max_untruncated_;
  s.label_names = info.label_names;
  s.label_counts = sink.label_counts_;
  s.label_counts.resize(s.label_names.size(), 0);
  s.token_type = token_type;
  s.vocab_sha256 = info.vocab_sha256;
  s.source_sha256 = info.source_sha256;
  std::FILE* f = std::fopen(opt.output.c_str(), "rb");
  if (f != nullptr) {
    std::fseek(f, 0, SEEK_END);
    s.output_bytes = std::ftell(f);
    std::fclose(f);
  }
  s.threads = opt.input_format == InputFormat::kCsv ? threads : 1;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return s;
}

std::string PrepSummary::Format() const {
  std::string out = absl::StrFormat("prep: %s -> %s (%.1f MiB)\n", input, output, output_bytes / 1048576.0);
  absl::StrAppendFormat(&out, "  examples   %d\n", num_examples);
  absl::StrAppendFormat(&out, "  tokens     %d (stored as %s)\n", num_tokens, token_type);
  absl::StrAppendFormat(&out, "  length     mean %.1f, max %d (longest input %d tokens)\n", mean_length, max_length,
                        max_untruncated);
  absl::StrAppendFormat(&out, "  truncated  %d (%.1f%%)\n", num_truncated,
                        num_examples > 0 ? 100.0 * num_truncated / num_examples : 0.0);
  std::vector<std::string> parts;
  for (size_t k = 0; k < label_names.size(); ++k) {
    int64_t c = k < label_counts.size() ? label_counts[k] : 0;
    parts.push_back(
        absl::StrFormat("%s %d (%.1f%%)", label_names[k], c, num_examples > 0 ? 100.0 * c / num_examples : 0.0));
  }
  absl::StrAppendFormat(
      &out, "  labels     %s\n",
      parts.empty() ? "none (--label_column is empty: a dataset for pretraining)" : absl::StrJoin(parts, ", "));
  absl::StrAppendFormat(&out, "  vocab      sha256 %s\n", vocab_sha256);
  absl::StrAppendFormat(&out, "  time       %.2f s, %d thread%s (%.0f examples/s)\n", seconds, threads,
                        threads == 1 ? "" : "s", seconds > 0 ? num_examples / seconds : 0.0);
  return out;
}

}  // namespace ftune::prep
