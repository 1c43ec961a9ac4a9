// Flat parameter buffers: HF Trainer's weight-decay groups, and parameters/gradients as views.
#include "train/flat_params.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/hf_checkpoint.h"
#include "model/methods.h"
#include "tests/model/test_util.h"

namespace ftune::train {
namespace {

TEST(FlatParameters, WeightDecayGroupsExcludeBiasesAndLayerNorms) {
  auto m = ::ftune::testing::BuildDistilBert(io::DefaultDistilBertConfig());
  ASSERT_TRUE(model::SelectTrainable(*m.model, model::Method::kFull, {}).ok());
  auto flat = FlatParameters::Build(*m.model, 0.01);
  ASSERT_TRUE(flat.ok());
  ASSERT_EQ(flat->groups().size(), 2u);
  const auto& plain = flat->groups()[0];
  const auto& decay = flat->groups()[1];
  EXPECT_EQ(plain.weight_decay, 0.0);
  EXPECT_EQ(decay.weight_decay, 0.01);
  EXPECT_THAT(plain.names, ::testing::Contains("distilbert.embeddings.LayerNorm.weight"));
  EXPECT_THAT(plain.names, ::testing::Contains("distilbert.transformer.layer.0.sa_layer_norm.weight"));
  EXPECT_THAT(plain.names, ::testing::Contains("classifier.bias"));
  EXPECT_THAT(decay.names, ::testing::Contains("distilbert.transformer.layer.0.attention.q_lin.weight"));
  EXPECT_EQ(flat->numel(), 66955010);
  // Parameters are views into the flat buffers: writing the buffer moves the parameter.
  auto params = m.model->named_parameters();
  torch::NoGradGuard g;
  flat->groups()[1].params.fill_(3.0);
  EXPECT_EQ(params["classifier.weight"].max().item<float>(), 3.0f);
  flat->groups()[1].grads.fill_(2.0);
  EXPECT_EQ(params["classifier.weight"].grad().min().item<float>(), 2.0f);
}

}  // namespace
}  // namespace ftune::train
