#include "model/repr.h"

#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace ftune::model {
namespace {

std::string Bool(bool b) { return b ? "True" : "False"; }

// The one-line head of a module: "Linear(in_features=..)" for leaves, "Embeddings" for containers.
std::string Head(const torch::nn::Module& m) {
  if (auto* e = m.as<torch::nn::EmbeddingImpl>()) {
    std::string s = absl::StrFormat("Embedding(%d, %d", e->weight.size(0), e->weight.size(1));
    if (e->options.padding_idx()) absl::StrAppend(&s, ", padding_idx=", *e->options.padding_idx());
    return s + ")";
  }
  if (auto* ln = m.as<torch::nn::LayerNormImpl>()) {
    std::string shape;
    for (int64_t d : ln->options.normalized_shape()) absl::StrAppend(&shape, d, ",");
    return absl::StrFormat("LayerNorm((%s), eps=%g, elementwise_affine=%s)", shape, ln->options.eps(),
                           Bool(ln->options.elementwise_affine()));
  }
  if (auto* d = m.as<torch::nn::DropoutImpl>()) {
    return absl::StrFormat("Dropout(p=%g, inplace=%s)", d->options.p(), Bool(d->options.inplace()));
  }
  if (m.as<torch::nn::IdentityImpl>()) return "Identity()";
  if (m.as<torch::nn::ModuleListImpl>()) return "ModuleList";
  std::ostringstream os;
  m.pretty_print(os);
  return os.str();
}

void Render(const torch::nn::Module& m, const std::string& indent, std::ostringstream& out) {
  auto children = m.named_children();
  out << Head(m);
  if (children.is_empty()) return;
  out << "(\n";
  const std::string inner = indent + "  ";
  // Render each child once; inside a ModuleList, runs of identical renderings are collapsed the way
  // PyTorch's ModuleList.__repr__ does.
  const bool collapse = m.as<torch::nn::ModuleListImpl>() != nullptr;
  std::vector<std::pair<std::string, std::string>> rendered;
  for (const auto& child : children) {
    std::ostringstream os;
    Render(*child.value(), inner, os);
    rendered.emplace_back(child.key(), os.str());
  }
  // Parameters registered directly on a container (an adapter's ia3_l or lora_magnitude_vector),
  // printed the way PyTorch prints a ParameterDict entry.
  for (const auto& p : m.named_parameters(/*recurse=*/false)) {
    std::string size = absl::StrJoin(p.value().sizes(), "x");
    std::string device = p.value().is_cuda() ? "cuda." : "";
    rendered.emplace_back(p.key(), absl::StrFormat("Parameter containing: [torch.%s%sTensor of size %s]", device,
                                                   c10::toString(p.value().scalar_type()), size));
  }
  for (size_t i = 0; i < rendered.size();) {
    size_t j = i + 1;
    while (collapse && j < rendered.size() && rendered[j].second == rendered[i].second) ++j;
    if (j - i > 1) {
      out << inner << "(" << rendered[i].first << "-" << rendered[j - 1].first << "): " << (j - i) << " x "
          << rendered[i].second << "\n";
    } else {
      out << inner << "(" << rendered[i].first << "): " << rendered[i].second << "\n";
    }
    i = j;
  }
  out << indent << ")";
}

}  // namespace

std::string ModuleTreeString(const torch::nn::Module& module) {
  std::ostringstream out;
  Render(module, "", out);
  return out.str();
}

int64_t CountTrainableParameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) {
    if (p.requires_grad()) n += p.numel();
  }
  return n;
}

int64_t CountAllParameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace ftune::model
