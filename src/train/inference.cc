#include "train/inference.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "data/sampler.h"
#include "train/collectives.h"

namespace ftune::train {
namespace {}  // namespace

int64_t ShardRounds(int64_t n, int world, int64_t batch_size) {
  const int64_t largest = (n + world - 1) / std::max(1, world);
  return (largest + batch_size - 1) / std::max<int64_t>(1, batch_size);
}

absl::Status ForEachBatch(torch::nn::Module& model, int64_t max_positions, const data::TokenDataset& ds,
                          std::vector<int64_t> idx, const InferenceOptions& o, bool read_tokens,
                          const std::function<absl::Status(data::HostBatch&)>& fn, int64_t rounds) {
  if (o.batch_size <= 0) return absl::InvalidArgumentError(absl::StrFormat("batch size %d must be > 0", o.batch_size));
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return ds.length(a) > ds.length(b); });
  const int64_t own = (static_cast<int64_t>(idx.size()) + o.batch_size - 1) / o.batch_size;
  absl::Status st;
  for (int64_t round = 0; round < std::max(own, rounds) && st.ok(); ++round) {
    if (o.should_stop) {
      auto stop = o.should_stop();
      if (!stop.ok() || *stop) {
        st = stop.ok() ? absl::CancelledError("interrupted by a stop signal") : stop.status();
        break;
      }
    }
    if (round >= own) continue;  // this rank's share is done; its peers' is not
    const size_t off = static_cast<size_t>(round * o.batch_size);
    std::vector<int64_t> chunk(idx.begin() + off, idx.begin() + std::min(idx.size(), off + o.batch_size));
    data::HostBatch b;
    if (read_tokens) {
      auto examples = ds.Read(chunk);
      if (!examples.ok()) {
        st = examples.status();
        break;
      }
      b = data::Collate(*examples, o.pad_token_id, o.pad_to_multiple_of, max_positions);
      if (o.masking) data::MaskTokens(*o.masking, data::kEvalMaskEpoch, &b);
    } else {
      b = data::IndicesOnly(ds, chunk, o.pad_to_multiple_of, max_positions);
    }
    st = fn(b);
  }
  if (was_training) model.train();
  return st;
}

namespace {
absl::Status ForEachBatch(model::SequenceClassifierImpl& model, const data::TokenDataset& ds,
                          std::vector<int64_t> idx, const InferenceOptions& o, bool read_tokens,
                          const std::function<absl::Status(data::HostBatch&)>& fn, int64_t rounds = 0) {
  return ForEachBatch(model, model.config().max_position_embeddings, ds, std::move(idx), o, read_tokens, fn, rounds);
}
}  // namespace

int64_t EvalStats::support(int64_t k) const {
  int64_t n = 0;
  for (int64_t p = 0; p < num_labels; ++p) n += confusion[k * num_labels + p];
  return n;
}

double EvalStats::precision(int64_t k) const {
  int64_t predicted = 0;
  for (int64_t t = 0; t < num_labels; ++t) predicted += confusion[t * num_labels + k];
  return predicted ? static_cast<double>(confusion[k * num_labels + k]) / predicted : 0.0;
}

double EvalStats::recall(int64_t k) const {
  const int64_t n = support(k);
  return n ? static_cast<double>(confusion[k * num_labels + k]) / n : 0.0;
}

double EvalStats::f1(int64_t k) const {
  const double p = precision(k), r = recall(k);
  return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
}

double EvalStats::macro_f1() const {
  double sum = 0;
  for (int64_t k = 0; k < num_labels; ++k) sum += f1(k);
  return num_labels ? sum / num_labels : 0.0;
}

double RegressionStats::Pearson(int64_t n) const {
  if (n <= 0) return 0.0;
  const double cov = sum_xy - sum_x * sum_y / n, vx = sum_xx - sum_x * sum_x / n, vy = sum_yy - sum_y * sum_y / n;
  return vx > 0 && vy > 0 ? cov / std::sqrt(vx * vy) : 0.0;
}

absl::StatusOr<double> EvalStats::Metric(const std::string& name) const {
  const std::string n = absl::StartsWith(name, "eval_") ? name.substr(5) : name;
  if (n == "loss") return loss();
  if (regression) {
    if (n == "mse") return mse();
    if (n == "pearson") return pearson();
    if (n == "spearmanr") return spearmanr();
    return absl::NotFoundError(absl::StrFormat(
        "no eval metric \"%s\" for regression: use loss, mse, pearson or spearmanr (with or without the eval_ prefix)",
        name));
  }
  if (n == "accuracy") return accuracy();
  if (n == "macro_f1" && num_labels > 0) return macro_f1();
  return absl::NotFoundError(
      absl::StrFormat("no eval metric \"%s\": use accuracy, loss%s (with or without the eval_ prefix)", name,
                      num_labels > 0 ? " or macro_f1" : ""));
}

nlohmann::json EvalStats::ToJson() const {
  nlohmann::json j = {{"eval_loss", loss()}, {"eval_total", total}, {"eval_loss_sum", loss_sum}, {"eval_seconds", seconds}};
  if (regression) {
    const RegressionStats& r = *regression;
    j.update({{"eval_mse", mse()},
              {"eval_pearson", pearson()},
              {"eval_spearmanr", spearmanr()},
              {"eval_moments", {r.sum_x, r.sum_y, r.sum_xx, r.sum_yy, r.sum_xy}}});
    return j;
  }
  j["eval_accuracy"] = accuracy();
  j["eval_correct"] = correct;
  if (num_labels == 0) return j;
  nlohmann::json matrix = nlohmann::json::array(), p = nlohmann::json::array(), r = nlohmann::json::array(),
                 f = nlohmann::json::array(), n = nlohmann::json::array();
  for (int64_t k = 0; k < num_labels; ++k) {
    matrix.push_back(
        std::vector<int64_t>(confusion.begin() + k * num_labels, confusion.begin() + (k + 1) * num_labels));
    p.push_back(precision(k));
    r.push_back(recall(k));
    f.push_back(f1(k));
    n.push_back(support(k));
  }
  j["eval_macro_f1"] = macro_f1();
  j["eval_per_class"] = {{"precision", p}, {"recall", r}, {"f1", f}, {"support", n}};
  j["eval_confusion_matrix"] = matrix;
  return j;
}

EvalStats EvalStats::FromJson(const nlohmann::json& j) {
  EvalStats s;
  s.correct = j.value("eval_correct", int64_t{0});  // regression has none
  s.total = j.at("eval_total");
  s.loss_sum = j.at("eval_loss_sum");
  s.seconds = j.value("eval_seconds", 0.0);
  if (j.contains("eval_confusion_matrix")) {
    const auto& m = j["eval_confusion_matrix"];
    s.num_labels = static_cast<int64_t>(m.size());
    for (const auto& row : m) {
      for (const auto& v : row) s.confusion.push_back(v.get<int64_t>());
    }
  }
  if (j.contains("eval_moments")) {
    const auto& m = j["eval_moments"];
    s.regression = RegressionStats{m.at(0), m.at(1), m.at(2), m.at(3), m.at(4), j.value("eval_spearmanr", 0.0)};
  }
  return s;
}

torch::Tensor CrossEntropySum(const torch::Tensor& logits, const torch::Tensor& labels, double label_smoothing,
                              const torch::Tensor& weights) {
  const bool low = logits.scalar_type() == torch::kBFloat16 || logits.scalar_type() == torch::kHalf;
  const torch::Tensor input = low ? logits.to(torch::kFloat) : logits;
  auto options = torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum);
  if (label_smoothing > 0) options.label_smoothing(label_smoothing);
  if (weights.defined()) options.weight(weights.to(input.scalar_type()));
  return torch::nn::functional::cross_entropy(input, labels, options);
}

torch::Tensor SquaredErrorSum(const torch::Tensor& logits, const torch::Tensor& targets) {
  const torch::Tensor x = logits.to(torch::kFloat).reshape({-1});
  return (x - targets.to(torch::kFloat)).pow(2).sum();
}

double SpearmanRho(const std::vector<double>& x, const std::vector<double>& y) {
  auto ranks = [](const std::vector<double>& v) {
    std::vector<size_t> order(v.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
    std::vector<double> r(v.size());
    for (size_t i = 0; i < order.size();) {
      size_t j = i;
      while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
      const double average = (static_cast<double>(i) + static_cast<double>(j)) / 2 + 1;  // ties share their mean rank
      for (size_t k = i; k <= j; ++k) r[order[k]] = average;
      i = j + 1;
    }
    return r;
  };
  const std::vector<double> rx = ranks(x), ry = ranks(y);
  RegressionStats m;
  for (size_t i = 0; i < rx.size(); ++i) {
    m.sum_x += rx[i];
    m.sum_y += ry[i];
    m.sum_xx += rx[i] * rx[i];
    m.sum_yy += ry[i] * ry[i];
    m.sum_xy += rx[i] * ry[i];
  }
  return m.Pearson(static_cast<int64_t>(rx.size()));
}

absl::Status ForEachLogits(
    model::SequenceClassifierImpl& model, const data::TokenDataset& ds, std::vector<int64_t> idx,
    const InferenceOptions& o,
    const std::function<absl::Status(const data::HostBatch&, const DeviceBatch&, const torch::Tensor&)>& sink,
    int64_t rounds) {
  const bool cached = o.cache != nullptr && o.cache->defined();
  return ForEachBatch(
      model, ds, std::move(idx), o, /*read_tokens=*/!cached,
      [&](data::HostBatch& b) {
        const DeviceBatch d = ToDevice(b, o.device);
        torch::Tensor logits = cached ? o.cache->Logits(model, d.indices, d.seq_len) : model.forward(d.inputs());
        return sink(b, d, logits);
      },
      rounds);
}

namespace {

// Regression: the squared errors and moments summed on the device, every prediction gathered (for
// Spearman's ranks): each rank fills its rows of a zeroed [2, N] table, the sum over ranks is all of it.
absl::StatusOr<EvalStats> EvaluateRegression(model::SequenceClassifierImpl& model, const data::TokenDataset& ds,
                                             dist::Communicator* comm, const InferenceOptions& o,
                                             std::vector<int64_t> idx) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n = ds.size();
  torch::Tensor acc = torch::zeros({6}, torch::TensorOptions().dtype(torch::kDouble).device(o.device));
  std::vector<double> table(2 * n + 1, 0.0);  // predictions, labels, then the examples seen
  FTUNE_RETURN_IF_ERROR(ForEachLogits(
      model, ds, std::move(idx), o,
      [&](const data::HostBatch& b, const DeviceBatch& d, const torch::Tensor& logits) {
        const torch::Tensor x = logits.to(torch::kDouble).reshape({-1}), y = d.targets.to(torch::kDouble);
        acc.narrow(0, 0, 1).add_(SquaredErrorSum(logits, d.targets).to(torch::kDouble));
        acc.narrow(0, 1, 5).add_(torch::stack({x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()}));
        const torch::Tensor hx = x.to(torch::kCPU).contiguous();
        const double* px = hx.data_ptr<double>();
        for (int64_t r = 0; r < b.rows; ++r) {
          table[b.indices[r]] = px[r];
          table[n + b.indices[r]] = b.targets[r];
        }
        table[2 * n] += static_cast<double>(b.rows);
        return absl::OkStatus();
      },
      ShardRounds(n, comm->world_size(), o.batch_size)));
  torch::Tensor host = acc.to(torch::kCPU).contiguous();
  std::vector<double> sums(host.data_ptr<double>(), host.data_ptr<double>() + 6);
  FTUNE_RETURN_IF_ERROR(comm->AllReduce(sums.data(), sums.size(), dist::DType::kFloat64, dist::ReduceOp::kSum));
  FTUNE_RETURN_IF_ERROR(comm->AllReduce(table.data(), table.size(), dist::DType::kFloat64, dist::ReduceOp::kSum));
  EvalStats e;
  e.total = static_cast<int64_t>(table[2 * n]);
  e.loss_sum = sums[0];
  e.regression = RegressionStats{sums[1], sums[2], sums[3], sums[4], sums[5], 0.0};
  e.regression->spearman = SpearmanRho(std::vector<double>(table.begin(), table.begin() + n),
                                       std::vector<double>(table.begin() + n, table.begin() + 2 * n));
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (e.total != n) {
    return absl::InternalError(absl::StrFormat("evaluation saw %d examples but %s has %d", e.total, ds.path(), n));
  }
  return e;
}

}  // namespace

absl::StatusOr<EvalStats> EvaluateDataset(model::SequenceClassifierImpl& model, const data::TokenDataset& ds,
                                          dist::Communicator* comm, const InferenceOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  auto [begin, end] = data::BalancedRange(ds.size(), comm->rank(), comm->world_size());
  std::vector<int64_t> idx(end - begin);
  std::iota(idx.begin(), idx.end(), begin);
  if (ds.is_regression()) return EvaluateRegression(model, ds, comm, o, std::move(idx));
  // Summed on the device; read once at the end (no host round trip per batch): the loss, then the
  // confusion matrix [true][pred].
  const int64_t k = model.config().num_labels;
  torch::Tensor acc = torch::zeros({1 + k * k}, torch::TensorOptions().dtype(torch::kDouble).device(o.device));
  int64_t seen = 0;
  FTUNE_RETURN_IF_ERROR(ForEachLogits(
      model, ds, idx, o, [&](const data::HostBatch& b, const DeviceBatch& d, const torch::Tensor& logits) {
        acc.narrow(0, 0, 1).add_(CrossEntropySum(logits, d.labels, o.label_smoothing).to(torch::kDouble));
        acc.narrow(0, 1, k * k).add_(torch::bincount(d.labels * k + logits.argmax(-1), {}, k * k).to(torch::kDouble));
        seen += b.rows;
        return absl::OkStatus();
      },
      ShardRounds(ds.size(), comm->world_size(), o.batch_size)));
  std::vector<double> sums(2 + k * k);  // loss, the confusion matrix, examples
  torch::Tensor host = acc.to(torch::kCPU).contiguous();
  std::copy(host.data_ptr<double>(), host.data_ptr<double>() + 1 + k * k, sums.begin());
  sums.back() = static_cast<double>(seen);
  FTUNE_RETURN_IF_ERROR(comm->AllReduce(sums.data(), sums.size(), dist::DType::kFloat64, dist::ReduceOp::kSum));
  EvalStats e;
  e.loss_sum = sums[0];
  e.num_labels = k;
  for (int64_t i = 0; i < k * k; ++i) e.confusion.push_back(static_cast<int64_t>(sums[1 + i]));
  for (int64_t i = 0; i < k; ++i) e.correct += e.confusion[i * k + i];
  e.total = static_cast<int64_t>(sums.back());
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (e.total != ds.size()) {
    return absl::InternalError(
        absl::StrFormat("evaluation saw %d examples but %s has %d", e.total, ds.path(), ds.size()));
  }
  return e;
}

torch::Tensor FrozenCache::Logits(model::SequenceClassifierImpl& model, const torch::Tensor& indices,
                                  int64_t seq_len) const {
  if (k == model.num_blocks()) return model.ClassifyFeatures(values.index_select(0, indices));
  const int64_t rows = indices.size(0), dim = values.size(1);
  const torch::Tensor steps = torch::arange(seq_len, indices.options());
  const torch::Tensor mask = steps.unsqueeze(0) < lengths.index_select(0, indices).unsqueeze(1);  // [rows, T]
  const torch::Tensor src = (offsets.index_select(0, indices).unsqueeze(1) + steps.unsqueeze(0)).masked_fill(~mask, 0);
  const torch::Tensor hidden =
      values.index_select(0, src.flatten()).view({rows, seq_len, dim}) * mask.unsqueeze(-1).to(values.scalar_type());
  return model.ClassifyFrom(hidden, mask.to(torch::kLong), k);
}

absl::StatusOr<FrozenCache> EncodeFrozen(model::SequenceClassifierImpl& model, const data::TokenDataset& ds,
                                         int64_t k, dist::Communicator* comm, const InferenceOptions& o) {
  const int64_t n = ds.size();
  const bool features_only = k == model.num_blocks();
  auto options = torch::TensorOptions().dtype(torch::kFloat).device(o.device);
  for (const auto& p : model.parameters()) {
    options = options.dtype(p.scalar_type());
    break;
  }
  FrozenCache cache;
  cache.k = k;
  std::vector<int64_t> offsets(n + 1, 0), lengths(n);
  for (int64_t i = 0; i < n; ++i) {
    lengths[i] = ds.length(i);
    offsets[i + 1] = offsets[i] + (features_only ? 1 : lengths[i]);
  }
  const int64_t dim = model.config().hidden_size;  // the features' width too (sequence_classifier.h)
  cache.values = torch::zeros({offsets[n], dim}, options);
  const torch::Tensor host_offsets = torch::tensor(offsets, torch::kLong);
  if (!features_only) {
    cache.offsets = host_offsets.narrow(0, 0, n).to(o.device);
    cache.lengths = torch::tensor(lengths, torch::kLong).to(o.device);
  }
  const int world = comm->world_size();
  auto [begin, end] = data::BalancedRange(n, comm->rank(), world);
  std::vector<int64_t> idx(end - begin);
  std::iota(idx.begin(), idx.end(), begin);
  FTUNE_RETURN_IF_ERROR(ForEachBatch(model, ds, idx, o, /*read_tokens=*/true, [&](data::HostBatch& b) {
    const DeviceBatch d = ToDevice(b, o.device);
    if (features_only) {
      const torch::Tensor features = model.EncodeFeatures(d.inputs());
      cache.values.index_copy_(0, d.indices, features.to(cache.values.scalar_type()));
      return absl::OkStatus();
    }
    const torch::Tensor hidden = model.ForwardBelow(d.inputs(), k);
    // Each row's real tokens go to its packed place.
    std::vector<int64_t> src, dst;
    for (int64_t r = 0; r < b.rows; ++r) {
      const int64_t i = b.indices[r];
      for (int64_t t = 0; t < lengths[i]; ++t) {
        src.push_back(r * b.seq_len + t);
        dst.push_back(offsets[i] + t);
      }
    }
    const torch::Tensor flat = hidden.reshape({b.rows * b.seq_len, dim});
    cache.values.index_copy_(
        0, torch::tensor(dst, torch::kLong).to(o.device),
        flat.index_select(0, torch::tensor(src, torch::kLong).to(o.device)).to(cache.values.scalar_type()));
    return absl::OkStatus();
  }));
  // Every rank contributes its share; a broadcast from each owner assembles the whole table.
  for (int r = 0; world > 1 && r < world; ++r) {
    auto [b, e] = data::BalancedRange(n, r, world);
    if (e > b) FTUNE_RETURN_IF_ERROR(Broadcast(*comm, cache.values.narrow(0, offsets[b], offsets[e] - offsets[b]), r));
  }
  return cache;
}

}  // namespace ftune::train
