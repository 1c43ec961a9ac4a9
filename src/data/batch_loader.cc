#include "data/batch_loader.h"

#include <algorithm>

namespace ftune::data {

int64_t PaddedLength(int64_t longest, int64_t pad_to_multiple_of, int64_t max_length) {
  if (pad_to_multiple_of <= 1 || longest == 0) return longest;
  const int64_t padded = (longest + pad_to_multiple_of - 1) / pad_to_multiple_of * pad_to_multiple_of;
  return max_length > 0 ? std::max(longest, std::min(padded, max_length)) : padded;
}

HostBatch IndicesOnly(const TokenDataset& ds, const std::vector<int64_t>& indices, int64_t pad_to_multiple_of,
                      int64_t max_length) {
  HostBatch b;
  b.rows = static_cast<int64_t>(indices.size());
  b.indices = indices;
  int64_t longest = 0;
  for (int64_t i : indices) {
    b.labels.push_back(ds.label(i));
    if (ds.is_regression()) b.targets.push_back(ds.target(i));
    b.real_tokens += ds.length(i);
    longest = std::max<int64_t>(longest, ds.length(i));
  }
  b.seq_len = PaddedLength(longest, pad_to_multiple_of, max_length);
  return b;
}

HostBatch Collate(const std::vector<Example>& examples, int64_t pad_id, int64_t pad_to_multiple_of,
                  int64_t max_length) {
  HostBatch b;
  b.rows = static_cast<int64_t>(examples.size());
  for (const auto& e : examples) b.seq_len = std::max<int64_t>(b.seq_len, static_cast<int64_t>(e.ids.size()));
  b.seq_len = PaddedLength(b.seq_len, pad_to_multiple_of, max_length);
  b.input_ids.assign(b.rows * b.seq_len, pad_id);
  b.attention_mask.assign(b.rows * b.seq_len, 0);
  bool types = false, regression = false;
  for (const auto& e : examples) {
    types |= !e.type_ids.empty();
    regression |= e.has_target;
  }
  if (types) b.token_type_ids.assign(b.rows * b.seq_len, 0);
  for (int64_t r = 0; r < b.rows; ++r) {
    const auto& ids = examples[r].ids;
    std::copy(ids.begin(), ids.end(), b.input_ids.begin() + r * b.seq_len);
    std::fill_n(b.attention_mask.begin() + r * b.seq_len, ids.size(), 1);
    b.labels.push_back(examples[r].label);
    if (types) std::copy(examples[r].type_ids.begin(), examples[r].type_ids.end(), b.token_type_ids.begin() + r * b.seq_len);
    b.indices.push_back(examples[r].index);
    if (regression) b.targets.push_back(examples[r].target);
    b.real_tokens += static_cast<int64_t>(ids.size());
  }
  return b;
}

BatchLoader::BatchLoader(const TokenDataset* dataset, const SamplerOptions& options, int rank, int64_t pad_id,
                         int prefetch, bool read_tokens)
    : dataset_(dataset),
      options_(options),
      rank_(rank),
      pad_id_(pad_id),
      prefetch_(std::max(1, prefetch)),
      read_tokens_(read_tokens) {
  if (options_.group_by_length) {
    lengths_.resize(dataset_->size());
    for (int64_t i = 0; i < dataset_->size(); ++i) lengths_[i] = dataset_->length(i);
  }
}

BatchLoader::~BatchLoader() { Stop(); }

int64_t BatchLoader::steps_per_epoch() const { return StepsPerEpoch(dataset_->size(), GlobalBatchSize(options_)); }

void BatchLoader::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  stop_ = false;
  queue_.clear();
}

void BatchLoader::StartEpoch(int64_t epoch, int64_t start_step) {
  Stop();
  plan_ = std::make_unique<EpochPlan>(dataset_->size(), lengths_, options_, epoch);
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = false;
    error_ = absl::OkStatus();
  }
  thread_ = std::thread([this, epoch, start_step] { Run(epoch, start_step); });
}

void BatchLoader::Run(int64_t epoch, int64_t start_step) {
  absl::Status st;
  for (int64_t step = start_step; step < plan_->num_steps() && st.ok(); ++step) {
    for (int64_t micro = 0; micro < plan_->accumulation_steps(); ++micro) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || queue_.size() < prefetch_; });
        if (stop_) break;
      }
      std::vector<int64_t> slice = plan_->Slice(step, rank_, micro);
      HostBatch b;
      if (read_tokens_) {
        absl::StatusOr<std::vector<Example>> examples = dataset_->Read(slice);
        if (!examples.ok()) {
          st = examples.status();
          break;
        }
        b = Collate(*examples, pad_id_, pad_multiple_, pad_cap_);
        if (masking_) MaskTokens(*masking_, epoch, &b);
      } else {
        b = IndicesOnly(*dataset_, slice, pad_multiple_, pad_cap_);
      }
      std::lock_guard<std::mutex> lock(mu_);
      b.epoch = epoch;
      b.step = step;
      b.micro = micro;
      b.global_examples = plan_->global_batch_size(step);
      queue_.push_back(std::move(b));
      cv_.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  error_ = st;
  done_ = true;
  cv_.notify_all();
}

absl::StatusOr<std::optional<HostBatch>> BatchLoader::Next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || done_; });
  if (!queue_.empty()) {
    HostBatch b = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
    return std::optional<HostBatch>(std::move(b));
  }
  if (!error_.ok()) return error_;
  return std::optional<HostBatch>();
}

}  // namespace ftune::data
