// The IA3 layer: PEFT's shapes, init and feedforward rule, the formulas against hand computation,
// gradients by finite differences (float64), and merging.
#include "model/ia3.h"

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/hf_checkpoint.h"
#include "model/repr.h"
#include "tests/model/reference.h"
#include "tests/model/test_util.h"

namespace ftune::model {
namespace {

using ::ftune::testing::FiniteDifferenceGrad;
using ::ftune::testing::MaxAbsDiff;
using ::testing::HasSubstr;

TEST(Ia3, WrapsKeyValueAndTheFfnOutputWithPeftShapes) {
  LoadedModel m = testing::BuildDistilBert(io::DefaultDistilBertConfig());
  auto replaced = ApplyIa3(*m.model, testing::DistilBertIa3());
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  ASSERT_EQ(replaced->size(), 18u);  // 6 blocks x (k_lin, v_lin, lin2)
  EXPECT_EQ((*replaced)[0], "distilbert.transformer.layer.0.attention.k_lin");
  EXPECT_EQ((*replaced)[1], "distilbert.transformer.layer.0.attention.v_lin");
  EXPECT_EQ((*replaced)[2], "distilbert.transformer.layer.0.ffn.lin2");
  auto params = m.model->named_parameters();
  // Outputs of k_lin/v_lin are scaled: [out, 1]; lin2's input is (PEFT's feedforward rule): [1, in].
  EXPECT_EQ(params["distilbert.transformer.layer.2.attention.k_lin.ia3_l"].sizes(), torch::IntArrayRef({768, 1}));
  EXPECT_EQ(params["distilbert.transformer.layer.2.attention.v_lin.ia3_l"].sizes(), torch::IntArrayRef({768, 1}));
  EXPECT_EQ(params["distilbert.transformer.layer.2.ffn.lin2.ia3_l"].sizes(), torch::IntArrayRef({1, 3072}));
  EXPECT_NE(params.find("distilbert.transformer.layer.2.ffn.lin2.base_layer.weight"), nullptr);
  EXPECT_EQ(params.find("distilbert.transformer.layer.2.attention.q_lin.ia3_l"), nullptr);
  for (auto& [name, layer] : FindIa3Layers(*m.model)) {
    EXPECT_TRUE(torch::equal(layer->ia3_l, torch::ones_like(layer->ia3_l))) << name;  // PEFT's init
    EXPECT_EQ(layer->is_feedforward(), absl::EndsWith(name, "lin2")) << name;
  }
  std::string tree = ModuleTreeString(*m.model);
  EXPECT_THAT(tree, HasSubstr("(k_lin): ia3.Linear(\n"));
  EXPECT_THAT(tree, HasSubstr("(ia3_l): Parameter containing: [torch.FloatTensor of size 768x1]"));
  EXPECT_THAT(tree, HasSubstr("(ia3_l): Parameter containing: [torch.FloatTensor of size 1x3072]"));
  EXPECT_THAT(tree, HasSubstr("(q_lin): Linear(in_features=768, out_features=768, bias=True)"));
  EXPECT_THAT(tree, HasSubstr("(0-5): 6 x TransformerBlock("));
}

TEST(Ia3, FreshAdapterLeavesOutputsUnchanged) {
  auto m = ::ftune::testing::TinyDoubleModel();
  auto b = ::ftune::testing::MakeTinyBatch();
  m->eval();
  torch::NoGradGuard g;
  torch::Tensor before = testing::Logits(*m, b.ids, b.mask);
  ASSERT_TRUE(ApplyIa3(*m, testing::DistilBertIa3()).ok());
  EXPECT_EQ(FindIa3Layers(*m).front().second->ia3_l.scalar_type(), torch::kDouble);  // lives with its base
  EXPECT_TRUE(torch::equal(testing::Logits(*m, b.ids, b.mask), before));
}

// A 3 -> 2 Linear in float64: W = [[1, 2, 0], [0, -1, 3]], b = [0.5, -1].
LinearLayer HandBase() {
  auto base = std::make_shared<DenseImpl>(3, 2);
  base->to(torch::kDouble);
  torch::NoGradGuard g;
  base->weight.copy_(torch::tensor({{1.0, 2.0, 0.0}, {0.0, -1.0, 3.0}}, torch::kDouble));
  base->bias.copy_(torch::tensor({0.5, -1.0}, torch::kDouble));
  return base;
}

TEST(Ia3, ForwardMatchesHandComputation) {
  const double W[2][3] = {{1, 2, 0}, {0, -1, 3}}, b[2] = {0.5, -1};
  const double x[3] = {1.0, -2.0, 0.5};
  torch::Tensor xt = torch::tensor({{1.0, -2.0, 0.5}}, torch::kDouble);
  torch::NoGradGuard g;

  Ia3LinearImpl out(HandBase(), /*is_feedforward=*/false);  // y_o = l_o (W x + b)_o
  out.ia3_l.copy_(torch::tensor({{2.0}, {-0.5}}, torch::kDouble));
  const double l_out[2] = {2.0, -0.5};
  torch::Tensor y = out.forward(xt);
  for (int o = 0; o < 2; ++o) {
    double wx = b[o];
    for (int i = 0; i < 3; ++i) wx += W[o][i] * x[i];
    EXPECT_DOUBLE_EQ(y[0][o].item<double>(), l_out[o] * wx) << o;
  }

  Ia3LinearImpl in(HandBase(), /*is_feedforward=*/true);  // y_o = sum_i W_oi l_i x_i + b_o
  in.ia3_l.copy_(torch::tensor({{0.5, 3.0, -2.0}}, torch::kDouble));
  const double l_in[3] = {0.5, 3.0, -2.0};
  y = in.forward(xt);
  for (int o = 0; o < 2; ++o) {
    double wx = b[o];
    for (int i = 0; i < 3; ++i) wx += W[o][i] * l_in[i] * x[i];
    EXPECT_DOUBLE_EQ(y[0][o].item<double>(), wx) << o;
  }
}

TEST(Ia3, GradientsMatchFiniteDifferences) {
  torch::manual_seed(1);
  for (bool feedforward : {false, true}) {
    Ia3LinearImpl l(HandBase(), feedforward);
    {
      torch::NoGradGuard g;
      l.ia3_l.add_(0.3 * torch::randn_like(l.ia3_l));
    }
    torch::Tensor x = torch::randn({4, 3}, torch::kDouble);
    torch::Tensor w_out = torch::randn({4, 2}, torch::kDouble);
    auto loss = [&] { return (l.forward(x) * w_out).sum(); };
    loss().backward();
    EXPECT_LT(MaxAbsDiff(l.ia3_l.grad(), FiniteDifferenceGrad(l.ia3_l, [&] { return loss().item<double>(); })), 1e-7)
        << "feedforward " << feedforward;
  }
  // Through a whole model: every IA3 vector's gradient of the classification loss.
  auto m = ::ftune::testing::TinyDoubleModel();
  ASSERT_TRUE(ApplyIa3(*m, testing::DistilBertIa3()).ok());
  auto layers = FindIa3Layers(*m);
  {
    torch::NoGradGuard g;
    for (auto& [name, layer] : layers) layer->ia3_l.add_(0.2 * torch::randn_like(layer->ia3_l));
  }
  auto b = ::ftune::testing::MakeTinyBatch();
  m->train();  // dropouts are 0
  auto loss = [&] { return ClassificationLoss(testing::Logits(*m, b.ids, b.mask), b.labels); };
  loss().backward();
  for (auto& [name, layer] : layers) {
    EXPECT_LT(
        MaxAbsDiff(layer->ia3_l.grad(), FiniteDifferenceGrad(layer->ia3_l, [&] { return loss().item<double>(); })),
        1e-8)
        << name;
  }
}

TEST(Ia3, MergeScalesRowsOrColumnsAndKeepsTheOutputs) {
  torch::manual_seed(2);
  torch::NoGradGuard g;
  torch::Tensor x = torch::randn({5, 3}, torch::kDouble);
  Ia3LinearImpl out(HandBase(), false);
  out.ia3_l.copy_(torch::tensor({{2.0}, {-0.5}}, torch::kDouble));
  Dense m_out = out.Merged();
  EXPECT_TRUE(torch::allclose(m_out->weight, torch::tensor({{2.0, 4.0, 0.0}, {0.0, 0.5, -1.5}}, torch::kDouble)));
  EXPECT_TRUE(torch::allclose(m_out->bias, torch::tensor({1.0, 0.5}, torch::kDouble)));  // bias scaled too
  EXPECT_LT(MaxAbsDiff(m_out->forward(x), out.forward(x)), 1e-14);

  Ia3LinearImpl in(HandBase(), true);
  in.ia3_l.copy_(torch::tensor({{0.5, 3.0, -2.0}}, torch::kDouble));
  Dense m_in = in.Merged();
  EXPECT_TRUE(torch::allclose(m_in->weight, torch::tensor({{0.5, 6.0, 0.0}, {0.0, -3.0, -6.0}}, torch::kDouble)));
  EXPECT_TRUE(torch::allclose(m_in->bias, torch::tensor({0.5, -1.0}, torch::kDouble)));  // bias untouched
  EXPECT_LT(MaxAbsDiff(m_in->forward(x), in.forward(x)), 1e-14);

  auto m = ::ftune::testing::TinyDoubleModel();
  ASSERT_TRUE(ApplyIa3(*m, testing::DistilBertIa3()).ok());
  for (auto& [name, layer] : FindIa3Layers(*m)) layer->ia3_l.add_(0.3 * torch::randn_like(layer->ia3_l));
  auto b = ::ftune::testing::MakeTinyBatch();
  m->eval();
  torch::Tensor before = testing::Logits(*m, b.ids, b.mask);
  EXPECT_EQ(MergeIa3(*m), 6);
  EXPECT_TRUE(FindIa3Layers(*m).empty());
  EXPECT_LT(MaxAbsDiff(testing::Logits(*m, b.ids, b.mask), before), 1e-12);
}

TEST(Ia3, BadOptionsAreRefused) {
  auto m = ::ftune::testing::TinyDoubleModel();
  Ia3Options o = testing::DistilBertIa3();
  o.feedforward = {"lin1"};
  auto r = ApplyIa3(*m, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"lin1\" is not one of the targets"));
  o = testing::DistilBertIa3();
  o.targets = {"k_lin", "key"};
  o.feedforward = {};
  r = ApplyIa3(*m, o);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("IA3 target \"key\" matches no Linear layer"));
  ASSERT_TRUE(ApplyIa3(*m, testing::DistilBertIa3()).ok());
  EXPECT_EQ(ApplyIa3(*m, testing::DistilBertIa3()).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ftune::model
