#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/model/model.h"
#include "frugal/train/trainer.h"

namespace frugal {
namespace {

// Synthetic data: these tests check the optimizer's arithmetic and contracts
// on a tiny model, where a hand-written reference loop is cheap; the learnable
// structure (label = argmax of a fixed linear map) makes training reduce the loss.
Dataset Synthetic(size_t n, size_t dim, size_t classes, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> w(dim * classes);
  for (float& v : w) v = static_cast<float>(rng.Normal());
  Dataset ds;
  ds.num_features = dim;
  ds.num_classes = classes;
  for (size_t i = 0; i < n; ++i) {
    std::vector<float> x(dim);
    for (float& v : x) v = rng.UniformFloat();
    size_t best = 0;
    float best_score = -1e30f;
    for (size_t c = 0; c < classes; ++c) {
      float s = 0;
      for (size_t j = 0; j < dim; ++j) s += w[c * dim + j] * (x[j] - 0.5f);
      if (s > best_score) {
        best_score = s;
        best = c;
      }
    }
    ds.features.insert(ds.features.end(), x.begin(), x.end());
    ds.labels.push_back(static_cast<int32_t>(best));
  }
  return ds;
}

std::vector<uint32_t> AllRows(const Dataset& ds) {
  std::vector<uint32_t> idx(ds.size());
  std::iota(idx.begin(), idx.end(), 0u);
  return idx;
}

double Distance(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return std::sqrt(s);
}

TEST_SUITE("train") {
  TEST_CASE("Training is bit-identical for the same seed and differs for another") {
    const Dataset ds = Synthetic(200, 12, 4, 1);
    Mlp mlp({12, 16, 4});
    auto ws = mlp.MakeWorkspace();
    std::vector<float> init(mlp.num_params());
    mlp.InitParams(init, 2);
    TrainConfig cfg{.epochs = 3, .batch_size = 16, .learning_rate = 0.1f, .momentum = 0.9f, .seed = 5};
    const auto idx = AllRows(ds);
    std::vector<float> a = init, b = init, c = init;
    REQUIRE(Train(mlp, a, ds, idx, cfg, *ws).ok());
    auto other_ws = mlp.MakeWorkspace();  // a fresh workspace must not change the result either
    REQUIRE(Train(mlp, b, ds, idx, cfg, *other_ws).ok());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    // Nor must where the parameters live: here one float past an allocation's start.
    std::vector<float> shifted(init.size() + 1);
    std::copy(init.begin(), init.end(), shifted.begin() + 1);
    REQUIRE(Train(mlp, std::span<float>(shifted).subspan(1), ds, idx, cfg, *ws).ok());
    CHECK(std::memcmp(a.data(), shifted.data() + 1, a.size() * sizeof(float)) == 0);
    cfg.seed = 6;
    REQUIRE(Train(mlp, c, ds, idx, cfg, *ws).ok());
    CHECK(a != c);
  }

  TEST_CASE("Plain SGD is bit-identical wherever the parameters live and whatever the workspace ran before") {
    // The fused step writes into the caller's parameters: its result must not
    // depend on their address (threads hold different buffers) or on what the
    // workspace computed for an earlier client. Hidden layers wider than 16 and
    // batches above 16 take the GEMM path, the last batch of 13 the small kernels.
    const Dataset ds = Synthetic(77, 12, 4, 3);
    Mlp mlp({12, 40, 24, 4});
    std::vector<float> init(mlp.num_params());
    mlp.InitParams(init, 4);
    const TrainConfig cfg{.epochs = 2, .batch_size = 32, .learning_rate = 0.1f, .seed = 8};
    const auto idx = AllRows(ds);
    std::vector<float> ref = init;
    auto fresh = mlp.MakeWorkspace();
    REQUIRE(Train(mlp, ref, ds, idx, cfg, *fresh).ok());
    auto used = mlp.MakeWorkspace();
    std::vector<float> other = init;
    const std::vector<uint32_t> other_rows = {5, 9, 11, 60, 61, 62, 70};
    REQUIRE(Train(mlp, other, ds, other_rows, cfg, *used).ok());
    for (size_t shift = 0; shift < 8; ++shift) {
      CAPTURE(shift);
      std::vector<float> buf(init.size() + shift);
      std::copy(init.begin(), init.end(), buf.begin() + static_cast<std::ptrdiff_t>(shift));
      REQUIRE(Train(mlp, std::span<float>(buf).subspan(shift), ds, idx, cfg, *used).ok());
      CHECK(std::memcmp(ref.data(), buf.data() + shift, ref.size() * sizeof(float)) == 0);
    }
  }

  TEST_CASE("Momentum, weight decay and FedProx match a plain reference loop") {
    const Dataset ds = Synthetic(23, 5, 3, 3);
    Mlp logreg({5, 3}, "logreg");
    auto ws = logreg.MakeWorkspace();
    std::vector<float> params(logreg.num_params());
    logreg.InitParams(params, 4);
    const std::vector<float> w0 = params;
    const TrainConfig cfg{.epochs = 3, .batch_size = 4, .learning_rate = 0.2f, .momentum = 0.8f, .prox_mu = 0.3f,
                          .weight_decay = 0.01f, .seed = 9};
    const std::vector<uint32_t> idx = {0, 2, 3, 5, 7, 8, 9, 10, 12, 15, 17, 18, 20, 22};  // 14 rows: batches 4,4,4,2

    // Reference: the documented algorithm written out with a per-example gradient.
    const size_t p = w0.size();
    std::vector<double> w(p), v(p), g(p);
    std::copy(w0.begin(), w0.end(), w.begin());
    auto ref_ws = logreg.MakeWorkspace();
    std::vector<uint32_t> order = idx;
    for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
      Rng rng(DeriveSeed(cfg.seed, static_cast<uint64_t>(epoch)));
      rng.Shuffle(std::span<uint32_t>(order));
      for (size_t s = 0; s < order.size(); s += 4) {
        const size_t m = std::min<size_t>(4, order.size() - s);
        std::fill(g.begin(), g.end(), 0.0);
        std::vector<float> wf(w.begin(), w.end()), gi(p);
        for (size_t k = 0; k < m; ++k) {
          const uint32_t r = order[s + k];
          logreg.LossAndGradient(wf, BatchView{ds.row(r), &ds.labels[r], 1}, gi, *ref_ws);
          for (size_t j = 0; j < p; ++j) g[j] += gi[j] / static_cast<double>(m);
        }
        for (size_t j = 0; j < p; ++j) {
          const double gj = g[j] + cfg.weight_decay * w[j] + cfg.prox_mu * (w[j] - w0[j]);
          v[j] = cfg.momentum * v[j] + gj;
          w[j] -= cfg.learning_rate * v[j];
        }
      }
    }
    auto stats = Train(logreg, params, ds, idx, cfg, *ws);
    REQUIRE(stats.ok());
    CHECK(stats->steps == 12);
    CHECK(stats->examples == 42);
    for (size_t j = 0; j < p; ++j) CHECK(params[j] == doctest::Approx(w[j]).epsilon(1e-4).scale(1e-4));
  }

  TEST_CASE("Plain SGD (the models' fused step) matches a plain reference loop, logreg and MLP") {
    const Dataset ds = Synthetic(41, 7, 3, 21);
    const std::vector<uint32_t> idx = AllRows(ds);
    Mlp logreg({7, 3}, "logreg");
    Mlp mlp({7, 20, 3}, "mlp");  // a hidden layer wider than the small-layer kernels take
    for (const Mlp* m : {&logreg, &mlp}) {
      CAPTURE(m->name());
      for (int batch : {4, 32}) {
        CAPTURE(batch);
        std::vector<float> params(m->num_params());
        m->InitParams(params, 4);
        const TrainConfig cfg{.epochs = 2, .batch_size = batch, .learning_rate = 0.3f, .seed = 5};
        // Reference: gradient of each batch from LossAndGradient, then w -= lr * g in double.
        std::vector<double> w(params.begin(), params.end());
        std::vector<uint32_t> order = idx;
        auto ref_ws = m->MakeWorkspace();
        for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
          Rng rng(DeriveSeed(cfg.seed, static_cast<uint64_t>(epoch)));
          rng.Shuffle(std::span<uint32_t>(order));
          for (size_t s = 0; s < order.size(); s += static_cast<size_t>(batch)) {
            const size_t k = std::min<size_t>(static_cast<size_t>(batch), order.size() - s);
            std::vector<float> x, wf(w.begin(), w.end()), g(w.size());
            std::vector<int32_t> y;
            for (size_t i = 0; i < k; ++i) {
              x.insert(x.end(), ds.row(order[s + i]), ds.row(order[s + i]) + ds.num_features);
              y.push_back(ds.labels[order[s + i]]);
            }
            m->LossAndGradient(wf, BatchView{x.data(), y.data(), k}, g, *ref_ws);
            for (size_t j = 0; j < w.size(); ++j) w[j] -= cfg.learning_rate * g[j];
          }
        }
        auto ws = m->MakeWorkspace();
        REQUIRE(Train(*m, params, ds, idx, cfg, *ws).ok());
        for (size_t j = 0; j < w.size(); ++j) CHECK(params[j] == doctest::Approx(w[j]).epsilon(1e-4).scale(1e-4));
      }
    }
  }

  TEST_CASE("SgdStep leaves the parameters unchanged when the loss is not finite") {
    Dataset ds = Synthetic(8, 4, 3, 23);
    Mlp mlp({4, 20, 3});
    auto ws = mlp.MakeWorkspace();
    std::vector<float> params(mlp.num_params());
    mlp.InitParams(params, 2);
    ds.features[5] = INFINITY;
    const std::vector<float> before = params;
    const double loss = mlp.SgdStep(params, BatchView{ds.features.data(), ds.labels.data(), 8}, 0.1f, *ws);
    CHECK_FALSE(std::isfinite(loss));
    CHECK(params == before);
  }

  TEST_CASE("A large FedProx mu keeps the weights closer to where they started") {
    const Dataset ds = Synthetic(300, 10, 4, 7);
    Mlp mlp({10, 8, 4});
    auto ws = mlp.MakeWorkspace();
    std::vector<float> w0(mlp.num_params());
    mlp.InitParams(w0, 1);
    const auto idx = AllRows(ds);
    std::vector<float> plain = w0, prox = w0;
    TrainConfig cfg{.epochs = 5, .batch_size = 10, .learning_rate = 0.1f, .seed = 3};
    REQUIRE(Train(mlp, plain, ds, idx, cfg, *ws).ok());
    cfg.prox_mu = 5.0f;
    REQUIRE(Train(mlp, prox, ds, idx, cfg, *ws).ok());
    INFO("distance without prox ", Distance(plain, w0), ", with mu=5 ", Distance(prox, w0));
    CHECK(Distance(prox, w0) < 0.5 * Distance(plain, w0));
  }

  TEST_CASE("Training lowers the loss and reports exact example, step and FLOP counts") {
    const Dataset ds = Synthetic(100, 8, 3, 11);
    Mlp mlp({8, 6, 3});
    auto ws = mlp.MakeWorkspace();
    std::vector<float> params(mlp.num_params());
    mlp.InitParams(params, 2);
    const std::vector<uint32_t> idx = {1, 4, 9, 16, 25, 36, 49, 64, 81};
    auto before = Evaluate(mlp, params, ds, idx, *ws);
    REQUIRE(before.ok());
    auto stats = Train(mlp, params, ds, idx, TrainConfig{.epochs = 20, .batch_size = 4, .learning_rate = 0.5f}, *ws);
    REQUIRE(stats.ok());
    CHECK(stats->examples == 180);
    CHECK(stats->steps == 60);  // 3 batches (4, 4, 1) per epoch
    const FlopCount f = mlp.flops_per_example();
    CHECK(stats->flops == (f.forward + f.backward) * 180);
    auto after = Evaluate(mlp, params, ds, idx, *ws, 2);
    REQUIRE(after.ok());
    CHECK(after->loss < before->loss);
    CHECK(after->examples == 9);
    CHECK(after->flops == f.forward * 9);
    CHECK(after->accuracy >= 0.0);
    CHECK(after->accuracy <= 1.0);
  }

  TEST_CASE("Evaluate over all rows equals Evaluate over the explicit index list") {
    const Dataset ds = Synthetic(57, 6, 3, 13);
    Mlp mlp({6, 3});
    auto ws = mlp.MakeWorkspace();
    std::vector<float> params(mlp.num_params());
    mlp.InitParams(params, 1);
    auto all = Evaluate(mlp, params, ds, {}, *ws, 10);
    auto listed = Evaluate(mlp, params, ds, AllRows(ds), *ws, 7);
    REQUIRE(all.ok());
    REQUIRE(listed.ok());
    CHECK(all->examples == 57);
    CHECK(all->accuracy == listed->accuracy);
    CHECK(all->loss == doctest::Approx(listed->loss).epsilon(1e-9));
  }

  TEST_CASE("Train and Evaluate reject bad input with a clear error") {
    Dataset ds = Synthetic(10, 4, 3, 17);
    Mlp mlp({4, 3});
    auto ws = mlp.MakeWorkspace();
    std::vector<float> params(mlp.num_params());
    mlp.InitParams(params, 1);
    const std::vector<uint32_t> idx = {0, 1, 2};
    auto message = [](const auto& r) { return r.ok() ? std::string("ok") : r.error().message(); };

    auto empty = Train(mlp, params, ds, {}, TrainConfig{}, *ws);
    CHECK(message(empty).find("indices is empty") != std::string::npos);
    const std::vector<uint32_t> far = {0, 10};
    auto out_of_range = Train(mlp, params, ds, far, TrainConfig{}, *ws);
    CHECK(message(out_of_range).find("example index 10 out of range") != std::string::npos);
    CHECK(message(Evaluate(mlp, params, ds, far, *ws)).find("example index 10 out of range") != std::string::npos);
    std::vector<float> short_params(5);
    CHECK(message(Train(mlp, short_params, ds, idx, TrainConfig{}, *ws)).find("params has 5 values") !=
          std::string::npos);
    Mlp wide({5, 3});
    std::vector<float> wide_params(wide.num_params());
    auto wide_ws = wide.MakeWorkspace();
    CHECK(message(Train(wide, wide_params, ds, idx, TrainConfig{}, *wide_ws)).find("data has 4 features") !=
          std::string::npos);
    CHECK(message(Train(mlp, params, ds, idx, TrainConfig{.batch_size = 0}, *ws)).find("batch_size") !=
          std::string::npos);
    CHECK(message(Train(mlp, params, ds, idx, TrainConfig{.learning_rate = NAN}, *ws)).find("finite") !=
          std::string::npos);

    Dataset bad_label = ds;
    bad_label.labels[1] = 7;
    CHECK(message(Train(mlp, params, bad_label, idx, TrainConfig{}, *ws)).find("label 7 of example 1") !=
          std::string::npos);
    CHECK(message(Evaluate(mlp, params, bad_label, {}, *ws)).find("label 7 of example 1") != std::string::npos);

    // A NaN in the data makes the loss non-finite; training stops with an error instead of spreading NaN.
    Dataset nan_data = ds;
    nan_data.features[4 * 2 + 1] = NAN;
    const std::vector<float> before = params;
    auto nan_result = Train(mlp, params, nan_data, std::vector<uint32_t>{2}, TrainConfig{}, *ws);
    CHECK(message(nan_result).find("non-finite training loss") != std::string::npos);
    CHECK(params == before);  // the failing step was not applied
  }
}

}  // namespace
}  // namespace frugal
