#include "frugal/model/layers.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/model/sequential.h"

namespace frugal {
namespace {

std::string ErrorOf(const Result<std::unique_ptr<Model>>& m) {
  REQUIRE_FALSE(m.ok());
  return m.error().message();
}

// The same parameters and batch through both models: identical loss, gradient and predictions.
void CheckSameOutputs(const Model& a, const Model& b, uint64_t seed) {
  REQUIRE(a.num_params() == b.num_params());
  std::vector<float> pa(a.num_params()), pb(b.num_params());
  a.InitParams(pa, seed);
  b.InitParams(pb, seed);
  CHECK(pa == pb);
  const size_t n = 3;
  Rng rng(seed + 7);
  std::vector<float> x(n * a.input_dim());
  for (float& v : x) v = rng.UniformFloat();
  std::vector<int32_t> y(n);
  for (size_t i = 0; i < n; ++i) y[i] = static_cast<int32_t>(rng.UniformInt(a.num_classes()));
  const BatchView batch{x.data(), y.data(), n};
  std::vector<float> ga(a.num_params()), gb(b.num_params());
  auto wa = a.MakeWorkspace();
  auto wb = b.MakeWorkspace();
  CHECK(a.LossAndGradient(pa, batch, ga, *wa) == b.LossAndGradient(pb, batch, gb, *wb));
  CHECK(ga == gb);
  std::vector<int32_t> ya(n), yb(n);
  CHECK(a.Predict(pa, batch, ya, *wa) == b.Predict(pb, batch, yb, *wb));
  CHECK(ya == yb);
}

TEST_SUITE("model") {
  TEST_CASE("each built-in model written as a layer list has its parameters, FLOPs and outputs") {
    struct Case {
      const char* name;
      size_t input_dim, classes;
    };
    for (const Case c : {Case{"logreg", 784, 10}, Case{"mlp", 784, 10}, Case{"mlp", 64, 10}, Case{"logreg", 30, 2},
                         Case{"cnn", 784, 10}}) {
      CAPTURE(c.name);
      CAPTURE(c.input_dim);
      auto list = BuiltinLayerList(c.name, c.input_dim, c.classes);
      REQUIRE(list.ok());
      auto builtin = MakeModel(c.name, c.input_dim, c.classes);
      auto described = MakeModel("layers: " + *list, c.input_dim, c.classes);
      REQUIRE(builtin.ok());
      REQUIRE_MESSAGE(described.ok(), described.status().ToString());
      // The plan counts by layer, independently of the model's own formula.
      TensorShape input;
      auto layers = ParseLayerList(*list, &input, c.input_dim);
      REQUIRE(layers.ok());
      auto plan = PlanLayers(input, *layers, c.classes);
      REQUIRE(plan.ok());
      CHECK(plan->num_params == (*builtin)->num_params());
      CHECK(plan->flops.forward == (*builtin)->flops_per_example().forward);
      CHECK(plan->flops.backward == (*builtin)->flops_per_example().backward);
      CHECK((*described)->flops_per_example().forward == (*builtin)->flops_per_example().forward);
      CheckSameOutputs(**builtin, **described, 11);
    }
  }

  TEST_CASE("a layer list's shapes, parameters and FLOPs match a hand count") {
    TensorShape input;
    auto layers = ParseLayerList("input(8x8x1) conv2d(4,3) relu maxpool(2) dropout(0.25) dense(10)", &input, 64);
    REQUIRE(layers.ok());
    auto plan = PlanLayers(input, *layers, 10);
    REQUIRE_MESSAGE(plan.ok(), plan.status().ToString());
    // conv: 8*8 pixels * 4 filters * 3*3*1 = 2304 MACs, 256 bias adds; dense: 4*4*4 = 64 inputs * 10 = 640 MACs, 10.
    CHECK(plan->num_params == 4 * 9 + 4 + 640 + 10);
    CHECK(plan->flops.forward == 2 * (2304 + 640) + 266);
    CHECK(plan->flops.backward == 2 * (2304 + 640) + 266 + 2 * 640);
    REQUIRE(plan->outputs.size() == 5);
    CHECK(plan->outputs[2].height == 4);
    CHECK(plan->outputs[2].channels == 4);
    // Neither built-in's shape: it runs as the general Sequential, with the plan's counts.
    auto model = MakeModel("layers: input(8x8x1) conv2d(4,3) relu maxpool(2) dropout(0.25) dense(10)", 64, 10);
    REQUIRE_MESSAGE(model.ok(), model.status().ToString());
    REQUIRE(dynamic_cast<const Sequential*>(model->get()) != nullptr);
    CHECK((*model)->num_params() == plan->num_params);
    CHECK((*model)->flops_per_example().backward == plan->flops.backward);
  }

  TEST_CASE("a deeper dense stack and another CNN shape run as the built-in implementations") {
    auto deep = MakeModel("layers: dense(64) relu dense(32) relu dense(16) relu dense(10)", 100, 10);
    REQUIRE(deep.ok());
    Mlp reference({100, 64, 32, 16, 10});
    CHECK((*deep)->num_params() == reference.num_params());
    CheckSameOutputs(**deep, reference, 3);
    auto small_cnn = MakeModel("layers: input(12x12x3) conv2d(8,3) relu maxpool(2) conv2d(16,3) relu maxpool(2) dense(32) relu dense(5)", 432, 5);
    REQUIRE_MESSAGE(small_cnn.ok(), small_cnn.status().ToString());
    Cnn cnn_ref(CnnConfig{.height = 12, .width = 12, .channels = 3, .kernel = 3, .conv1_channels = 8,
                          .conv2_channels = 16, .dense_units = 32, .num_classes = 5});
    CheckSameOutputs(**small_cnn, cnn_ref, 5);
  }

  TEST_CASE("a layer list with a wrong shape or a bad item is refused at load, naming it") {
    CHECK(ErrorOf(MakeModel("layers: dense(10) conv2d(4,3) dense(10)", 784, 10)).find("layer 2 (conv2d) needs an image") != std::string::npos);
    CHECK(ErrorOf(MakeModel("layers: input(4x4x1) maxpool(5) dense(10)", 16, 10)).find("does not fit") != std::string::npos);
    CHECK(ErrorOf(MakeModel("layers: dense(10) relu", 784, 10)).find("comes last") != std::string::npos);
    CHECK(ErrorOf(MakeModel("layers: dense(200) relu dense(9)", 784, 10)).find("dense(10)") != std::string::npos);
    CHECK(ErrorOf(MakeModel("layers: input(28x28x3) dense(10)", 784, 10)).find("2352 values") != std::string::npos);
    CHECK(ErrorOf(MakeModel("layers: dense(10) softmax", 784, 10)).find("unknown layer 'softmax'") != std::string::npos);
    CHECK(ErrorOf(MakeModel("layers: input(28x28x1) conv2d(4,4) dense(10)", 784, 10)).find("odd") != std::string::npos);
    CHECK(ErrorOf(MakeModel("layers: dense(20) dropout(1.5) dense(10)", 784, 10)).find("[0, 1)") != std::string::npos);
    CHECK(ErrorOf(MakeModel("layers: dense(0) dense(10)", 784, 10)).find("whole number") != std::string::npos);
    CHECK(ErrorOf(MakeModel("layers: conv2d(4,3) relu maxpool(2) dense(10)", 30, 10)).find("not a square") != std::string::npos);
    CHECK(ErrorOf(MakeModel("layers: ", 784, 10)).find("empty") != std::string::npos);
    CHECK(ErrorOf(MakeModel("layers: dense(10) input(1x1x784)", 784, 10)).find("must come first") != std::string::npos);
  }
}

}  // namespace
}  // namespace frugal
