#include "io/hf_config.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/files.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace ftune::io {
namespace {

using json = nlohmann::json;

// Upper bounds that keep a hostile config from allocating terabytes: the largest real
// DistilBERT-family configs are far below them.
constexpr int64_t kMaxVocab = 10'000'000;
constexpr int64_t kMaxDim = 65'536;
constexpr int64_t kMaxLayers = 1'024;
constexpr int64_t kMaxPositions = 1 << 20;
constexpr int64_t kMaxLabels = 100'000;
constexpr double kMaxParams = 20e9;

// A value from the file for a one-line error message: `value` as JSON (strings quoted, invalid
// UTF-8 replaced), then escaped and cut like every echo of input.
std::string Printable(const json& value, size_t max_bytes = 80) {
  return utf8::Printable(value.dump(-1, ' ', false, json::error_handler_t::replace), max_bytes);
}

absl::Status FieldError(absl::string_view source, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: field \"%s\" %s", source, field, what));
}

absl::Status GetInt(const json& j, const char* key, int64_t* out, absl::string_view source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();  // keep the default
  if (!it->is_number_integer()) {
    return FieldError(source, key, absl::StrFormat("must be an integer, got %s", Printable(*it)));
  }
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    return FieldError(source, key, absl::StrFormat("= %s is too large", Printable(*it)));  // not a wrapped -1
  }
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status GetDouble(const json& j, const char* key, double* out, absl::string_view source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) {
    return FieldError(source, key, absl::StrFormat("must be a number, got %s", Printable(*it)));
  }
  *out = it->get<double>();
  return absl::OkStatus();
}

}  // namespace

DistilBertConfig DefaultDistilBertConfig() {
  DistilBertConfig c;
  c.id2label = {"LABEL_0", "LABEL_1"};
  return c;
}

absl::Status ValidateDistilBertConfig(const DistilBertConfig& c, absl::string_view source) {
  auto range = [&](const char* f, int64_t v, int64_t lo, int64_t hi) -> absl::Status {
    if (v < lo || v > hi) return FieldError(source, f, absl::StrFormat("= %d is outside [%d, %d]", v, lo, hi));
    return absl::OkStatus();
  };
  FTUNE_RETURN_IF_ERROR(range("vocab_size", c.vocab_size, 1, kMaxVocab));
  FTUNE_RETURN_IF_ERROR(range("max_position_embeddings", c.max_position_embeddings, 1, kMaxPositions));
  FTUNE_RETURN_IF_ERROR(range("dim", c.dim, 1, kMaxDim));
  FTUNE_RETURN_IF_ERROR(range("n_layers", c.n_layers, 1, kMaxLayers));
  FTUNE_RETURN_IF_ERROR(range("n_heads", c.n_heads, 1, c.dim));
  FTUNE_RETURN_IF_ERROR(range("hidden_dim", c.hidden_dim, 1, 16 * kMaxDim));
  FTUNE_RETURN_IF_ERROR(range("num_labels", c.num_labels, 1, kMaxLabels));
  FTUNE_RETURN_IF_ERROR(range("pad_token_id", c.pad_token_id, 0, c.vocab_size - 1));
  if (c.dim % c.n_heads != 0) {
    return FieldError(source, "dim", absl::StrFormat("= %d must be divisible by n_heads (%d)", c.dim, c.n_heads));
  }
  for (auto [f, v] : {std::pair<const char*, double>{"dropout", c.dropout},
                      {"attention_dropout", c.attention_dropout},
                      {"seq_classif_dropout", c.seq_classif_dropout}}) {
    if (!(v >= 0.0 && v < 1.0)) return FieldError(source, f, absl::StrFormat("= %g must be in [0, 1)", v));
  }
  if (!(c.initializer_range > 0.0 && c.initializer_range < 10.0)) {
    return FieldError(source, "initializer_range", "must be in (0, 10)");
  }
  if (c.activation != "gelu" && c.activation != "relu") {
    return FieldError(
        source, "activation",
        absl::StrFormat("%s is not supported (ftune implements \"gelu\" and \"relu\")", Printable(json(c.activation))));
  }
  double params = double(c.vocab_size + c.max_position_embeddings) * c.dim +
                  double(c.n_layers) * (4.0 * c.dim * c.dim + 2.0 * c.dim * c.hidden_dim);
  if (params > kMaxParams) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: the config describes %.3g parameters (limit %.3g)", source, params, kMaxParams));
  }
  if (static_cast<int64_t>(c.id2label.size()) != c.num_labels) {
    return FieldError(source, "id2label",
                      absl::StrFormat("has %d entries but num_labels is %d", c.id2label.size(), c.num_labels));
  }
  return absl::OkStatus();
}

absl::StatusOr<DistilBertConfig> ParseDistilBertConfig(absl::string_view text, absl::string_view source) {
  // nlohmann's parser stops at a NUL byte and ignores the rest; JSON never contains a raw NUL.
  if (size_t nul = text.find('\0'); nul != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: not valid JSON (NUL byte at offset %d)", source, nul));
  }
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: not valid JSON (%s)", source, Printable(json(std::string(e.what())), 400)));
  }
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrFormat("%s: not a JSON object", source));
  auto mt = j.find("model_type");
  if (mt != j.end() && (!mt->is_string() || mt->get<std::string>() != "distilbert")) {
    return FieldError(source, "model_type", absl::StrFormat("is %s; ftune supports \"distilbert\"", Printable(*mt)));
  }
  auto sin = j.find("sinusoidal_pos_embds");
  if (sin != j.end() && !sin->is_null()) {
    if (!sin->is_boolean()) return FieldError(source, "sinusoidal_pos_embds", "must be true or false");
    if (sin->get<bool>()) {
      return FieldError(source, "sinusoidal_pos_embds",
                        "is true; ftune implements learned position embeddings only (false)");
    }
  }
  DistilBertConfig c;
  FTUNE_RETURN_IF_ERROR(GetInt(j, "vocab_size", &c.vocab_size, source));
  FTUNE_RETURN_IF_ERROR(GetInt(j, "max_position_embeddings", &c.max_position_embeddings, source));
  FTUNE_RETURN_IF_ERROR(GetInt(j, "dim", &c.dim, source));
  FTUNE_RETURN_IF_ERROR(GetInt(j, "n_layers", &c.n_layers, source));
  FTUNE_RETURN_IF_ERROR(GetInt(j, "n_heads", &c.n_heads, source));
  FTUNE_RETURN_IF_ERROR(GetInt(j, "hidden_dim", &c.hidden_dim, source));
  FTUNE_RETURN_IF_ERROR(GetInt(j, "pad_token_id", &c.pad_token_id, source));
  FTUNE_RETURN_IF_ERROR(GetDouble(j, "dropout", &c.dropout, source));
  FTUNE_RETURN_IF_ERROR(GetDouble(j, "attention_dropout", &c.attention_dropout, source));
  FTUNE_RETURN_IF_ERROR(GetDouble(j, "seq_classif_dropout", &c.seq_classif_dropout, source));
  FTUNE_RETURN_IF_ERROR(GetDouble(j, "initializer_range", &c.initializer_range, source));
  if (auto a = j.find("activation"); a != j.end()) {
    if (!a->is_string()) return FieldError(source, "activation", "must be a string");
    c.activation = a->get<std::string>();
  }
  // Labels: HF derives num_labels from id2label; an explicit num_labels wins when id2label is absent.
  c.id2label.clear();
  if (auto il = j.find("id2label"); il != j.end() && !il->is_null()) {
    if (!il->is_object()) return FieldError(source, "id2label", "must be an object {\"0\": \"NEG\", ...}");
    std::vector<std::string> labels(il->size());
    for (auto it = il->begin(); it != il->end(); ++it) {
      // Keys must be canonical ("0", "1", ... as Hugging Face writes them): stoll would also take
      // " 1", "+1" or "01", and two keys naming one id would leave a label unset here while
      // Hugging Face (int(key)) sees fewer labels.
      const std::string& key = it.key();
      long long k = -1;
      const bool canonical = !key.empty() && key.size() <= 9 &&
                             key.find_first_not_of("0123456789") == std::string::npos && (key == "0" || key[0] != '0');
      if (canonical) k = std::stoll(key);
      if (!canonical || k >= static_cast<long long>(labels.size()) || !it->is_string()) {
        return FieldError(source, "id2label",
                          absl::StrFormat("needs keys \"0\"..\"%d\" with string values", labels.size() - 1));
      }
      labels[k] = it->get<std::string>();
    }
    c.id2label = labels;
    c.num_labels = static_cast<int64_t>(labels.size());
  } else {
    FTUNE_RETURN_IF_ERROR(GetInt(j, "num_labels", &c.num_labels, source));
    if (c.num_labels >= 1 && c.num_labels <= kMaxLabels) {
      for (int64_t i = 0; i < c.num_labels; ++i) c.id2label.push_back(absl::StrFormat("LABEL_%d", i));
    }
  }
  c.original_json = j.dump();
  FTUNE_RETURN_IF_ERROR(ValidateDistilBertConfig(c, source));
  return c;
}

absl::StatusOr<DistilBertConfig> LoadDistilBertConfig(const std::string& path) {
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseDistilBertConfig(text, path);
}

std::string DistilBertConfigToJson(const DistilBertConfig& c) {
  json j = json::object();
  if (!c.original_json.empty()) {
    json o = json::parse(c.original_json, nullptr, /*allow_exceptions=*/false);
    if (o.is_object()) j = o;
  }
  j.erase("num_labels");
  j["architectures"] = {"DistilBertForSequenceClassification"};
  j["model_type"] = "distilbert";
  j["activation"] = c.activation;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["dim"] = c.dim;
  j["n_layers"] = c.n_layers;
  j["n_heads"] = c.n_heads;
  j["hidden_dim"] = c.hidden_dim;
  j["dropout"] = c.dropout;
  j["attention_dropout"] = c.attention_dropout;
  j["seq_classif_dropout"] = c.seq_classif_dropout;
  j["initializer_range"] = c.initializer_range;
  j["pad_token_id"] = c.pad_token_id;
  j["sinusoidal_pos_embds"] = false;
  if (!j.contains("qa_dropout")) j["qa_dropout"] = 0.1;
  if (!j.contains("tie_weights_")) j["tie_weights_"] = true;
  if (!j.contains("dtype")) j["torch_dtype"] = "float32";  // transformers 4.x name; 5.x writes "dtype"
  json id2label = json::object(), label2id = json::object();
  for (size_t i = 0; i < c.id2label.size(); ++i) {
    id2label[std::to_string(i)] = c.id2label[i];
    label2id[c.id2label[i]] = i;
  }
  j["id2label"] = id2label;
  j["label2id"] = label2id;
  return j.dump(2) + "\n";
}

}  // namespace ftune::io
