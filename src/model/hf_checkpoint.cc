#include "model/hf_checkpoint.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/files.h"

namespace ftune::model {
namespace {

bool IsHeadParam(const std::string& name) {
  return absl::StartsWith(name, "pre_classifier.") || absl::StartsWith(name, "classifier.");
}

// DistilBertForMaskedLM's head; present in the hub checkpoint, meaningless for classification.
bool IsMlmHeadKey(const std::string& key) {
  return absl::StartsWith(key, "vocab_transform.") || absl::StartsWith(key, "vocab_layer_norm.") ||
         absl::StartsWith(key, "vocab_projector.");
}

std::string ShapeString(torch::IntArrayRef s) {
  return absl::StrCat("[", absl::StrJoin(s.begin(), s.end(), ", "), "]");
}

std::string ListSome(const std::vector<std::string>& v, size_t n = 8) {
  std::vector<std::string> head(v.begin(), v.begin() + std::min(n, v.size()));
  std::string s = absl::StrJoin(head, ", ");
  if (v.size() > n) absl::StrAppend(&s, ", ... (", v.size() - n, " more)");
  return s;
}

torch::ScalarType TorchDType(io::DType d) {
  switch (d) {
    case io::DType::kF64: return torch::kDouble;
    case io::DType::kF32: return torch::kFloat;
    case io::DType::kF16: return torch::kHalf;
    case io::DType::kBF16: return torch::kBFloat16;
    case io::DType::kI64: return torch::kLong;
    case io::DType::kI32: return torch::kInt;
    case io::DType::kI16: return torch::kShort;
    case io::DType::kI8: return torch::kChar;
    case io::DType::kU8: return torch::kByte;
    case io::DType::kBool: return torch::kBool;
  }
  return torch::kFloat;
}

absl::Status RefuseNonSafetensors(const std::string& dir) {
  if (PathExists(dir + "/model.safetensors.index.json")) {
    return absl::UnimplementedError(absl::StrFormat(
        "%s holds a sharded checkpoint (model.safetensors.index.json); DistilBERT fits one file: re-save it "
        "with save_pretrained(dir, max_shard_size=\"2GB\")",
        dir));
  }
  for (const char* pickle : {"pytorch_model.bin", "model.bin", "pytorch_model.pt"}) {
    if (PathExists(dir + "/" + pickle)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s has %s, a PyTorch pickle, and no model.safetensors. ftune never unpickles (it can run code). "
          "Convert once with Python: from transformers import AutoModel; "
          "AutoModel.from_pretrained(\"%s\").save_pretrained(\"%s\", safe_serialization=True)",
          dir, pickle, dir, dir));
    }
  }
  return absl::NotFoundError(
      absl::StrFormat("%s/model.safetensors not found (need config.json + "
                      "model.safetensors, as written by save_pretrained)",
                      dir));
}

}  // namespace

std::string LoadReport::Summary() const {
  std::string s = absl::StrFormat("loaded %d tensors", loaded.size());
  if (!fresh.empty()) absl::StrAppend(&s, "; newly initialised (not in checkpoint): ", ListSome(fresh));
  if (!ignored.empty()) absl::StrAppend(&s, "; ignored ", ignored.size(), " masked-LM head tensors");
  if (!unexpected.empty()) absl::StrAppend(&s, "; unexpected (unused): ", ListSome(unexpected));
  return s;
}

torch::Tensor TensorFromView(const io::TensorView& v) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");
  std::vector<int64_t> shape(v.shape.begin(), v.shape.end());
  // from_blob does not copy; clone() is the one copy out of the mapped file.
  return torch::from_blob(const_cast<uint8_t*>(v.data), shape, torch::TensorOptions().dtype(TorchDType(v.dtype)))
      .clone();
}

absl::StatusOr<io::DType> ToSafetensorsDType(torch::ScalarType t) {
  switch (t) {
    case torch::kDouble: return io::DType::kF64;
    case torch::kFloat: return io::DType::kF32;
    case torch::kHalf: return io::DType::kF16;
    case torch::kBFloat16: return io::DType::kBF16;
    case torch::kLong: return io::DType::kI64;
    case torch::kInt: return io::DType::kI32;
    case torch::kShort: return io::DType::kI16;
    case torch::kChar: return io::DType::kI8;
    case torch::kByte: return io::DType::kU8;
    case torch::kBool: return io::DType::kBool;
    default: return absl::InvalidArgumentError(absl::StrCat("no safetensors dtype for ", c10::toString(t)));
  }
}

absl::Status WriteTensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                          std::map<std::string, std::string> metadata) {
  std::vector<torch::Tensor> keep;  // owns the contiguous CPU copies while writing
  std::vector<io::TensorToWrite> out;
  for (const auto& [name, t] : tensors) {
    keep.push_back(t.detach().to(torch::kCPU).contiguous());
    FTUNE_ASSIGN_OR_RETURN(io::DType d, ToSafetensorsDType(t.scalar_type()));
    out.push_back({name, d, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()), keep.back().data_ptr()});
  }
  return io::WriteSafetensors(path, out, std::move(metadata));
}

absl::Status CopyIntoParameters(torch::nn::Module& module, const io::SafetensorsFile& file,
                                const std::function<std::string(const std::string&)>& rename, LoadReport* report) {
  auto params = module.named_parameters(/*recurse=*/true);
  torch::NoGradGuard no_grad;
  for (const auto& [key, view] : file.tensors()) {
    std::string name = rename(key);
    if (name.empty()) {
      report->ignored.push_back(key);
      continue;
    }
    torch::Tensor* p = params.find(name);
    if (p == nullptr) {
      report->unexpected.push_back(key);
      continue;
    }
    std::vector<int64_t> shape(view.shape.begin(), view.shape.end());
    if (p->sizes() != torch::IntArrayRef(shape)) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s: tensor \"%s\" has shape %s but the model's %s is %s (does config.json match the weights?)", file.path(),
          key, ShapeString(shape), name, ShapeString(p->sizes())));
    }
    if (view.dtype == io::DType::kBool || view.dtype == io::DType::kU8 || view.dtype == io::DType::kI8 ||
        view.dtype == io::DType::kI16 || view.dtype == io::DType::kI32 || view.dtype == io::DType::kI64) {
      return absl::FailedPreconditionError(absl::StrFormat("%s: tensor \"%s\" is %s; weights must be floating point",
                                                           file.path(), key, io::DTypeName(view.dtype)));
    }
    // One copy: the mapped bytes are viewed in place and converted straight into the parameter.
    p->copy_(
        torch::from_blob(const_cast<uint8_t*>(view.data), shape, torch::TensorOptions().dtype(TorchDType(view.dtype))));
    report->loaded.push_back(name);
  }
  return absl::OkStatus();
}

LoadedModel BuildFromConfig(const io::DistilBertConfig& config, const ModelOptions& options) {
  LoadedModel m;
  m.config = config;
  m.model = DistilBertForSequenceClassification(config, options);
  m.source = "random init";
  return m;
}

absl::StatusOr<LoadedModel> BuildFromConfigFile(const std::string& path, const ModelOptions& options,
                                                int64_t num_labels) {
  FTUNE_ASSIGN_OR_RETURN(io::DistilBertConfig config, io::LoadDistilBertConfig(path));
  if (num_labels > 0 && num_labels != config.num_labels) {
    config.num_labels = num_labels;
    config.id2label.clear();
    for (int64_t i = 0; i < num_labels; ++i) config.id2label.push_back(absl::StrCat("LABEL_", i));
  }
  LoadedModel m = BuildFromConfig(config, options);
  m.source = path + " (random init)";
  return m;
}

absl::StatusOr<LoadedModel> LoadPretrained(const std::string& dir, const ModelOptions& options, int64_t num_labels) {
  FTUNE_ASSIGN_OR_RETURN(LoadedModel m, BuildFromConfigFile(dir + "/config.json", options, num_labels));
  m.source = dir;
  const std::string weights = dir + "/model.safetensors";
  if (!PathExists(weights)) return RefuseNonSafetensors(dir);
  FTUNE_ASSIGN_OR_RETURN(auto file, io::SafetensorsFile::Open(weights));

  // A bare DistilBertModel checkpoint has no "distilbert." prefix.
  bool bare = false;
  for (const auto& kv : file->tensors()) {
    if (absl::StartsWith(kv.first, "embeddings.") || absl::StartsWith(kv.first, "transformer.")) bare = true;
  }
  auto rename = [bare](const std::string& key) -> std::string {
    if (IsMlmHeadKey(key)) return "";
    std::string name = bare && !IsHeadParam(key) ? "distilbert." + key : key;
    // Pre-2019 checkpoints call LayerNorm parameters gamma/beta.
    if (absl::EndsWith(name, ".gamma")) name = name.substr(0, name.size() - 6) + ".weight";
    if (absl::EndsWith(name, ".beta")) name = name.substr(0, name.size() - 5) + ".bias";
    return name;
  };
  FTUNE_RETURN_IF_ERROR(CopyIntoParameters(*m.model, *file, rename, &m.report));

  std::set<std::string> loaded(m.report.loaded.begin(), m.report.loaded.end());
  std::vector<std::string> missing;
  bool head_missing = false;
  for (const auto& p : m.model->named_parameters()) {
    if (loaded.count(p.key())) continue;
    if (IsHeadParam(p.key())) {
      head_missing = true;
    } else {
      missing.push_back(p.key());
    }
  }
  if (!missing.empty()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s lacks %d encoder weights the model needs: %s", weights, missing.size(), ListSome(missing)));
  }
  if (head_missing) {
    // HF semantics: the whole classification head is new when any of it is missing.
    m.model->InitHead();
    for (const auto& p : m.model->named_parameters()) {
      if (IsHeadParam(p.key())) m.report.fresh.push_back(p.key());
    }
    std::vector<std::string> kept;
    for (const auto& n : m.report.loaded) {
      if (!IsHeadParam(n)) kept.push_back(n);
    }
    m.report.loaded = kept;
  }
  return m;
}

absl::Status SavePretrained(DistilBertForSequenceClassification& model, const std::string& dir) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : model->named_parameters()) {
    if (absl::StrContains(p.key(), ".base_layer.")) {
      return absl::FailedPreconditionError(
          "the model still has adapter layers (LoRA, DoRA or IA3); merge them (--merge) or save a PEFT adapter "
          "instead");
    }
    tensors.emplace_back(p.key(), p.value().detach().to(torch::kFloat));
  }
  FTUNE_RETURN_IF_ERROR(MakeDirs(dir));
  FTUNE_RETURN_IF_ERROR(WriteTensors(dir + "/model.safetensors", tensors));
  return WriteFileAtomic(dir + "/config.json", io::DistilBertConfigToJson(model->config()));
}

}  // namespace ftune::model
