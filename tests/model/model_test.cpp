#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/model/model.h"

namespace frugal {
namespace {

// Synthetic inputs: gradient checks need tiny models and batches, which no
// real data set fits; values in [0,1) like scaled pixels.
struct Batch {
  std::vector<float> features;
  std::vector<int32_t> labels;
  BatchView view() const { return {features.data(), labels.data(), labels.size()}; }
};

Batch RandomBatch(size_t n, size_t dim, size_t classes, uint64_t seed) {
  Rng rng(seed);
  Batch b;
  b.features.resize(n * dim);
  for (float& f : b.features) f = rng.UniformFloat();
  for (size_t i = 0; i < n; ++i) b.labels.push_back(static_cast<int32_t>(rng.UniformInt(classes)));
  return b;
}

// Central difference d/dp_i of the mean loss, one coordinate at a time, with
// the loss accumulated in double by the model. h is small enough that no ReLU
// or max-pool decision flips in these seeded cases, large enough that float
// rounding of the forward pass (about 1e-7 of the loss) stays near 1e-4.
std::vector<double> NumericGradient(const Model& model, std::vector<float> params, const Batch& b, double h) {
  auto ws = model.MakeWorkspace();
  std::vector<double> g(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const float saved = params[i];
    params[i] = static_cast<float>(saved + h);
    const double up_step = static_cast<double>(params[i]) - saved;  // the step actually taken in float
    const double up = model.LossAndGradient(params, b.view(), {}, *ws);
    params[i] = static_cast<float>(saved - h);
    const double down_step = saved - static_cast<double>(params[i]);
    const double down = model.LossAndGradient(params, b.view(), {}, *ws);
    params[i] = saved;
    g[i] = (up - down) / (up_step + down_step);
  }
  return g;
}

// Largest coordinate error, each relative to the gradient's own scale:
// |num - ana| / (|num| + |ana| + 0.05 * max|ana|).
double MaxRelativeError(const std::vector<double>& num, const std::vector<float>& ana, size_t from, size_t to) {
  double scale = 0.0;
  for (float a : ana) scale = std::max(scale, std::abs(static_cast<double>(a)));
  double worst = 0.0;
  for (size_t i = from; i < to; ++i) {
    const double a = ana[i];
    worst = std::max(worst, std::abs(num[i] - a) / (std::abs(num[i]) + std::abs(a) + 0.05 * scale));
  }
  return worst;
}

struct Block {
  std::string name;
  size_t from, to;
};

// Checks every block (a layer's weights or bias) against finite differences,
// and that the same check rejects the analytic gradient with one entry of
// that block wrong by 5%: the tolerance is tight enough to catch a real bug.
void CheckGradient(const Model& model, const std::vector<Block>& blocks, size_t n, uint64_t seed) {
  constexpr double kTolerance = 5e-3;
  std::vector<float> params(model.num_params());
  model.InitParams(params, seed);
  // Non-zero biases so their gradients are exercised away from the init.
  Rng rng(seed + 1);
  for (const Block& blk : blocks) {
    if (blk.name.find("bias") != std::string::npos) {
      for (size_t i = blk.from; i < blk.to; ++i) params[i] = 0.2f * (rng.UniformFloat() - 0.5f);
    }
  }
  const Batch b = RandomBatch(n, model.input_dim(), model.num_classes(), seed + 2);
  auto ws = model.MakeWorkspace();
  std::vector<float> grad(model.num_params(), 123.0f);  // must be overwritten
  const double loss = model.LossAndGradient(params, b.view(), grad, *ws);
  CHECK(std::isfinite(loss));
  const std::vector<double> num = NumericGradient(model, params, b, 1e-3);
  for (const Block& blk : blocks) {
    CAPTURE(blk.name);
    const double err = MaxRelativeError(num, grad, blk.from, blk.to);
    INFO("max relative error ", err);
    CHECK(err < kTolerance);
    size_t biggest = blk.from;
    for (size_t i = blk.from; i < blk.to; ++i) {
      if (std::abs(grad[i]) > std::abs(grad[biggest])) biggest = i;
    }
    std::vector<float> wrong = grad;
    wrong[biggest] *= 1.05f;
    CHECK(MaxRelativeError(num, wrong, blk.from, blk.to) > kTolerance);
  }
}

TEST_SUITE("model") {
  TEST_CASE("Parameter counts of the named models match the literature") {
    auto logreg = MakeModel("logreg");
    auto mlp = MakeModel("mlp");
    auto nn2 = MakeModel("2nn");
    auto cnn = MakeModel("cnn");
    REQUIRE(logreg.ok());
    REQUIRE(mlp.ok());
    REQUIRE(nn2.ok());
    REQUIRE(cnn.ok());
    CHECK((*logreg)->num_params() == 7850);
    CHECK((*mlp)->num_params() == 199210);
    CHECK((*nn2)->num_params() == 199210);
    CHECK((*cnn)->num_params() == 1663370);
    CHECK((*logreg)->name() == "logreg");
    CHECK((*mlp)->name() == "mlp");
    CHECK((*cnn)->name() == "cnn");
    CHECK((*cnn)->input_dim() == 784);
    CHECK((*cnn)->num_classes() == 10);
  }

  TEST_CASE("FLOP counts equal a hand computation") {
    // logreg 784->10: forward = 2*7840 MACs + 10 bias adds; backward = weight grad + bias grad (no input grad).
    const FlopCount lr = (*MakeModel("logreg"))->flops_per_example();
    CHECK(lr.forward == 2.0 * 7840 + 10);
    CHECK(lr.backward == 2.0 * 7840 + 10);
    // mlp 784-200-200-10: MACs 156800 + 40000 + 2000; input grads only for layers 2 and 3.
    const FlopCount mlp = (*MakeModel("mlp"))->flops_per_example();
    CHECK(mlp.forward == 2.0 * 198800 + 410);
    CHECK(mlp.backward == 2.0 * 198800 + 2.0 * 42000 + 410);
    CHECK(mlp.forward == 398010);
    CHECK(mlp.backward == 482010);
    // cnn: conv1 28*28*32*25 = 627200 MACs, conv2 14*14*64*800 = 10035200, dense 3136*512 = 1605632, out 5120;
    // bias adds 25088 + 12544 + 512 + 10 = 38154.
    const FlopCount cnn = (*MakeModel("cnn"))->flops_per_example();
    CHECK(cnn.forward == 2.0 * (627200 + 10035200 + 1605632 + 5120) + 38154);
    CHECK(cnn.backward == 2.0 * (627200 + 10035200 + 1605632 + 5120) + 2.0 * (10035200 + 1605632 + 5120) + 38154);
    CHECK(cnn.forward == 24584458);
    CHECK(cnn.backward == 47876362);
  }

  TEST_CASE("MakeModel rejects unknown names and impossible sizes") {
    auto unknown = MakeModel("resnet");
    REQUIRE_FALSE(unknown.ok());
    CHECK(unknown.error().message().find("unknown model 'resnet'") != std::string::npos);
    auto cnn = MakeModel("cnn", 100);
    REQUIRE_FALSE(cnn.ok());
    CHECK(cnn.error().message().find("input_dim 100") != std::string::npos);
    CHECK_FALSE(MakeModel("mlp", 784, 1).ok());
    CHECK_FALSE(MakeModel("logreg", 0).ok());
    auto small = MakeModel("logreg", 5, 3);
    REQUIRE(small.ok());
    CHECK((*small)->num_params() == 18);
  }

  TEST_CASE("InitParams is deterministic, seed-dependent, bounded and leaves biases at zero") {
    Mlp mlp({20, 8, 3});
    std::vector<float> a(mlp.num_params()), b(mlp.num_params()), c(mlp.num_params());
    mlp.InitParams(a, 7);
    mlp.InitParams(b, 7);
    mlp.InitParams(c, 8);
    CHECK(a == b);
    CHECK(a != c);
    const float he = std::sqrt(6.0f / 20.0f), glorot = std::sqrt(6.0f / 11.0f);
    for (size_t i = 0; i < 160; ++i) CHECK(std::abs(a[i]) <= he);
    for (size_t i = 160; i < 168; ++i) CHECK(a[i] == 0.0f);
    for (size_t i = 168; i < 192; ++i) CHECK(std::abs(a[i]) <= glorot);
    for (size_t i = 192; i < 195; ++i) CHECK(a[i] == 0.0f);
  }

  TEST_CASE("Logistic regression gradient matches finite differences") {
    Mlp logreg({6, 4}, "logreg");
    CheckGradient(logreg, {{"weights", 0, 24}, {"bias", 24, 28}}, 5, 11);
  }

  TEST_CASE("MLP gradient matches finite differences in every layer") {
    Mlp mlp({5, 7, 6, 3});
    REQUIRE(mlp.num_params() == 42 + 48 + 21);
    CheckGradient(mlp,
                  {{"dense1 weights", 0, 35},
                   {"dense1 bias", 35, 42},
                   {"dense2 weights", 42, 84},
                   {"dense2 bias", 84, 90},
                   {"dense3 weights", 90, 108},
                   {"dense3 bias", 108, 111}},
                  6, 21);
  }

  TEST_CASE("MLP input gradient matches finite differences of its loss, with the argmax beside it") {
    Mlp m({5, 7, 6, 3});
    std::vector<float> w(m.num_params());
    m.InitParams(w, 11);
    Rng rng(12);
    std::vector<float> x(10);
    for (float& v : x) v = static_cast<float>(rng.Normal());
    const std::vector<int32_t> y = {2, 0};
    std::vector<float> dx(10);
    std::vector<int32_t> argmax(2, -1), predicted(2, -1);
    auto ws = m.MakeWorkspace();
    const double loss = m.InputGradient(w, BatchView{x.data(), y.data(), 2}, dx, argmax, *ws);
    auto loss_at = [&](const std::vector<float>& in) {
      return m.LossAndGradient(w, BatchView{in.data(), y.data(), 2}, {}, *ws);
    };
    CHECK(loss == doctest::Approx(loss_at(x)).epsilon(1e-5));
    m.Predict(w, BatchView{x.data(), y.data(), 2}, predicted, *ws);
    CHECK(argmax == predicted);
    for (size_t j = 0; j < x.size(); ++j) {
      std::vector<float> hi = x, lo = x;
      hi[j] += 1e-3f;
      lo[j] -= 1e-3f;
      CHECK(dx[j] == doctest::Approx((loss_at(hi) - loss_at(lo)) / 2e-3).epsilon(2e-2).scale(1e-3));
    }
  }

  TEST_CASE("CNN gradient matches finite differences in every layer") {
    // 7x6 images with 2 channels: odd height exercises the pool's dropped row.
    CnnConfig cfg{.height = 7, .width = 6, .channels = 2, .kernel = 3, .conv1_channels = 3, .conv2_channels = 4,
                  .dense_units = 5, .num_classes = 3};
    Cnn cnn(cfg, "cnn-small");
    // conv1 3x18+3, conv2 4x27+4, flat = 1*1*4, dense 5x4+5, out 3x5+3.
    REQUIRE(cnn.num_params() == 57 + 112 + 25 + 18);
    CHECK(cnn.input_dim() == 84);
    CheckGradient(cnn,
                  {{"conv1 weights", 0, 54},
                   {"conv1 bias", 54, 57},
                   {"conv2 weights", 57, 165},
                   {"conv2 bias", 165, 169},
                   {"dense1 weights", 169, 189},
                   {"dense1 bias", 189, 194},
                   {"dense2 weights", 194, 209},
                   {"dense2 bias", 209, 212}},
                  4, 31);
  }

  TEST_CASE("CNN gradient of a batch larger than its internal chunk is the weighted mean of the parts") {
    CnnConfig cfg{.height = 8, .width = 8, .channels = 1, .kernel = 3, .conv1_channels = 2, .conv2_channels = 3,
                  .dense_units = 4, .num_classes = 3};
    Cnn cnn(cfg);
    std::vector<float> params(cnn.num_params());
    cnn.InitParams(params, 3);
    const Batch all = RandomBatch(40, cnn.input_dim(), 3, 4);
    Batch head, tail;
    head.features.assign(all.features.begin(), all.features.begin() + 32 * 64);
    head.labels.assign(all.labels.begin(), all.labels.begin() + 32);
    tail.features.assign(all.features.begin() + 32 * 64, all.features.end());
    tail.labels.assign(all.labels.begin() + 32, all.labels.end());
    auto ws = cnn.MakeWorkspace();
    std::vector<float> g_all(params.size()), g_head(params.size()), g_tail(params.size());
    const double l_all = cnn.LossAndGradient(params, all.view(), g_all, *ws);
    const double l_head = cnn.LossAndGradient(params, head.view(), g_head, *ws);
    const double l_tail = cnn.LossAndGradient(params, tail.view(), g_tail, *ws);
    CHECK(l_all == doctest::Approx((32 * l_head + 8 * l_tail) / 40).epsilon(1e-6));
    for (size_t i = 0; i < params.size(); ++i) {
      CHECK(g_all[i] == doctest::Approx((32.0 * g_head[i] + 8.0 * g_tail[i]) / 40.0).epsilon(1e-4).scale(1e-3));
    }
  }

  TEST_CASE("Narrow dense layers (the small-output kernels) match a plain double-precision loop") {
    // Shapes around the kernels' register blocks: inputs not a multiple of
    // the vector width, outputs not a multiple of the output block, odd
    // batches, and the widest layer the kernels take (16 outputs).
    struct Shape {
      size_t d, c, n;
    };
    for (const Shape& sh : {Shape{784, 10, 32}, Shape{784, 10, 7}, Shape{13, 3, 5}, Shape{1, 2, 1}, Shape{37, 16, 9},
                            Shape{24, 7, 2}, Shape{200, 11, 16}, Shape{5, 4, 3}}) {
      CAPTURE(sh.d);
      CAPTURE(sh.c);
      CAPTURE(sh.n);
      Mlp m({sh.d, sh.c}, "logreg");
      std::vector<float> params(m.num_params());
      m.InitParams(params, 3);
      Rng rng(4);
      for (size_t o = 0; o < sh.c; ++o) params[sh.c * sh.d + o] = 0.1f * rng.UniformFloat();
      const Batch b = RandomBatch(sh.n, sh.d, sh.c, 5 + sh.d);
      auto ws = m.MakeWorkspace();
      std::vector<float> grad(m.num_params());
      const double loss = m.LossAndGradient(params, b.view(), grad, *ws);
      std::vector<int32_t> pred(sh.n);
      const double loss_sum = m.Predict(params, b.view(), pred, *ws);
      // Reference: logits, softmax, loss and gradient in double, one loop each.
      std::vector<double> ref_grad(m.num_params(), 0.0);
      double ref_loss = 0.0;
      for (size_t e = 0; e < sh.n; ++e) {
        std::vector<double> z(sh.c);
        for (size_t o = 0; o < sh.c; ++o) {
          double s = params[sh.c * sh.d + o];
          for (size_t k = 0; k < sh.d; ++k) s += static_cast<double>(params[o * sh.d + k]) * b.features[e * sh.d + k];
          z[o] = s;
        }
        const size_t best = static_cast<size_t>(std::max_element(z.begin(), z.end()) - z.begin());
        CHECK(pred[e] == static_cast<int32_t>(best));
        double norm = 0.0;
        for (double v : z) norm += std::exp(v - z[best]);
        const auto y = static_cast<size_t>(b.labels[e]);
        ref_loss += std::log(norm) - (z[y] - z[best]);
        for (size_t o = 0; o < sh.c; ++o) {
          const double dz = (std::exp(z[o] - z[best]) / norm - (o == y ? 1.0 : 0.0)) / static_cast<double>(sh.n);
          for (size_t k = 0; k < sh.d; ++k) ref_grad[o * sh.d + k] += dz * b.features[e * sh.d + k];
          ref_grad[sh.c * sh.d + o] += dz;
        }
      }
      CHECK(loss == doctest::Approx(ref_loss / static_cast<double>(sh.n)).epsilon(1e-5));
      CHECK(loss_sum == doctest::Approx(ref_loss).epsilon(1e-5));
      double worst = 0.0;
      for (size_t i = 0; i < grad.size(); ++i) worst = std::max(worst, std::abs(grad[i] - ref_grad[i]));
      CHECK(worst < 1e-5);
    }
  }

  TEST_CASE("SgdStep equals LossAndGradient followed by the update, for every model") {
    Mlp logreg({13, 10}, "logreg");
    Mlp mlp({13, 24, 17, 5});
    Cnn cnn(CnnConfig{.height = 4, .width = 4, .channels = 1, .kernel = 3, .conv1_channels = 2,
                      .conv2_channels = 2, .dense_units = 3, .num_classes = 4});
    for (const Model* m : {static_cast<const Model*>(&logreg), static_cast<const Model*>(&mlp),
                           static_cast<const Model*>(&cnn)}) {
      for (size_t n : {3u, 16u, 21u}) {
        CAPTURE(m->name());
        CAPTURE(n);
        std::vector<float> params(m->num_params());
        m->InitParams(params, 12);
        const Batch b = RandomBatch(n, m->input_dim(), m->num_classes(), 13);
        auto ws = m->MakeWorkspace();
        std::vector<float> grad(m->num_params());
        const double loss_ref = m->LossAndGradient(params, b.view(), grad, *ws);
        std::vector<float> expect = params;
        for (size_t i = 0; i < expect.size(); ++i) expect[i] -= 0.5f * grad[i];
        const double loss = m->SgdStep(params, b.view(), 0.5f, *ws);
        CHECK(loss == doctest::Approx(loss_ref).epsilon(1e-12));
        double worst = 0.0;
        for (size_t i = 0; i < params.size(); ++i) worst = std::max(worst, std::abs(double{params[i]} - expect[i]));
        CHECK(worst < 1e-6);
      }
    }
  }

  TEST_CASE("Gradients are bit-identical wherever the caller's gradient buffer lives") {
    // The models add into the caller's buffer; a reduction that vectorises by
    // the destination's address would round differently at each of these shifts.
    Mlp mlp({13, 40, 24, 5});
    Cnn cnn(CnnConfig{.height = 8, .width = 8, .channels = 1, .kernel = 3, .conv1_channels = 4,
                      .conv2_channels = 8, .dense_units = 20, .num_classes = 10});
    for (const Model* m : {static_cast<const Model*>(&mlp), static_cast<const Model*>(&cnn)}) {
      CAPTURE(m->name());
      std::vector<float> params(m->num_params());
      m->InitParams(params, 3);
      const Batch b = RandomBatch(21, m->input_dim(), m->num_classes(), 4);
      auto ws = m->MakeWorkspace();
      std::vector<float> ref(m->num_params(), 0.25f);
      m->LossAndGradient(params, b.view(), ref, *ws);
      for (size_t shift = 1; shift < 8; ++shift) {
        CAPTURE(shift);
        std::vector<float> buf(m->num_params() + shift, 0.25f);
        m->LossAndGradient(params, b.view(), std::span<float>(buf).subspan(shift), *ws);
        CHECK(std::memcmp(ref.data(), buf.data() + shift, ref.size() * sizeof(float)) == 0);
      }
    }
  }

  TEST_CASE("An example's loss does not depend on the batch it is evaluated in") {
    Mlp m({29, 10}, "logreg");
    std::vector<float> params(m.num_params());
    m.InitParams(params, 8);
    const Batch b = RandomBatch(23, 29, 10, 9);
    auto ws = m.MakeWorkspace();
    std::vector<int32_t> pred(23);
    const double whole = m.Predict(params, b.view(), pred, *ws);
    for (size_t bs : {1u, 2u, 5u, 16u}) {
      double parts = 0.0;
      for (size_t s = 0; s < 23; s += bs) {
        const size_t k = std::min<size_t>(bs, 23 - s);
        parts += m.Predict(params, BatchView{b.features.data() + s * 29, b.labels.data() + s, k}, pred, *ws);
      }
      CAPTURE(bs);
      CHECK(parts == doctest::Approx(whole).epsilon(1e-12));
    }
  }

  TEST_CASE("Predict returns the summed loss and the argmax class") {
    Mlp mlp({6, 5, 4});
    Cnn cnn(CnnConfig{.height = 4, .width = 4, .channels = 1, .kernel = 3, .conv1_channels = 2,
                      .conv2_channels = 2, .dense_units = 3, .num_classes = 4});
    for (const Model* m : {static_cast<const Model*>(&mlp), static_cast<const Model*>(&cnn)}) {
      CAPTURE(m->name());
      std::vector<float> params(m->num_params());
      m->InitParams(params, 5);
      const Batch b = RandomBatch(37, m->input_dim(), m->num_classes(), 6);
      auto ws = m->MakeWorkspace();
      std::vector<int32_t> pred(37, -1);
      const double sum = m->Predict(params, b.view(), pred, *ws);
      const double mean = m->LossAndGradient(params, b.view(), {}, *ws);
      CHECK(sum == doctest::Approx(mean * 37).epsilon(1e-9));
      // Argmax of a one-example forward pass agrees with the batched one.
      for (size_t i = 0; i < 37; ++i) {
        CHECK(pred[i] >= 0);
        CHECK(pred[i] < static_cast<int32_t>(m->num_classes()));
        // Whichever class is predicted must have the lowest single-example loss.
        double best = 1e300;
        int32_t best_class = -1;
        for (int32_t c = 0; c < static_cast<int32_t>(m->num_classes()); ++c) {
          const BatchView one{b.features.data() + i * m->input_dim(), &c, 1};
          const double l = m->LossAndGradient(params, one, {}, *ws);
          if (l < best) {
            best = l;
            best_class = c;
          }
        }
        CHECK(pred[i] == best_class);
      }
    }
  }
}

}  // namespace
}  // namespace frugal
