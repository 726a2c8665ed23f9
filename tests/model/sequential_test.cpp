// The general sequential model against plain references: finite differences,
// the built-in models for the same parameters, dropout's mask statistics, and
// the kernels' tallied work. Inputs are synthetic: these check arithmetic, not
// learning (the digits service test trains a layer list on real data).
#include "frugal/model/sequential.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/data/dataset.h"
#include "frugal/train/trainer.h"
#include "model/random_batch.h"

namespace frugal {
namespace {

Sequential MakeSequential(const std::string& list, size_t input_dim, size_t classes) {
  TensorShape input;
  auto layers = ParseLayerList(list, &input, input_dim);
  REQUIRE_MESSAGE(layers.ok(), layers.status().ToString());
  auto plan = PlanLayers(input, *layers, classes);
  REQUIRE_MESSAGE(plan.ok(), plan.status().ToString());
  return Sequential(*plan);
}

using test::Batch;
using test::RandomBatch;

// Central differences in double over float losses, at parameters spread over
// every layer; ReLU kinks and pooling ties are met with probability ~eps.
void CheckGradientByFiniteDifferences(const Sequential& model, size_t n, uint64_t seed) {
  std::vector<float> params(model.num_params());
  model.InitParams(params, seed);
  Rng rng(seed + 1);
  for (float& v : params) v += 0.05f * (2.0f * rng.UniformFloat() - 1.0f);  // non-zero biases too
  const Batch b = RandomBatch(n, model.input_dim(), model.num_classes(), seed + 2);
  auto ws = model.MakeWorkspace();
  ws->trainer.step_seed = 99;  // one dropout mask for every evaluation below
  std::vector<float> grad(params.size());
  model.LossAndGradient(params, b.view(), grad, *ws);
  const double eps = 1e-3;
  size_t checked = 0, bad = 0;
  for (size_t i = 0; i < params.size(); i += std::max<size_t>(1, params.size() / 150)) {
    const float keep = params[i];
    params[i] = static_cast<float>(keep + eps);
    const double up = model.LossAndGradient(params, b.view(), {}, *ws);
    params[i] = static_cast<float>(keep - eps);
    const double down = model.LossAndGradient(params, b.view(), {}, *ws);
    params[i] = keep;
    const double numeric = (up - down) / (2 * eps);
    ++checked;
    if (std::abs(numeric - grad[i]) > 2e-3 + 0.02 * std::abs(numeric)) {
      ++bad;
      MESSAGE("parameter " << i << ": analytic " << grad[i] << ", numeric " << numeric);
    }
  }
  CHECK(checked > 100);
  CHECK(bad == 0);
}

// The same parameters and batch through both models: equal outputs and
// gradients up to float rounding (the kernels may sum in another order).
void CheckSameAsBuiltin(const Model& builtin, const Sequential& seq, size_t n, uint64_t seed) {
  REQUIRE(builtin.num_params() == seq.num_params());
  CHECK(builtin.flops_per_example().forward == seq.flops_per_example().forward);
  CHECK(builtin.flops_per_example().backward == seq.flops_per_example().backward);
  std::vector<float> pa(builtin.num_params()), pb(seq.num_params());
  builtin.InitParams(pa, seed);
  seq.InitParams(pb, seed);
  CHECK(pa == pb);
  Rng rng(seed);
  for (float& v : pa) v += 0.01f * (2.0f * rng.UniformFloat() - 1.0f);
  pb = pa;
  const Batch b = RandomBatch(n, builtin.input_dim(), builtin.num_classes(), seed + 3);
  auto wa = builtin.MakeWorkspace();
  auto wb = seq.MakeWorkspace();
  std::vector<float> ga(pa.size()), gb(pb.size());
  const double la = builtin.LossAndGradient(pa, b.view(), ga, *wa);
  const double lb = seq.LossAndGradient(pb, b.view(), gb, *wb);
  CHECK(lb == doctest::Approx(la).epsilon(1e-6));
  float scale = 0, worst = 0;
  for (size_t i = 0; i < ga.size(); ++i) {
    scale = std::max(scale, std::abs(ga[i]));
    worst = std::max(worst, std::abs(ga[i] - gb[i]));
  }
  CHECK(scale > 0);
  CHECK(worst <= 1e-5f * scale);
  std::vector<int32_t> ya(n), yb(n);
  CHECK(seq.Predict(pb, b.view(), yb, *wb) == doctest::Approx(builtin.Predict(pa, b.view(), ya, *wa)).epsilon(1e-6));
  CHECK(ya == yb);
}

TEST_SUITE("model") {
  TEST_CASE("a mixed layer list's gradient matches finite differences, dropout and pooling included") {
    // Pooling first (no input gradient below the first weighted layer), a 1x1
    // convolution, dropout on an image and on a vector; 35 examples are two
    // passes of 32 and 3, whose gradients add up.
    CheckGradientByFiniteDifferences(
        MakeSequential("input(8x8x2) maxpool(2) conv2d(3,3) relu conv2d(4,1) relu maxpool(2) dropout(0.25) "
                       "dense(6) relu dropout(0.5) dense(3)", 128, 3),
        35, 7);
    CheckGradientByFiniteDifferences(MakeSequential("dense(12) relu dropout(0.4) dense(7) relu dense(3)", 10, 3), 9, 8);
  }

  TEST_CASE("the 2NN and the CNN as Sequential give the built-in models' outputs and gradients") {
    CheckSameAsBuiltin(Mlp({784, 200, 200, 10}), MakeSequential("dense(200) relu dense(200) relu dense(10)", 784, 10),
                       20, 1);
    CheckSameAsBuiltin(Cnn(CnnConfig{}),
                       MakeSequential("input(28x28x1) conv2d(32,5) relu maxpool(2) conv2d(64,5) relu maxpool(2) "
                                      "dense(512) relu dense(10)", 784, 10),
                       3, 2);
    // Two passes (32 + 8 examples) against the CNN's own chunks.
    CheckSameAsBuiltin(Cnn(CnnConfig{.height = 12, .width = 12, .channels = 3, .kernel = 3, .conv1_channels = 8,
                                     .conv2_channels = 16, .dense_units = 32, .num_classes = 5}),
                       MakeSequential("input(12x12x3) conv2d(8,3) relu maxpool(2) conv2d(16,3) relu maxpool(2) "
                                      "dense(32) relu dense(5)", 432, 5),
                       40, 3);
  }

  TEST_CASE("dropout keeps 1 - rate of the values, scaled by 1 / (1 - rate), per step seed; evaluation is the identity") {
    // With one example of ones, dense(2)'s weight gradient is the dropped-out
    // input times the bias gradient: the mask itself.
    const size_t dim = 20000;
    const double rate = 0.3;
    const Sequential model = MakeSequential("dropout(0.3) dense(2)", dim, 2);
    std::vector<float> params(model.num_params());
    model.InitParams(params, 5);
    std::vector<float> x(dim, 1.0f);
    const int32_t y = 1;
    const BatchView one{x.data(), &y, 1};
    auto ws = model.MakeWorkspace();
    auto mask_for = [&](uint64_t step_seed) {
      ws->trainer.step_seed = step_seed;
      std::vector<float> grad(params.size());
      model.LossAndGradient(params, one, grad, *ws);
      const float gb = grad[2 * dim];
      REQUIRE(gb != 0.0f);
      std::vector<float> mask(dim);
      for (size_t k = 0; k < dim; ++k) mask[k] = grad[k] / gb;
      return mask;
    };
    const std::vector<float> a = mask_for(1), a_again = mask_for(1), b = mask_for(2);
    CHECK(a == a_again);
    size_t dropped = 0, differ = 0;
    double mean = 0;
    for (size_t k = 0; k < dim; ++k) {
      const bool zero = a[k] == 0.0f;
      dropped += zero ? 1 : 0;
      if (!zero) CHECK(a[k] == doctest::Approx(1.0 / (1.0 - rate)).epsilon(1e-6));
      differ += (a[k] == 0.0f) != (b[k] == 0.0f) ? 1 : 0;
      mean += a[k];
    }
    // Binomial(20000, 0.3): sd 0.0032 of the fraction; 5 sd.
    CHECK(static_cast<double>(dropped) / dim == doctest::Approx(rate).epsilon(0.055));
    CHECK(mean / dim == doctest::Approx(1.0).epsilon(0.025));  // inverted dropout keeps the mean
    // Another step's mask is independent: they differ on ~2 * 0.3 * 0.7 = 42%.
    CHECK(static_cast<double>(differ) / dim == doctest::Approx(0.42).epsilon(0.05));
    // Evaluation: the same list without dropout, exactly.
    const Sequential plain = MakeSequential("dense(2)", dim, 2);
    auto ws_plain = plain.MakeWorkspace();
    int32_t pa = 0, pb = 0;
    CHECK(model.Predict(params, one, std::span<int32_t>(&pa, 1), *ws) ==
          plain.Predict(params, one, std::span<int32_t>(&pb, 1), *ws_plain));
    // dropout(0) trains as the identity too.
    const Sequential zero = MakeSequential("dropout(0) dense(2)", dim, 2);
    auto ws_zero = zero.MakeWorkspace();
    std::vector<float> g0(params.size()), g1(params.size());
    CHECK(zero.LossAndGradient(params, one, g0, *ws_zero) == plain.LossAndGradient(params, one, g1, *ws_plain));
    CHECK(g0 == g1);
  }

  TEST_CASE("the trainer's seed decides the dropout masks: the same seed trains the same weights") {
    const Sequential model = MakeSequential("dense(16) relu dropout(0.5) dense(3)", 6, 3);
    Dataset data;
    data.num_features = 6;
    data.num_classes = 3;
    const Batch b = RandomBatch(50, 6, 3, 4);
    data.features = b.x;
    data.labels = b.y;
    std::vector<uint32_t> rows(50);
    for (uint32_t i = 0; i < 50; ++i) rows[i] = i;
    auto train = [&](uint64_t seed) {
      std::vector<float> params(model.num_params());
      model.InitParams(params, 1);
      auto ws = model.MakeWorkspace();
      TrainConfig cfg;
      cfg.batch_size = 10;
      cfg.seed = seed;
      REQUIRE(Train(model, params, data, rows, cfg, *ws).ok());
      return params;
    };
    CHECK(train(3) == train(3));
    // Training applies the masks: the same seed without dropout trains other weights.
    const Sequential no_dropout = MakeSequential("dense(16) relu dropout(0) dense(3)", 6, 3);
    std::vector<float> params(no_dropout.num_params());
    no_dropout.InitParams(params, 1);
    auto ws = no_dropout.MakeWorkspace();
    TrainConfig cfg;
    cfg.batch_size = 10;
    cfg.seed = 3;
    REQUIRE(Train(no_dropout, params, data, rows, cfg, *ws).ok());
    CHECK(train(3) != params);
  }

  TEST_CASE("a layer list's FLOPs are the work its kernels do") {
    const Sequential model = MakeSequential(
        "input(8x8x2) maxpool(2) conv2d(3,3) relu conv2d(4,1) relu maxpool(2) dropout(0.25) dense(6) relu dense(3)",
        128, 3);
    const Batch b = RandomBatch(35, model.input_dim(), 3, 9);
    std::vector<float> params(model.num_params()), grad(model.num_params());
    model.InitParams(params, 1);
    auto ws = model.MakeWorkspace();
    model.LossAndGradient(params, b.view(), grad, *ws);
    const FlopCount f = model.flops_per_example();
    CHECK(Sequential::KernelFlops(*ws) == 35 * (f.forward + f.backward));
    std::vector<int32_t> predicted(35);
    model.Predict(params, b.view(), predicted, *ws);
    CHECK(Sequential::KernelFlops(*ws) == 35 * (2 * f.forward + f.backward));
    // By hand: conv 4x4 px * 3 * (3*3*2) = 864 MACs + 48 bias adds; conv 1x1: 4x4 * 4 * 3 = 192 + 64;
    // dense 2*2*4 = 16 * 6 = 96 + 6; dense 6 * 3 = 18 + 3. No input gradient for the first conv.
    CHECK(f.forward == 2 * (864 + 192 + 96 + 18) + (48 + 64 + 6 + 3));
    CHECK(f.backward == f.forward + 2 * (192 + 96 + 18));
  }
}

}  // namespace
}  // namespace frugal
