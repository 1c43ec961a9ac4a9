#include "train/device_batch.h"

#include <cstring>

namespace ftune::train {

DeviceBatch ToDevice(const data::HostBatch& b, const torch::Device& device) {
  const std::vector<int64_t>* parts[] = {&b.input_ids, &b.attention_mask, &b.labels,
                                         &b.indices,   &b.mlm_labels,     &b.token_type_ids};
  int64_t total = 0;
  for (const auto* p : parts) total += static_cast<int64_t>(p->size());
  auto options = torch::TensorOptions().dtype(torch::kLong);
  torch::Tensor host = torch::empty({total}, device.is_cpu() ? options : options.pinned_memory(true));
  int64_t* dst = host.data_ptr<int64_t>();
  for (const auto* p : parts) {
    if (!p->empty()) std::memcpy(dst, p->data(), p->size() * sizeof(int64_t));
    dst += p->size();
  }
  torch::Tensor all = device.is_cpu() ? host : host.to(device, /*non_blocking=*/true);
  DeviceBatch d;
  int64_t off = 0;
  auto take = [&](const std::vector<int64_t>& v, std::vector<int64_t> shape) {
    torch::Tensor t;
    if (!v.empty()) t = all.narrow(0, off, static_cast<int64_t>(v.size())).view(shape);
    off += static_cast<int64_t>(v.size());
    return t;
  };
  d.input_ids = take(b.input_ids, {b.rows, b.seq_len});
  d.attention_mask = take(b.attention_mask, {b.rows, b.seq_len});
  d.labels = take(b.labels, {b.rows});
  d.indices = take(b.indices, {b.rows});
  d.mlm_labels = take(b.mlm_labels, {b.rows, b.seq_len});
  d.token_type_ids = take(b.token_type_ids, {b.rows, b.seq_len});
  if (!b.targets.empty()) {
    torch::Tensor t = torch::from_blob(const_cast<float*>(b.targets.data()), {b.rows}, torch::kFloat);
    d.targets = device.is_cpu() ? t.clone() : t.to(device, /*non_blocking=*/false);
  }
  d.seq_len = b.seq_len;
  return d;
}

}  // namespace ftune::train
