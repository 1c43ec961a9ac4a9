// The fine-tuning methods and the one decision they make: which parameters train.
// SelectTrainable is called once; the optimizer, gradient buckets and checkpoints all read the
// resulting requires_grad flags (STYLE: the trainable set is decided once). Adapter methods wrap
// Linear layers (lora.h, ia3.h); the others only choose among the model's own parameters. Every
// method is written against the classifier's roles (sequence_classifier.h: embeddings, blocks,
// head) and its family's names (family.h: head modules, default adapter targets), so it applies to
// any family:
//
//   method   trains                                                          distilbert-base-uncased
//   full     every parameter                                                       66,955,010
//   head     pre_classifier + classifier                                              592,130
//   bitfit   every bias (LayerNorm biases too) + the head (Ben Zaken et al. 2022)     643,586
//   last_k   the top K transformer blocks + the head (K = 2)                       14,767,874
//   lora     LoRA A/B (r 12, alpha 24, the family's targets: q_lin + v_lin) + the head 813,314
//   dora     lora + DoRA's magnitude vectors                                          822,530
//   ia3      IA3 vectors (the family's targets: k_lin, v_lin outputs, lin2 input)     619,778
//            + the head
//
// The head always trains: it is new for a classification task (PEFT: modules_to_save).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/family.h"
#include "model/ia3.h"
#include "model/lora.h"
#include "model/sequence_classifier.h"

namespace ftune::model {

enum class Method { kFull, kHead, kBitFit, kLastK, kLora, kDora, kIa3 };

// "full" | "head" | "bitfit" | "last_k" | "lora" | "dora" | "ia3"
absl::StatusOr<Method> ParseMethod(absl::string_view name);
const char* MethodName(Method m);
// Abseil flag marshalling (--method=lora).
bool AbslParseFlag(absl::string_view text, Method* out, std::string* error);
std::string AbslUnparseFlag(Method m);
// The methods whose trained weights are a PEFT adapter (lora, dora, ia3).
bool IsAdapterMethod(Method m);

struct MethodOptions {
  MethodOptions() = default;
  // Implicit, so call sites that only configure LoRA pass their LoraOptions unchanged.
  MethodOptions(LoraOptions l) : lora(std::move(l)) {}  // NOLINT(google-explicit-constructor)

  LoraOptions lora;           // lora and dora (dora sets use_dora itself)
  Ia3Options ia3;             // ia3
  int64_t last_k_layers = 2;  // last_k: how many of the top blocks train, 1..n_layers
};

// `options` with the family's adapter targets where it names none (empty target lists): what
// SelectTrainable applies and SaveAdapter records. Call once, before both.
MethodOptions WithFamilyDefaults(MethodOptions options, const ModelFamily& family);

// Sets requires_grad for `method`. Adapter methods first wrap their target layers (ApplyLora /
// ApplyIa3) unless the model already carries layers of that kind (a loaded PEFT adapter); a
// model carrying another method's adapter layers is a FailedPrecondition error. Empty target
// lists take the family's defaults (WithFamilyDefaults).
absl::Status SelectTrainable(SequenceClassifierImpl& model, Method method, const MethodOptions& options);

// Whether `name` is a parameter of an adapter layer: lora_A, lora_B, lora_magnitude_vector, ia3_l.
bool IsAdapterParameterName(const std::string& name);

// Names of parameters with requires_grad, in model order.
std::vector<std::string> TrainableParameterNames(const torch::nn::Module& model);

// Folds every adapter layer (LoRA, DoRA, IA3) into a plain Linear; returns how many were merged.
int MergeAdapters(torch::nn::Module& root);

// How much of the encoder's bottom is frozen, so that it can run without autograd (or be computed
// once and cached): the k for which the embeddings and blocks [0, k) hold no parameter with
// requires_grad, k = num_blocks when no block trains (head), or nullopt when the embeddings
// themselves train (full, bitfit). For last_k it is n_layers - K; for the adapter methods 0 (the
// embedding output is frozen). Feed it to SequenceClassifierImpl::ForwardBelow / ClassifyFrom:
//   torch::Tensor h;
//   { torch::NoGradGuard g; h = model->ForwardBelow(in, k); }  // or a cache
//   torch::Tensor logits = model->ClassifyFrom(h, in.attention_mask, k);
// gives the logits and the gradients of model->forward(in) exactly (same kernels, same order).
std::optional<int64_t> FrozenBlockPrefix(SequenceClassifierImpl& model);

}  // namespace ftune::model
