#include "data-prep/prep.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <chrono>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/utf8.h"
#include "data-prep/csv_reader.h"
#include "data-prep/dataset_writer.h"
#include "data-prep/labels.h"
#include "data-prep/parallel.h"
#include "data-prep/tokenizer_json.h"
#include "data-prep/wordpiece_tokenizer.h"
#include "data/dataset_format.h"
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


// The tokenizer `ftune prep` uses: a tokenizer.json (JsonTokenizer), or a vocab.txt
// (WordPieceTokenizer; for sentence pairs the same BERT tokenizer as a JsonTokenizer, which has
// HF's pair truncation).
class PrepTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<PrepTokenizer>> Load(const PrepOptions& opt, bool pairs) {
    auto t = std::unique_ptr<PrepTokenizer>(new PrepTokenizer());
    if (!opt.tokenizer_json.empty()) {
      FTUNE_ASSIGN_OR_RETURN(t->json_, JsonTokenizer::FromFile(opt.tokenizer_json));
      t->vocab_size_ = t->json_->vocab_size();
      t->sha256_ = t->json_->sha256();
      t->settings_ = t->json_->SettingsJson();
      t->vocab_file_ = "tokenizer.json";
      t->types_ = pairs && t->json_->pair_type_ids();
      return t;
    }
    FTUNE_ASSIGN_OR_RETURN(WordPieceTokenizer wp, WordPieceTokenizer::FromVocabFile(opt.vocab));
    t->wp_ = std::make_unique<WordPieceTokenizer>(std::move(wp));
    t->vocab_size_ = t->wp_->vocab_size();
    t->sha256_ = t->wp_->vocab_sha256();
    t->settings_ = t->wp_->SettingsJson();
    if (pairs) {
      FTUNE_ASSIGN_OR_RETURN(t->json_, BertPairTokenizer(*t->wp_, opt.vocab));
      t->types_ = true;
      nlohmann::json j = nlohmann::json::parse(t->settings_);
      j["pairs"] = "[CLS] A [SEP] B [SEP], token_type_ids 0/1, longest_first (HF's BertWordPieceTokenizer)";
      t->settings_ = j.dump();
    }
    return t;
  }

  // HF's BertWordPieceTokenizer(vocab.txt) as a tokenizer.json, for pairs.
  static absl::StatusOr<std::unique_ptr<JsonTokenizer>> BertPairTokenizer(const WordPieceTokenizer& wp,
                                                                          const std::string& path) {
    nlohmann::json vocab = nlohmann::json::object();
    for (int32_t id = 0; id < wp.vocab_size(); ++id) vocab[wp.token(id)] = id;
    if (static_cast<int64_t>(vocab.size()) != wp.vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": a token appears on two lines; sentence pairs need a vocab.txt without repeated tokens"));
    }
    nlohmann::json added = nlohmann::json::array();
    for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
      if (wp.token_id(s) >= 0) {
        added.push_back({{"id", wp.token_id(s)}, {"content", s}, {"single_word", false}, {"lstrip", false},
                         {"rstrip", false}, {"normalized", false}, {"special", true}});
      }
    }
    nlohmann::json j = {
        {"version", "1.0"},
        {"added_tokens", added},
        {"normalizer",
         {{"type", "BertNormalizer"}, {"clean_text", true}, {"handle_chinese_chars", true}, {"strip_accents", nullptr},
          {"lowercase", true}}},
        {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
        {"post_processor",
         {{"type", "BertProcessing"}, {"sep", {"[SEP]", wp.sep_id()}}, {"cls", {"[CLS]", wp.cls_id()}}}},
        {"model",
         {{"type", "WordPiece"}, {"unk_token", "[UNK]"}, {"continuing_subword_prefix", "##"},
          {"max_input_chars_per_word", WordPieceTokenizer::kMaxInputCharsPerWord}, {"vocab", vocab}}},
    };
    return JsonTokenizer::FromJson(j.dump(), path);
  }

  void Encode(absl::string_view a, const absl::string_view* b, int32_t max_length, std::vector<int32_t>* ids,
              std::vector<int32_t>* types, int64_t* untruncated) const {
    if (b == nullptr && json_ == nullptr) {
      *ids = wp_->Encode(a, max_length, untruncated);
      return;
    }
    json_->Encode(a, b, max_length, ids, types, untruncated);
  }
  int32_t num_special_tokens(bool pair) const {
    return json_ != nullptr ? json_->num_special_tokens(pair) : 2;
  }
  int64_t vocab_size() const { return vocab_size_; }
  const std::string& sha256() const { return sha256_; }
  const std::string& settings() const { return settings_; }
  const std::string& vocab_file() const { return vocab_file_; }
  bool type_ids() const { return types_; }

 private:
  PrepTokenizer() = default;
  std::unique_ptr<WordPieceTokenizer> wp_;
  std::unique_ptr<JsonTokenizer> json_;
  int64_t vocab_size_ = 0;
  std::string sha256_, settings_, vocab_file_ = "vocab.txt";
  bool types_ = false;
};

// HF's rule for the label kind: problem_type "regression", or a single label (num_labels /
// id2label), in the model's config.json; else float labels in the data (run_glue's
// is_regression: a label column of floats). --labels always means classification.
struct LabelKind {
  bool regression = false;
  std::string why;
  int64_t max_position_embeddings = 0;  // the model's, when its config.json says (0: unknown)
};

absl::StatusOr<LabelKind> LabelKindFromConfig(const std::string& path) {
  LabelKind k;
  if (path.empty() || !PathExists(path)) return k;
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON (", utf8::Printable(e.what(), 200), ")"));
  }
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a JSON object"));
  if (auto it = j.find("max_position_embeddings"); it != j.end() && it->is_number_integer()) {
    k.max_position_embeddings = it->get<int64_t>();
  }
  if (auto it = j.find("problem_type"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return absl::InvalidArgumentError(absl::StrCat(path, ": problem_type: expected a string"));
    const std::string pt = it->get<std::string>();
    if (pt == "regression") {
      k.regression = true;
      k.why = absl::StrCat(path, " says problem_type \"regression\"");
    } else if (pt != "single_label_classification" && pt != "multi_label_classification") {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": problem_type: \"", utf8::Printable(pt),
          "\" is not regression, single_label_classification or multi_label_classification"));
    }
    return k;
  }
  int64_t num_labels = -1;
  if (auto it = j.find("num_labels"); it != j.end() && it->is_number_integer()) num_labels = it->get<int64_t>();
  if (auto it = j.find("id2label"); it != j.end() && it->is_object()) num_labels = static_cast<int64_t>(it->size());
  if (num_labels == 1) {
    k.regression = true;
    k.why = absl::StrCat(path, " has a single label (num_labels 1)");
  }
  return k;
}

bool LooksInteger(absl::string_view v) {
  v = absl::StripAsciiWhitespace(v);
  if (!v.empty() && (v[0] == '-' || v[0] == '+')) v.remove_prefix(1);
  if (v.empty()) return false;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool ParseFloat(absl::string_view v, float* out) {
  double d;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(v), &d) || !std::isfinite(d)) return false;
  *out = static_cast<float>(d);
  return std::isfinite(*out);
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
                   const std::vector<int64_t>& untruncated, int64_t bytes_done,
                   const std::vector<std::vector<int32_t>>* type_ids = nullptr,
                   const std::vector<float>* targets = nullptr) {
    if (targets != nullptr) {
      for (float t : *targets) {
        if (num_targets_ == 0) target_min_ = target_max_ = t;
        target_min_ = std::min(target_min_, static_cast<double>(t));
        target_max_ = std::max(target_max_, static_cast<double>(t));
        target_sum_ += t;
        ++num_targets_;
      }
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      max_length_ = std::max<int64_t>(max_length_, static_cast<int64_t>(ids[i].size()));
      max_untruncated_ = std::max(max_untruncated_, untruncated[i]);
      if (untruncated[i] > static_cast<int64_t>(ids[i].size())) ++truncated_;
    }
    for (int32_t label : labels) {
      if (label >= static_cast<int32_t>(label_counts_.size())) label_counts_.resize(static_cast<size_t>(label) + 1, 0);
      ++label_counts_[static_cast<size_t>(label)];
    }
    FTUNE_RETURN_IF_ERROR(writer_->Append(ids, labels, type_ids, targets));
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
  double target_sum_ = 0, target_min_ = 0, target_max_ = 0;
  int64_t num_targets_ = 0;
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

// The header's columns: text, label (-1 without labels), pair (-1 without pairs); errors name the
// file and line.
struct Columns {
  int text = -1, label = -1, pair = -1;
};

absl::StatusOr<Columns> FindColumns(const PrepOptions& opt, const std::vector<std::string>& header, int64_t line) {
  Columns c;
  const bool labeled = !opt.label_column.empty();
  for (size_t k = 0; k < header.size(); ++k) {
    if (header[k] == opt.text_column && c.text < 0) c.text = static_cast<int>(k);
    if (labeled && header[k] == opt.label_column && c.label < 0) c.label = static_cast<int>(k);
    if (!opt.text_pair_column.empty() && header[k] == opt.text_pair_column && c.pair < 0) c.pair = static_cast<int>(k);
  }
  auto no_column = [&](const std::string& name, absl::string_view flag) {
    return InputError(opt.input, line,
                      absl::StrFormat("no column named '%s' in the header (columns: %s); pass %s",
                                      utf8::Printable(name), HeaderForMessage(header), flag));
  };
  // A name the header holds twice would be read from one column and ignored in the other.
  for (const std::string* name : {&opt.text_column, &opt.label_column, &opt.text_pair_column}) {
    if (name->empty()) continue;
    std::vector<std::string> at;
    for (size_t k = 0; k < header.size(); ++k) {
      if (header[k] == *name) at.push_back(std::to_string(k + 1));
    }
    if (at.size() > 1) {
      return InputError(opt.input, line,
                        absl::StrFormat("the header names column '%s' %d times (columns %s); rename all but one",
                                        utf8::Printable(*name), at.size(), absl::StrJoin(at, ", ")));
    }
  }
  if (c.text < 0) return no_column(opt.text_column, "--text_column");
  if (labeled && c.label < 0) {
    return no_column(opt.label_column, "--label_column (or --label_column= for a dataset without labels)");
  }
  if (!opt.text_pair_column.empty() && c.pair < 0) return no_column(opt.text_pair_column, "--text_pair_column");
  return c;
}

// Whether the label column holds floats (some value a number not written as an integer, all
// values numbers): HF's is_regression for a CSV. Reads the file once more.
absl::StatusOr<bool> CsvLabelsAreFloats(const PrepOptions& opt, absl::string_view data) {
  FTUNE_ASSIGN_OR_RETURN(CsvReader reader, CsvReader::Create(opt.input, data));
  std::vector<std::string> fields;
  int64_t line = 1;
  FTUNE_ASSIGN_OR_RETURN(bool has_header, reader.Next(&fields, &line));
  if (!has_header) return false;
  auto cols = FindColumns(opt, fields, line);
  if (!cols.ok()) return false;  // reported by ReadCsv
  const size_t n = fields.size();
  bool any_float = false;
  while (true) {
    auto more = reader.Next(&fields, &line);
    if (!more.ok() || !*more) break;
    if (fields.size() != n) break;
    const std::string& v = fields[static_cast<size_t>(cols->label)];
    float f;
    if (!ParseFloat(v, &f)) return false;
    any_float |= !LooksInteger(v);
  }
  return any_float;
}

absl::Status ReadCsv(const PrepOptions& opt, absl::string_view data, const PrepTokenizer& tok, LabelMapper* labels,
                     bool regression, Sink* sink, int threads) {
  FTUNE_ASSIGN_OR_RETURN(CsvReader reader, CsvReader::Create(opt.input, data));
  std::vector<std::string> header;
  int64_t line = 1;
  FTUNE_ASSIGN_OR_RETURN(bool has_header, reader.Next(&header, &line));
  if (!has_header) return InputError(opt.input, 1, "empty file (expected a header row, then one row per example)");
  const bool labeled = !opt.label_column.empty();
  FTUNE_ASSIGN_OR_RETURN(Columns cols, FindColumns(opt, header, line));
  const int text_col = cols.text, label_col = cols.label, pair_col = cols.pair;
  const bool pairs = pair_col >= 0;
  const int64_t batch = std::max<int64_t>(1, opt.batch_size);
  std::vector<std::string> fields, texts, pair_texts;
  std::vector<int32_t> batch_labels;
  std::vector<float> targets;
  std::vector<std::vector<int32_t>> ids, types;
  std::vector<int64_t> untruncated;
  int64_t rows = 0;
  bool more = true;
  while (more) {
    texts.clear();
    pair_texts.clear();
    batch_labels.clear();
    targets.clear();
    while (static_cast<int64_t>(texts.size()) < batch) {
      FTUNE_ASSIGN_OR_RETURN(more, reader.Next(&fields, &line));
      if (!more) break;
      if (fields.size() != header.size()) {
        return InputError(opt.input, line,
                          absl::StrFormat("row has %d fields but the header has %d (a field with commas or "
                                          "newlines must be quoted)",
                                          fields.size(), header.size()));
      }
      if (labeled && regression) {
        float t;
        const std::string& v = fields[static_cast<size_t>(label_col)];
        if (!ParseFloat(v, &t)) {
          return InputError(opt.input, line,
                            absl::StrFormat("label '%s' is not a finite number (this is a regression dataset: %s)",
                                            utf8::Printable(v), "float labels"));
        }
        targets.push_back(t);
      } else if (labeled) {
        auto label = labels->Map(fields[static_cast<size_t>(label_col)]);
        if (!label.ok()) return InputError(opt.input, line, label.status().message());
        batch_labels.push_back(*label);
      }
      texts.push_back(std::move(fields[static_cast<size_t>(text_col)]));
      if (pairs) pair_texts.push_back(std::move(fields[static_cast<size_t>(pair_col)]));
    }
    if (texts.empty()) break;
    rows += static_cast<int64_t>(texts.size());
    ids.assign(texts.size(), {});
    types.assign(tok.type_ids() ? texts.size() : 0, {});
    untruncated.assign(texts.size(), 0);
    ParallelFor(static_cast<int64_t>(texts.size()), threads, [&](int64_t i) {
      const size_t k = static_cast<size_t>(i);
      const absl::string_view b = pairs ? absl::string_view(pair_texts[k]) : absl::string_view();
      tok.Encode(texts[k], pairs ? &b : nullptr, opt.max_length, &ids[k], tok.type_ids() ? &types[k] : nullptr,
                 &untruncated[k]);
    });
    FTUNE_RETURN_IF_ERROR(sink->Add(ids, batch_labels, untruncated, static_cast<int64_t>(reader.bytes_consumed()),
                                    tok.type_ids() ? &types : nullptr, regression ? &targets : nullptr));
  }
  if (rows == 0) {
    return InputError(opt.input, line + 1, "no examples: the file has a header row but no data rows");
  }
  return absl::OkStatus();
}

absl::Status ReadJsonl(const PrepOptions& opt, absl::string_view data, const PrepTokenizer& tok,
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
                                          utf8::Printable(x.dump()), vocab,
                                          opt.tokenizer_json.empty() ? opt.vocab : opt.tokenizer_json));
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
  if (o.vocab.empty() && o.tokenizer_json.empty()) {
    return absl::InvalidArgumentError(
        "no tokenizer: pass --vocab=vocab.txt, --tokenizer_json=tokenizer.json, or --model_dir with either");
  }
  if (!o.text_pair_column.empty()) {
    if (o.input_format != InputFormat::kCsv) return absl::InvalidArgumentError("--text_pair_column needs a CSV input");
    if (o.text_pair_column == o.text_column || o.text_pair_column == o.label_column) {
      return absl::InvalidArgumentError("--text_pair_column names the same column as --text_column or --label_column");
    }
  }
  if (o.max_length < 2 || o.max_length > data::format::kMaxExampleTokens) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--max_length must be in [2, %d] ([CLS] and [SEP] at least; the longest example a dataset holds at most), "
        "got %d",
        data::format::kMaxExampleTokens, o.max_length));
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
  const bool pairs = !opt.text_pair_column.empty();
  auto tok_or = PrepTokenizer::Load(opt, pairs);
  if (!tok_or.ok()) return Annotate(tok_or.status(), "loading the tokenizer");
  const PrepTokenizer& tok = **tok_or;
  if (opt.input_format == InputFormat::kCsv && opt.max_length < tok.num_special_tokens(pairs) + 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--max_length %d leaves no room for text: the tokenizer adds %d special tokens%s", opt.max_length,
        tok.num_special_tokens(pairs), pairs ? " to a pair" : ""));
  }
  auto data_or = ReadFileToString(opt.input);
  if (!data_or.ok()) return Annotate(data_or.status(), "reading --input");
  const std::string& data = *data_or;
  if (IsBlank(data) || data == "\xEF\xBB\xBF") {
    return InputError(opt.input, 1, "empty file");
  }
  LabelMapper labels(opt.labels);
  const int threads = ResolveThreads(opt.threads);

  const bool labeled = !opt.label_column.empty();
  bool regression = false;
  if (labeled && opt.input_format == InputFormat::kCsv) {
    FTUNE_ASSIGN_OR_RETURN(LabelKind kind, LabelKindFromConfig(opt.model_config));
    if (kind.max_position_embeddings > 0 && opt.max_length > kind.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--max_length %d is more than the model takes (%s: max_position_embeddings %d); pass --max_length=%d",
          opt.max_length, opt.model_config, kind.max_position_embeddings, kind.max_position_embeddings));
    }
    if (kind.regression && !opt.labels.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--labels names classes, but ", kind.why, ": a regression model has float labels"));
    }
    regression = kind.regression;
    if (!regression && opt.labels.empty()) {
      FTUNE_ASSIGN_OR_RETURN(regression, CsvLabelsAreFloats(opt, data));
    }
  }
  FTUNE_ASSIGN_OR_RETURN(std::unique_ptr<DatasetWriter> writer,
                         DatasetWriter::Create(opt.output, tok.vocab_size(), labeled, regression, tok.type_ids()));
  Sink sink(writer.get(), opt, static_cast<int64_t>(data.size()), static_cast<int>(labels.names().size()));
  if (opt.input_format == InputFormat::kCsv) {
    FTUNE_RETURN_IF_ERROR(ReadCsv(opt, data, tok, &labels, regression, &sink, threads));
  } else {
    FTUNE_RETURN_IF_ERROR(ReadJsonl(opt, data, tok, &labels, &sink));
  }

  data::DatasetInfo info;
  info.format_version = 1;
  info.num_examples = writer->num_examples();
  info.num_tokens = writer->num_tokens();
  info.vocab_size = tok.vocab_size();
  info.vocab_sha256 = tok.sha256();
  info.vocab_file = tok.vocab_file();
  info.max_length = opt.max_length;
  info.regression = regression;
  info.text_pair = opt.text_pair_column;
  if (labeled && !regression) info.label_names = labels.names();
  info.source_name = BaseName(opt.input);
  info.source_sha256 = Sha256Hex(data);
  info.tokenizer_json = opt.input_format == InputFormat::kCsv
                            ? tok.settings()
                            : R"({"type":"pretokenized","truncation":"keep first max_length-1 ids and the last id"})";
  info.num_truncated = sink.truncated_;
  if (labeled && !regression) info.label_mapping_json = labels.MappingJson();
  if (regression) info.label_mapping_json = "{}";
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
  s.regression = regression;
  if (sink.num_targets_ > 0) {
    s.target_mean = sink.target_sum_ / static_cast<double>(sink.num_targets_);
    s.target_min = sink.target_min_;
    s.target_max = sink.target_max_;
  }
  s.pairs = pairs;
  s.token_type_ids = tok.type_ids();
  s.vocab_file = tok.vocab_file();
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
  if (regression) {
    absl::StrAppendFormat(&out, "  labels     regression (float): mean %.4g, min %.4g, max %.4g\n", target_mean, target_min,
                          target_max);
  } else {
    absl::StrAppendFormat(
        &out, "  labels     %s\n",
        parts.empty() ? "none (--label_column is empty: a dataset for pretraining)" : absl::StrJoin(parts, ", "));
  }
  if (pairs) {
    absl::StrAppendFormat(&out, "  pairs      yes%s\n", token_type_ids ? " (token_type_ids stored)" : " (no token_type_ids)");
  }
  absl::StrAppendFormat(&out, "  vocab      %ssha256 %s\n", vocab_file == "vocab.txt" ? "" : vocab_file + " ",
                        vocab_sha256);
  absl::StrAppendFormat(&out, "  time       %.2f s, %d thread%s (%.0f examples/s)\n", seconds, threads,
                        threads == 1 ? "" : "s", seconds > 0 ? num_examples / seconds : 0.0);
  return out;
}

}  // namespace ftune::prep
