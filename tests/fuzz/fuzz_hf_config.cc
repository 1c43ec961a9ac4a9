// libFuzzer target: io::ParseDistilBertConfig on arbitrary bytes (mostly JSON, from the seeds).
//
// Invariants:
//  - a rejected config gets InvalidArgument with a one-line message naming the file;
//  - an accepted config passes ValidateDistilBertConfig again and is internally consistent
//    (dim divisible by n_heads, id2label has num_labels entries, pad id inside the vocab, ...);
//  - id2label is read the way Hugging Face reads it: when the document has an id2label object,
//    its keys are exactly "0".."num_labels-1" (no two keys may name the same label id);
//  - round trip: DistilBertConfigToJson(c) parses back to the same values, and writing that
//    again gives the same text (the writer is a fixpoint).
#include <cstdint>
#include <set>
#include <string>

#include "fuzz_util.h"
#include "io/hf_config.h"
#include "nlohmann/json.hpp"

namespace ftune::fuzz {
namespace {

constexpr char kLabel[] = "fuzz/config.json";

void CheckEqual(const io::DistilBertConfig& a, const io::DistilBertConfig& b) {
  auto same = [](double x, double y) { return x == y || (x != x && y != y); };
  FUZZ_CHECK(a.vocab_size == b.vocab_size && a.max_position_embeddings == b.max_position_embeddings && a.dim == b.dim &&
                 a.n_layers == b.n_layers && a.n_heads == b.n_heads && a.hidden_dim == b.hidden_dim &&
                 a.pad_token_id == b.pad_token_id && a.num_labels == b.num_labels,
             "integer fields changed in the round trip");
  FUZZ_CHECK(same(a.dropout, b.dropout) && same(a.attention_dropout, b.attention_dropout) &&
                 same(a.seq_classif_dropout, b.seq_classif_dropout) && same(a.initializer_range, b.initializer_range),
             "float fields changed in the round trip");
  FUZZ_CHECK(a.activation == b.activation, "activation changed in the round trip");
  FUZZ_CHECK(a.id2label == b.id2label, "id2label changed in the round trip");
}

}  // namespace
}  // namespace ftune::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ftune;
  using namespace ftune::fuzz;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = io::ParseDistilBertConfig(text, kLabel);
  if (!c.ok()) {
    CheckError(c.status(), kLabel, {absl::StatusCode::kInvalidArgument});
    return 0;
  }
  FUZZ_CHECK(io::ValidateDistilBertConfig(*c, "again").ok(), "accepted config fails validation");
  FUZZ_CHECK(c->n_heads >= 1 && c->dim % c->n_heads == 0 && c->head_dim() * c->n_heads == c->dim,
             "dim/n_heads inconsistent");
  FUZZ_CHECK(c->num_labels >= 1 && static_cast<int64_t>(c->id2label.size()) == c->num_labels,
             "id2label size != num_labels");
  FUZZ_CHECK(c->pad_token_id >= 0 && c->pad_token_id < c->vocab_size, "pad_token_id outside the vocab");
  FUZZ_CHECK(c->activation == "gelu" || c->activation == "relu", "unsupported activation accepted");

  // id2label keys: Hugging Face does {int(k): v}, so "0" and "00" would be one label there.
  const nlohmann::json doc = nlohmann::json::parse(text.begin(), text.end());
  if (auto il = doc.find("id2label"); il != doc.end() && !il->is_null()) {
    std::set<std::string> want, got;
    for (int64_t i = 0; i < c->num_labels; ++i) want.insert(std::to_string(i));
    for (auto it = il->begin(); it != il->end(); ++it) got.insert(it.key());
    FUZZ_CHECK(want == got, "id2label keys are not exactly \"0\"..\"" + std::to_string(c->num_labels - 1) +
                                "\" but the config was accepted with " + std::to_string(c->num_labels) + " labels");
  }

  const std::string out = io::DistilBertConfigToJson(*c);
  auto back = io::ParseDistilBertConfig(out, "roundtrip/config.json");
  FUZZ_CHECK(back.ok(), "written config does not parse: " + back.status().ToString() + "\n" + out);
  CheckEqual(*c, *back);
  FUZZ_CHECK(io::DistilBertConfigToJson(*back) == out, "writing the config twice differs");
  return 0;
}
