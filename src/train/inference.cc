#include "train/inference.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "absl/strings/str_format.h"
#include "data/sampler.h"

namespace ftune::train {
namespace {

torch::Tensor ToDevice(const std::vector<int64_t>& host, std::vector<int64_t> shape, const torch::Device& device) {
  torch::Tensor t = torch::from_blob(const_cast<int64_t*>(host.data()), shape, torch::kLong);
  return device.is_cpu() ? t.clone() : t.to(device);
}

// The batching every inference pass shares: eval mode and no autograd, `idx` longest first (less
// padding; per-example results do not depend on the order), the stop check before each batch.
// `read_tokens` false yields indices and labels only (the feature-cache path).
absl::Status ForEachBatch(model::DistilBertForSequenceClassification& model, const data::TokenDataset& ds,
                          std::vector<int64_t> idx, const InferenceOptions& o, bool read_tokens,
                          const std::function<absl::Status(const data::HostBatch&)>& fn) {
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return ds.length(a) > ds.length(b); });
  absl::Status st;
  for (size_t off = 0; off < idx.size() && st.ok(); off += o.batch_size) {
    if (o.should_stop) {
      auto stop = o.should_stop();
      if (!stop.ok() || *stop) {
        st = stop.ok() ? absl::CancelledError("interrupted by a stop signal") : stop.status();
        break;
      }
    }
    std::vector<int64_t> chunk(idx.begin() + off, idx.begin() + std::min(idx.size(), off + o.batch_size));
    data::HostBatch b;
    if (read_tokens) {
      auto examples = ds.Read(chunk);
      if (!examples.ok()) {
        st = examples.status();
        break;
      }
      b = data::Collate(*examples, o.pad_token_id, o.pad_to_multiple_of, model->config().max_position_embeddings);
    } else {
      b.rows = static_cast<int64_t>(chunk.size());
      b.indices = chunk;
      for (int64_t i : chunk) b.labels.push_back(ds.label(i));
    }
    st = fn(b);
  }
  if (was_training) model->train();
  return st;
}

}  // namespace

torch::Tensor LossSum(const torch::Tensor& logits, const torch::Tensor& labels) {
  const bool low = logits.scalar_type() == torch::kBFloat16 || logits.scalar_type() == torch::kHalf;
  return torch::nn::functional::cross_entropy(low ? logits.to(torch::kFloat) : logits, labels,
                                              torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
}

absl::Status ForEachLogits(model::DistilBertForSequenceClassification& model, const data::TokenDataset& ds,
                           std::vector<int64_t> idx, const InferenceOptions& o,
                           const std::function<absl::Status(const data::HostBatch&, const torch::Tensor&)>& sink) {
  const bool cached = o.features.defined();
  return ForEachBatch(model, ds, std::move(idx), o, /*read_tokens=*/!cached, [&](const data::HostBatch& b) {
    torch::Tensor logits =
        cached ? model->ClassifyFeatures(o.features.index_select(0, ToDevice(b.indices, {b.rows}, o.device)))
               : model(ToDevice(b.input_ids, {b.rows, b.seq_len}, o.device),
                       ToDevice(b.attention_mask, {b.rows, b.seq_len}, o.device));
    return sink(b, logits);
  });
}

absl::StatusOr<EvalStats> EvaluateDataset(model::DistilBertForSequenceClassification& model,
                                          const data::TokenDataset& ds, dist::Communicator* comm,
                                          const InferenceOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  auto [begin, end] = data::BalancedRange(ds.size(), comm->rank(), comm->world_size());
  std::vector<int64_t> idx(end - begin);
  std::iota(idx.begin(), idx.end(), begin);
  double sums[3] = {0, 0, 0};  // correct, total, loss_sum
  FTUNE_RETURN_IF_ERROR(ForEachLogits(model, ds, idx, o, [&](const data::HostBatch& b, const torch::Tensor& logits) {
    torch::Tensor labels = ToDevice(b.labels, {b.rows}, o.device);
    sums[0] += logits.argmax(-1).eq(labels).sum().item<double>();
    sums[1] += static_cast<double>(b.rows);
    sums[2] += LossSum(logits, labels).item<double>();
    return absl::OkStatus();
  }));
  FTUNE_RETURN_IF_ERROR(comm->AllReduce(sums, 3, dist::DType::kFloat64, dist::ReduceOp::kSum));
  EvalStats e;
  e.correct = static_cast<int64_t>(sums[0]);
  e.total = static_cast<int64_t>(sums[1]);
  e.loss_sum = sums[2];
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (e.total != ds.size()) {
    return absl::InternalError(absl::StrFormat("evaluation saw %d examples but %s has %d", e.total, ds.path(),
                                               ds.size()));
  }
  return e;
}

absl::StatusOr<torch::Tensor> EncodeFeatures(model::DistilBertForSequenceClassification& model,
                                             const data::TokenDataset& ds, dist::Communicator* comm,
                                             const InferenceOptions& o) {
  const int64_t dim = model->config().dim;
  auto options = torch::TensorOptions().dtype(torch::kFloat).device(o.device);
  for (const auto& p : model->parameters()) {
    options = options.dtype(p.scalar_type());
    break;
  }
  torch::Tensor features = torch::zeros({ds.size(), dim}, options);
  const int world = comm->world_size();
  auto [begin, end] = data::BalancedRange(ds.size(), comm->rank(), world);
  std::vector<int64_t> idx(end - begin);
  std::iota(idx.begin(), idx.end(), begin);
  FTUNE_RETURN_IF_ERROR(ForEachBatch(model, ds, idx, o, /*read_tokens=*/true, [&](const data::HostBatch& b) {
    torch::Tensor cls = model->distilbert(ToDevice(b.input_ids, {b.rows, b.seq_len}, o.device),
                                          ToDevice(b.attention_mask, {b.rows, b.seq_len}, o.device))
                            .select(1, 0);
    features.index_copy_(0, ToDevice(b.indices, {b.rows}, o.device), cls.to(features.scalar_type()));
    return absl::OkStatus();
  }));
  if (world > 1) {
    // Every rank contributes its share; a broadcast from each owner assembles the whole table.
    if (features.scalar_type() != torch::kFloat) {
      return absl::UnimplementedError("the distributed feature cache needs fp32 features");
    }
    for (int r = 0; r < world; ++r) {
      auto [b, e] = data::BalancedRange(ds.size(), r, world);
      if (e == b) continue;
      torch::Tensor part = features.narrow(0, b, e - b);
      torch::Tensor host = part.is_cpu() || std::string(comm->name()) == "nccl" ? part : part.to(torch::kCPU);
      FTUNE_RETURN_IF_ERROR(comm->Broadcast(host.data_ptr(), static_cast<size_t>(host.numel()),
                                            dist::DType::kFloat32, r));
      if (!host.is_same(part)) part.copy_(host);
    }
  }
  return features;
}

}  // namespace ftune::train
