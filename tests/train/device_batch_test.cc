// One upload per batch: every field arrives intact, in its shape, and owns its memory.
#include "train/device_batch.h"

#include "gtest/gtest.h"

namespace ftune::train {
namespace {

data::HostBatch Batch() {
  data::HostBatch b;
  b.rows = 2;
  b.seq_len = 3;
  b.input_ids = {101, 7, 102, 101, 102, 0};
  b.attention_mask = {1, 1, 1, 1, 1, 0};
  b.labels = {1, 0};
  b.indices = {42, 7};
  return b;
}

void ExpectEqual(const torch::Tensor& t, const std::vector<int64_t>& want, std::vector<int64_t> shape) {
  ASSERT_TRUE(t.defined());
  EXPECT_EQ(t.sizes().vec(), shape);
  EXPECT_EQ(t.scalar_type(), torch::kLong);
  torch::Tensor c = t.to(torch::kCPU).contiguous();
  EXPECT_EQ(std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()), want);
}

void CheckOn(const torch::Device& device) {
  torch::Tensor ids;
  {
    data::HostBatch b = Batch();
    DeviceBatch d = ToDevice(b, device);
    ExpectEqual(d.input_ids, {101, 7, 102, 101, 102, 0}, {2, 3});
    ExpectEqual(d.attention_mask, {1, 1, 1, 1, 1, 0}, {2, 3});
    ExpectEqual(d.labels, {1, 0}, {2});
    ExpectEqual(d.indices, {42, 7}, {2});
    EXPECT_EQ(d.input_ids.device(), device);
    ids = d.input_ids;
    b.input_ids.assign(6, -1);  // the host batch may change or go away
  }
  ExpectEqual(ids, {101, 7, 102, 101, 102, 0}, {2, 3});
}

TEST(ToDevice, EveryFieldArrivesOnTheCpu) { CheckOn(torch::kCPU); }

TEST(ToDevice, EveryFieldArrivesOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  CheckOn(torch::Device(torch::kCUDA, 0));
}

TEST(ToDevice, AbsentFieldsStayUndefined) {
  data::HostBatch b = Batch();
  b.input_ids.clear();
  b.attention_mask.clear();  // an indices-only batch (feature cache)
  b.labels.clear();          // an unlabeled dataset
  DeviceBatch d = ToDevice(b, torch::kCPU);
  EXPECT_FALSE(d.input_ids.defined());
  EXPECT_FALSE(d.attention_mask.defined());
  EXPECT_FALSE(d.labels.defined());
  ExpectEqual(d.indices, {42, 7}, {2});
}

}  // namespace
}  // namespace ftune::train
