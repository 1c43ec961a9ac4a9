#include "model/hf_checkpoint.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/files.h"

namespace ftune::model {
namespace {

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
        "%s holds a sharded checkpoint (model.safetensors.index.json); ftune reads one file: re-save it "
        "with save_pretrained(dir, max_shard_size=\"20GB\")",
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

// The weights of `file` into `model` (built from its config.json): `keys` maps the file onto the
// parameters; parameters under `head_modules` the file lacks make the whole head fresh (`init_head`),
// any other missing parameter is an error.
absl::Status LoadWeights(torch::nn::Module& model, const io::SafetensorsFile& file, const KeyMap& keys,
                         const std::vector<std::string>& head_modules, const std::function<void()>& init_head,
                         LoadReport* report) {
  FTUNE_RETURN_IF_ERROR(CopyIntoParameters(model, file, keys, report));
  std::set<std::string> loaded(report->loaded.begin(), report->loaded.end());
  std::vector<std::string> missing;
  bool head_missing = false;
  for (const auto& p : model.named_parameters()) {
    if (loaded.count(p.key())) continue;
    if (InModules(p.key(), head_modules)) {
      head_missing = true;
    } else {
      missing.push_back(p.key());
    }
  }
  if (!missing.empty()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s lacks %d encoder weights the model needs: %s", file.path(), missing.size(),
                        ListSome(missing)));
  }
  if (head_missing) {
    // HF semantics: the whole head is new when any of it is missing.
    init_head();
    std::vector<std::string> kept;
    for (const auto& n : report->loaded) {
      if (!InModules(n, head_modules)) kept.push_back(n);
    }
    report->loaded = kept;
    for (const auto& p : model.named_parameters()) {
      if (InModules(p.key(), head_modules)) report->fresh.push_back(p.key());
    }
  }
  return absl::OkStatus();
}

absl::Status WriteModelDir(torch::nn::Module& model, const std::string& config_json, const std::string& dir) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : model.named_parameters()) {
    if (absl::StrContains(p.key(), ".base_layer.")) {
      return absl::FailedPreconditionError(
          "the model still has adapter layers (LoRA, DoRA or IA3); merge them (--merge) or save a PEFT adapter "
          "instead");
    }
    tensors.emplace_back(p.key(), p.value().detach().to(torch::kFloat));
  }
  FTUNE_RETURN_IF_ERROR(MakeDirs(dir));
  FTUNE_RETURN_IF_ERROR(WriteTensors(dir + "/model.safetensors", tensors));
  return WriteFileAtomic(dir + "/config.json", config_json);
}

absl::StatusOr<const ModelFamily*> MaskedLmFamily(const ModelFamily* f, const std::string& source) {
  if (!f->build_masked_lm) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: ftune has no masked-LM pretraining for model_type \"%s\" (--objective=mlm)", source, f->model_type));
  }
  return f;
}

}  // namespace

std::string LoadReport::Summary() const {
  std::string s = absl::StrFormat("loaded %d tensors", loaded.size());
  if (!fresh.empty()) absl::StrAppend(&s, "; newly initialised (not in checkpoint): ", ListSome(fresh));
  if (!ignored.empty()) absl::StrAppend(&s, "; ignored ", ignored.size(), " ", ignored_kind, " tensors");
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

absl::Status CopyIntoParameters(torch::nn::Module& module, const io::SafetensorsFile& file, const KeyMap& rename,
                                LoadReport* report) {
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

absl::StatusOr<LoadedModel> BuildFromConfigFile(const std::string& path, const ModelOptions& options,
                                                int64_t num_labels) {
  FTUNE_ASSIGN_OR_RETURN(ConfigFile config, ReadConfigFile(path));
  LoadedModel m;
  FTUNE_ASSIGN_OR_RETURN(m.model, config.family->build_classifier(config.text, path, options, num_labels));
  m.source = path + " (random init)";
  return m;
}

absl::StatusOr<LoadedModel> BuildDefault(const ModelOptions& options, int64_t num_labels) {
  const ModelFamily& f = DefaultModelFamily();
  LoadedModel m;
  FTUNE_ASSIGN_OR_RETURN(m.model, f.build_classifier(f.default_config_json, "the default config", options, num_labels));
  m.source = f.default_name + " architecture (random init; pass --model_dir for pretrained weights)";
  return m;
}

absl::StatusOr<LoadedModel> LoadPretrained(const std::string& dir, const ModelOptions& options, int64_t num_labels) {
  FTUNE_ASSIGN_OR_RETURN(ConfigFile config, ReadConfigFile(dir + "/config.json"));
  const ModelFamily& f = *config.family;
  LoadedModel m;
  FTUNE_ASSIGN_OR_RETURN(m.model, f.build_classifier(config.text, config.path, options, num_labels));
  m.source = dir;
  const std::string weights = dir + "/model.safetensors";
  if (!PathExists(weights)) return RefuseNonSafetensors(dir);
  FTUNE_ASSIGN_OR_RETURN(auto file, io::SafetensorsFile::Open(weights));
  m.report.ignored_kind = "masked-LM head";
  FTUNE_RETURN_IF_ERROR(LoadWeights(*m.model, *file, f.classifier_keys(*file), f.head_modules,
                                    [&] { m.model->InitHead(); }, &m.report));
  return m;
}

absl::StatusOr<LoadedMaskedLm> BuildMaskedLmFromConfigFile(const std::string& path, const ModelOptions& options) {
  FTUNE_ASSIGN_OR_RETURN(ConfigFile config, ReadConfigFile(path));
  FTUNE_ASSIGN_OR_RETURN(const ModelFamily* f, MaskedLmFamily(config.family, path));
  LoadedMaskedLm m;
  FTUNE_ASSIGN_OR_RETURN(m.model, f->build_masked_lm(config.text, path, options));
  m.source = path + " (random init)";
  return m;
}

absl::StatusOr<LoadedMaskedLm> BuildDefaultMaskedLm(const ModelOptions& options) {
  const ModelFamily& f = DefaultModelFamily();
  LoadedMaskedLm m;
  FTUNE_ASSIGN_OR_RETURN(m.model, f.build_masked_lm(f.default_config_json, "the default config", options));
  m.source = f.default_name + " architecture (random init)";
  return m;
}

absl::StatusOr<LoadedMaskedLm> LoadMaskedLm(const std::string& dir, const ModelOptions& options) {
  FTUNE_ASSIGN_OR_RETURN(ConfigFile config, ReadConfigFile(dir + "/config.json"));
  FTUNE_ASSIGN_OR_RETURN(const ModelFamily* f, MaskedLmFamily(config.family, config.path));
  LoadedMaskedLm m;
  FTUNE_ASSIGN_OR_RETURN(m.model, f->build_masked_lm(config.text, config.path, options));
  m.source = dir;
  const std::string weights = dir + "/model.safetensors";
  if (!PathExists(weights)) return RefuseNonSafetensors(dir);
  FTUNE_ASSIGN_OR_RETURN(auto file, io::SafetensorsFile::Open(weights));
  m.report.ignored_kind = "classification head";
  FTUNE_RETURN_IF_ERROR(LoadWeights(*m.model, *file, f->masked_lm_keys(*file), f->masked_lm_head_modules,
                                    [&] { m.model->InitHead(); }, &m.report));
  return m;
}

absl::Status SavePretrained(SequenceClassifierImpl& model, const std::string& dir) {
  return WriteModelDir(model, model.ConfigJson(), dir);
}

absl::Status SavePretrained(MaskedLanguageModelImpl& model, const std::string& dir) {
  return WriteModelDir(model, model.ConfigJson(), dir);
}

}  // namespace ftune::model
