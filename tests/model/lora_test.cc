// The LoRA and DoRA layers: replacement by name, PEFT's init, the formulas against hand
// computation, gradients by finite differences (float64), and merging.
#include "model/lora.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/hf_checkpoint.h"
#include "model/repr.h"
#include "tests/model/reference.h"
#include "tests/model/test_util.h"

namespace ftune::model {
namespace {

using ::ftune::testing::FiniteDifferenceGrad;
using ::ftune::testing::HfFixture;
using ::ftune::testing::MaxAbsDiff;
using ::ftune::testing::ReadAll;
using ::testing::HasSubstr;

TEST(Lora, ReplacesAllTwelveQueryAndValueLayersByQualifiedName) {
  LoadedModel m = testing::BuildDistilBert(io::DefaultDistilBertConfig());
  auto replaced = ApplyLora(*m.model, testing::DistilBertLora());
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  ASSERT_EQ(replaced->size(), 12u);
  EXPECT_EQ(replaced->front(), "distilbert.transformer.layer.0.attention.q_lin");
  EXPECT_EQ(replaced->back(), "distilbert.transformer.layer.5.attention.v_lin");
  auto params = m.model->named_parameters();
  EXPECT_NE(params.find("distilbert.transformer.layer.3.attention.q_lin.base_layer.weight"), nullptr);
  EXPECT_EQ(params["distilbert.transformer.layer.3.attention.v_lin.lora_A.weight"].sizes(),
            torch::IntArrayRef({12, 768}));
  EXPECT_EQ(params["distilbert.transformer.layer.3.attention.v_lin.lora_B.weight"].sizes(),
            torch::IntArrayRef({768, 12}));
  EXPECT_EQ(params.find("distilbert.transformer.layer.3.attention.v_lin.lora_magnitude_vector"), nullptr);
  std::string tree = ModuleTreeString(*m.model);
  EXPECT_THAT(tree, HasSubstr("(q_lin): lora.Linear(\n"));
  EXPECT_THAT(tree, HasSubstr("(lora_A): Linear(in_features=768, out_features=12, bias=False)"));
  EXPECT_THAT(tree, HasSubstr("(k_lin): Linear(in_features=768, out_features=768, bias=True)"));
}

TEST(Lora, FreshAdapterLeavesOutputsUnchangedAndInitsLikePeft) {
  auto m = LoadPretrained(HfFixture("hf-tiny-cls"), ModelOptions{false});
  ASSERT_TRUE(m.ok());
  auto io = ReadAll(HfFixture("hf-tiny-cls/io.safetensors"));
  m->model->eval();
  torch::NoGradGuard g;
  torch::Tensor before = testing::Logits(*m->model, io["input_ids"], io["attention_mask"]);
  ASSERT_TRUE(ApplyLora(*m->model, testing::DistilBertLora()).ok());
  torch::Tensor after = testing::Logits(*m->model, io["input_ids"], io["attention_mask"]);
  EXPECT_TRUE(torch::equal(before, after));  // B = 0
  for (auto& [name, layer] : FindLoraLayers(*m->model)) {
    EXPECT_EQ(layer->lora_B->weight.abs().max().item<float>(), 0.0f) << name;
    // kaiming_uniform_(a=sqrt(5)) on [r, in]: U(-1/sqrt(in), 1/sqrt(in)).
    double bound = 1.0 / std::sqrt(32.0);
    EXPECT_LE(layer->lora_A->weight.abs().max().item<double>(), bound) << name;
    EXPECT_GT(layer->lora_A->weight.abs().max().item<double>(), 0.5 * bound) << name;
    EXPECT_DOUBLE_EQ(layer->scaling(), 2.0);
  }
}

TEST(Lora, TargetMatchingNothingIsAnError) {
  LoadedModel m = testing::BuildDistilBert(io::DefaultDistilBertConfig());
  LoraOptions o;
  o.targets = {"q_lin", "query"};
  auto r = ApplyLora(*m.model, o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"query\" matches no Linear layer"));
  o.targets = {"q_lin"};
  o.rank = 0;
  EXPECT_EQ(ApplyLora(*m.model, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.rank = 4;
  ASSERT_TRUE(ApplyLora(*m.model, o).ok());
  EXPECT_EQ(ApplyLora(*m.model, o).status().code(), absl::StatusCode::kFailedPrecondition);  // already wrapped
}

// A DoRA layer in float64 on a 3 -> 2 Linear with every number chosen by hand:
// W = [[1, 2, 0], [0, -1, 3]], b = [0.5, -1], r 2, alpha 3 (s = 1.5).
std::shared_ptr<LoraLinearImpl> HandDora(double dropout = 0.0) {
  auto base = std::make_shared<DenseImpl>(3, 2);
  base->to(torch::kDouble);
  torch::NoGradGuard g;
  base->weight.copy_(torch::tensor({{1.0, 2.0, 0.0}, {0.0, -1.0, 3.0}}, torch::kDouble));
  base->bias.copy_(torch::tensor({0.5, -1.0}, torch::kDouble));
  LoraOptions o;
  o.rank = 2;
  o.alpha = 3;
  o.dropout = dropout;
  o.use_dora = true;
  auto l = std::make_shared<LoraLinearImpl>(base, o);
  l->lora_A->weight.copy_(torch::tensor({{0.1, -0.2, 0.3}, {0.0, 0.4, -0.1}}, torch::kDouble));
  l->lora_B->weight.copy_(torch::tensor({{0.2, -0.1}, {0.5, 0.3}}, torch::kDouble));
  l->lora_magnitude_vector.copy_(torch::tensor({2.5, 2.0}, torch::kDouble));
  return l;
}

TEST(Dora, MagnitudeStartsAtTheRowNormsOfW) {
  torch::manual_seed(1);
  auto base = std::make_shared<DenseImpl>(3, 2);
  base->to(torch::kDouble);
  {
    torch::NoGradGuard g;
    base->weight.copy_(torch::tensor({{1.0, 2.0, 2.0}, {0.0, -3.0, 4.0}}, torch::kDouble));
  }
  LoraOptions o;
  o.rank = 2;
  o.alpha = 4;
  o.use_dora = true;
  LoraLinearImpl l(base, o);
  ASSERT_TRUE(l.use_dora());
  EXPECT_EQ(l.lora_magnitude_vector.scalar_type(), torch::kDouble);
  EXPECT_DOUBLE_EQ(l.lora_magnitude_vector[0].item<double>(), 3.0);  // sqrt(1 + 4 + 4)
  EXPECT_DOUBLE_EQ(l.lora_magnitude_vector[1].item<double>(), 5.0);  // sqrt(9 + 16)
  // B = 0 and m = ||W||: a fresh DoRA layer is the base layer.
  torch::Tensor x = torch::randn({4, 3}, torch::kDouble);
  EXPECT_LT(MaxAbsDiff(l.forward(x), base->forward(x)), 1e-15);
}

TEST(Dora, ForwardMatchesHandComputation) {
  auto l = HandDora();
  const double s = 1.5;
  const double W[2][3] = {{1, 2, 0}, {0, -1, 3}}, b[2] = {0.5, -1};
  const double A[2][3] = {{0.1, -0.2, 0.3}, {0.0, 0.4, -0.1}}, B[2][2] = {{0.2, -0.1}, {0.5, 0.3}};
  const double m[2] = {2.5, 2.0};
  const double x[2][3] = {{1.0, -2.0, 0.5}, {0.3, 0.7, -1.1}};
  // V = W + s B A; y = b + m / ||V||_row * V x.
  double V[2][3];
  for (int o = 0; o < 2; ++o) {
    for (int i = 0; i < 3; ++i) V[o][i] = W[o][i] + s * (B[o][0] * A[0][i] + B[o][1] * A[1][i]);
  }
  torch::Tensor y = l->forward(torch::tensor({{1.0, -2.0, 0.5}, {0.3, 0.7, -1.1}}, torch::kDouble));
  for (int n = 0; n < 2; ++n) {
    for (int o = 0; o < 2; ++o) {
      double norm = 0, vx = 0;
      for (int i = 0; i < 3; ++i) {
        norm += V[o][i] * V[o][i];
        vx += V[o][i] * x[n][i];
      }
      EXPECT_NEAR(y[n][o].item<double>(), b[o] + m[o] / std::sqrt(norm) * vx, 1e-14) << n << "," << o;
    }
  }
}

TEST(Dora, DropoutAppliesToTheAdapterPathOnlyAsPeftDoes) {
  // PEFT (DoraLinearVariant.forward with lora_dropout active): y = W x + b + (m/n - 1) W d(x) + (m/n) s B A d(x).
  auto l = HandDora(/*dropout=*/0.5);
  l->train();
  torch::Tensor x = torch::randn({64, 3}, torch::kDouble);
  torch::manual_seed(11);
  torch::Tensor y = l->forward(x);
  torch::manual_seed(11);
  torch::Tensor dx = torch::dropout(x, 0.5, /*train=*/true);  // the same draws as the layer's Dropout
  ASSERT_FALSE(torch::equal(dx, x));
  {
    torch::NoGradGuard g;
    auto* base = l->base_layer->as<DenseImpl>();
    torch::Tensor ba = torch::matmul(l->lora_B->weight, l->lora_A->weight);
    torch::Tensor scale = l->lora_magnitude_vector / (base->weight + 1.5 * ba).norm(2, {1});
    torch::Tensor expected = torch::matmul(x, base->weight.t()) + base->bias +
                             (scale - 1) * torch::matmul(dx, base->weight.t()) +
                             scale * 1.5 * torch::matmul(dx, ba.t());
    EXPECT_LT(MaxAbsDiff(y, expected), 1e-13);
  }
  // In eval mode the dropout is off and the layer is its merged form.
  l->eval();
  torch::NoGradGuard g;
  EXPECT_LT(MaxAbsDiff(l->forward(x), l->Merged()->forward(x)), 1e-13);
}

TEST(Dora, GradientsMatchFiniteDifferencesWithTheWeightNormHeldConstant) {
  torch::manual_seed(1);
  auto l = HandDora();
  torch::Tensor x = torch::randn({5, 3}, torch::kDouble);
  torch::Tensor w_out = torch::randn({5, 2}, torch::kDouble);
  auto loss = [&] { return (l->forward(x) * w_out).sum(); };
  loss().backward();
  // The reference: the same function with n frozen at its current value (DoRA section 4.3 and
  // PEFT's weight_norm.detach()): y = b + (m / n0) (W x + s B A x).
  auto* base = l->base_layer->as<DenseImpl>();
  const torch::Tensor n0 = l->WeightNorm();
  auto frozen_norm = [&] {
    torch::Tensor v = base->weight + 1.5 * torch::matmul(l->lora_B->weight, l->lora_A->weight);
    torch::Tensor y = base->bias + (l->lora_magnitude_vector / n0) * torch::matmul(x, v.t());
    return (y * w_out).sum().item<double>();
  };
  auto full = [&] { return loss().item<double>(); };
  for (auto* p : {&l->lora_A->weight, &l->lora_B->weight, &l->lora_magnitude_vector}) {
    ASSERT_TRUE(p->grad().defined());
    EXPECT_LT(MaxAbsDiff(p->grad(), FiniteDifferenceGrad(*p, frozen_norm)), 1e-7);
  }
  // The norm does depend on A and B: letting it move would give another gradient, so the match
  // above is the detach, not an accident.
  EXPECT_GT(MaxAbsDiff(l->lora_A->weight.grad(), FiniteDifferenceGrad(l->lora_A->weight, full)), 1e-4);
  // m does not enter n, so its gradient is the full function's too.
  EXPECT_LT(MaxAbsDiff(l->lora_magnitude_vector.grad(), FiniteDifferenceGrad(l->lora_magnitude_vector, full)), 1e-7);
}

TEST(Dora, MergedLayerAndModelGiveTheSameOutputs) {
  torch::manual_seed(1);
  auto l = HandDora();
  torch::NoGradGuard g;
  torch::Tensor x = torch::randn({7, 3}, torch::kDouble);
  Dense merged = l->Merged();
  EXPECT_LT(MaxAbsDiff(merged->forward(x), l->forward(x)), 1e-14);
  EXPECT_TRUE(torch::equal(merged->bias, l->base_layer->as<DenseImpl>()->bias));  // PEFT keeps the bias

  auto m = ::ftune::testing::TinyDoubleModel();
  LoraOptions o = testing::DistilBertLora();
  o.rank = 2;
  o.alpha = 4;
  o.use_dora = true;
  ASSERT_TRUE(ApplyLora(*m, o).ok());
  for (auto& p : m->parameters()) p.add_(0.1 * torch::randn_like(p));  // B != 0, m != ||W||
  auto b = ::ftune::testing::MakeTinyBatch();
  m->eval();
  torch::Tensor before = testing::Logits(*m, b.ids, b.mask);
  EXPECT_EQ(MergeLora(*m), 4);
  EXPECT_TRUE(FindLoraLayers(*m).empty());
  EXPECT_LT(MaxAbsDiff(testing::Logits(*m, b.ids, b.mask), before), 1e-12);
}

TEST(Dora, PrintsTheMagnitudeVectorInTheTree) {
  auto m = ::ftune::testing::TinyDoubleModel();
  LoraOptions o = testing::DistilBertLora();
  o.use_dora = true;
  ASSERT_TRUE(ApplyLora(*m, o).ok());
  std::string tree = ModuleTreeString(*m);
  EXPECT_THAT(tree, HasSubstr("(q_lin): lora.Linear(\n"));
  EXPECT_THAT(tree, HasSubstr("(lora_magnitude_vector): Parameter containing: [torch.DoubleTensor of size 8]\n"));
}

}  // namespace
}  // namespace ftune::model
