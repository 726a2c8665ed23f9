#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "frugal/aggregate/fedavg.h"
#include "frugal/core/random.h"
#include "round_test_util.h"

namespace frugal {
namespace {

using round_test::RandomVector;

bool SameBits(std::span<const float> a, std::span<const float> b) {
  // memcmp with an empty span's null data() is undefined (UBSan reports it).
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), 4 * a.size()) == 0);
}

ServerOptimizerConfig Adaptive(ServerOptimizerKind kind, float learning_rate) {
  ServerOptimizerConfig cfg;
  cfg.kind = kind;
  cfg.learning_rate = learning_rate;
  return cfg;
}

// Algorithm 2 of Reddi et al. (ICLR 2021) for one coordinate, in double, written
// from the paper: Delta is the mean model delta, the step is added to the model.
struct ScalarReference {
  ServerOptimizerKind kind;
  double lr, beta1, beta2, tau;
  double m = 0;
  double v = tau * tau;  // v_{-1} = tau^2

  double Step(double delta) {
    m = beta1 * m + (1 - beta1) * delta;
    const double d2 = delta * delta;
    if (kind == ServerOptimizerKind::kAdagrad) {
      v = v + d2;
    } else if (kind == ServerOptimizerKind::kAdam) {
      v = beta2 * v + (1 - beta2) * d2;
    } else {
      const double sign = v > d2 ? 1.0 : (v < d2 ? -1.0 : 0.0);
      v = v - (1 - beta2) * d2 * sign;
    }
    return lr * m / (std::sqrt(v) + tau);
  }
};

constexpr ServerOptimizerKind kAdaptiveKinds[] = {
    ServerOptimizerKind::kAdam, ServerOptimizerKind::kYogi, ServerOptimizerKind::kAdagrad};

TEST_SUITE("round") {
  TEST_CASE(
      "server optimizer names parse and print back; an unknown one names itself and the known "
      "ones") {
    for (ServerOptimizerKind k : {ServerOptimizerKind::kSgd, ServerOptimizerKind::kAdam,
                                  ServerOptimizerKind::kYogi, ServerOptimizerKind::kAdagrad}) {
      auto parsed = ParseServerOptimizer(ServerOptimizerName(k));
      REQUIRE(parsed.ok());
      CHECK(*parsed == k);
    }
    CHECK(ServerOptimizerName(ServerOptimizerKind::kYogi) == "yogi");
    for (const char* bad : {"adamw", "", "Adam"}) {
      auto r = ParseServerOptimizer(bad);
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code() == ErrorCode::kInvalidArgument);
      const std::string msg = r.error().message();
      std::string quoted =
          "'";  // built by appends: GCC 12 warns (-Wrestrict) on "'" + std::string(...)
      quoted.append(bad).append("'");
      CHECK(msg.find(quoted) != std::string::npos);
      CHECK(msg.find("sgd, adam, yogi, adagrad") != std::string::npos);
    }
  }

  TEST_CASE("the default configuration is plain FedAvg with the paper's adaptive defaults") {
    const ServerOptimizerConfig cfg;
    CHECK(cfg.kind == ServerOptimizerKind::kSgd);
    CHECK(cfg.learning_rate == 1.0f);
    CHECK(cfg.momentum == 0.0f);
    CHECK(cfg.beta1 == 0.9f);
    CHECK(cfg.beta2 == 0.99f);
    CHECK(cfg.tau == 1e-3f);
    CHECK(CheckServerOptimizerConfig(cfg).ok());
    for (ServerOptimizerKind k : kAdaptiveKinds)
      CHECK(CheckServerOptimizerConfig(Adaptive(k, 0.1f)).ok());
  }

  TEST_CASE("configurations that make no sense are rejected") {
    ServerOptimizerConfig cfg = Adaptive(ServerOptimizerKind::kAdam, 0.1f);
    cfg.beta1 = 1.0f;
    CHECK_FALSE(CheckServerOptimizerConfig(cfg).ok());
    cfg = Adaptive(ServerOptimizerKind::kYogi, 0.1f);
    cfg.beta2 = -0.1f;
    CHECK_FALSE(CheckServerOptimizerConfig(cfg).ok());
    cfg = Adaptive(ServerOptimizerKind::kAdagrad, 0.1f);
    cfg.tau = 0.0f;
    CHECK_FALSE(CheckServerOptimizerConfig(cfg).ok());
    cfg = Adaptive(ServerOptimizerKind::kAdam, std::numeric_limits<float>::quiet_NaN());
    CHECK_FALSE(CheckServerOptimizerConfig(cfg).ok());
    cfg = ServerOptimizerConfig{};
    cfg.momentum = 1.0f;
    CHECK_FALSE(CheckServerOptimizerConfig(cfg).ok());
    // SGD does not look at the adaptive fields.
    cfg = ServerOptimizerConfig{};
    cfg.tau = 0.0f;
    CHECK(CheckServerOptimizerConfig(cfg).ok());
  }

  TEST_CASE("plain server SGD scales the average by the learning rate and keeps no state") {
    const auto avg = RandomVector(33, 5);
    ServerOptimizer fedavg(avg.size(), {});
    CHECK(fedavg.state_size() == 0);
    std::vector<float> g = avg;
    REQUIRE(fedavg.Step(g).ok());
    CHECK(SameBits(g, avg));
    ServerOptimizer scaled(avg.size(), {.learning_rate = 0.5f});
    CHECK(scaled.state_size() == 0);
    g = avg;
    REQUIRE(scaled.Step(g).ok());
    for (size_t j = 0; j < avg.size(); ++j) CHECK(g[j] == 0.5f * avg[j]);
  }

  TEST_CASE("server momentum follows v = m*v + avg, step = lr*v") {
    ServerOptimizer opt(2, {.learning_rate = 0.5f, .momentum = 0.9f});
    std::vector<float> g{1.0f, -2.0f};
    REQUIRE(opt.Step(g).ok());
    CHECK(g[0] == doctest::Approx(0.5));
    std::vector<float> g2{1.0f, 0.0f};
    REQUIRE(opt.Step(g2).ok());
    CHECK(g2[0] == doctest::Approx(0.5 * (0.9 * 1.0 + 1.0)));
    CHECK(g2[1] == doctest::Approx(0.5 * (0.9 * -2.0)));
  }

  TEST_CASE("server SGD with momentum is bit-identical to the FedAvgM formula in float") {
    const size_t d = 257;
    const float lr = 0.7f, mom = 0.9f;
    ServerOptimizer opt(d, {.learning_rate = lr, .momentum = mom});
    REQUIRE(opt.state_size() == d);
    std::vector<float> vel(d, 0.0f);
    for (uint64_t t = 0; t < 6; ++t) {
      std::vector<float> g = RandomVector(d, 100 + t, 0.3f);
      std::vector<float> want = g;
      for (size_t j = 0; j < d; ++j) {
        vel[j] = mom * vel[j] + want[j];
        want[j] = lr * vel[j];
      }
      REQUIRE(opt.Step(g).ok());
      CHECK(SameBits(g, want));
      CHECK(SameBits(opt.state(), vel));
    }
  }

  TEST_CASE("adaptive optimizers start from m = 0 and v = tau^2") {
    for (ServerOptimizerKind k : kAdaptiveKinds) {
      CAPTURE(ServerOptimizerName(k));
      ServerOptimizerConfig cfg = Adaptive(k, 0.1f);
      cfg.tau = 0.01f;
      ServerOptimizer opt(3, cfg);
      REQUIRE(opt.state_size() == 6);
      for (size_t j = 0; j < 3; ++j) {
        CHECK(opt.state()[j] == 0.0f);
        CHECK(opt.state()[3 + j] == 0.01f * 0.01f);
      }
    }
  }

  TEST_CASE(
      "FedAdam, FedYogi and FedAdagrad match a scalar reference of Reddi et al.'s Algorithm 2") {
    // Per coordinate, hand-picked deltas: a large one then small ones (Yogi's v
    // grows, then shrinks), sign changes, zeros, and a sudden large delta late.
    const std::vector<std::vector<float>> deltas = {
        {1.0f, 0.01f, -0.5f, 0.0f, 0.02f},
        {-0.2f, -0.2f, 0.3f, 2.0f, -0.05f},
        {0.0f, 0.0f, 1e-3f, -1e-3f, 0.0f},
        {0.05f, -0.05f, 0.05f, -0.05f, 0.05f},
    };
    const size_t d = deltas.size(), steps = deltas[0].size();
    for (ServerOptimizerKind k : kAdaptiveKinds) {
      for (float lr : {0.1f, 0.03f}) {
        CAPTURE(ServerOptimizerName(k));
        CAPTURE(lr);
        const ServerOptimizerConfig cfg = Adaptive(k, lr);
        ServerOptimizer opt(d, cfg);
        std::vector<ScalarReference> ref(d, ScalarReference{k, lr, cfg.beta1, cfg.beta2, cfg.tau});
        for (size_t t = 0; t < steps; ++t) {
          std::vector<float> g(d);
          for (size_t j = 0; j < d; ++j) g[j] = deltas[j][t];
          REQUIRE(opt.Step(g).ok());
          for (size_t j = 0; j < d; ++j) {
            CAPTURE(t);
            CAPTURE(j);
            const double want = ref[j].Step(deltas[j][t]);
            CHECK(g[j] == doctest::Approx(want).epsilon(1e-5));
            CHECK(opt.state()[j] == doctest::Approx(ref[j].m).epsilon(1e-5));
            CHECK(opt.state()[d + j] == doctest::Approx(ref[j].v).epsilon(1e-5));
          }
        }
      }
    }
  }

  TEST_CASE("the adaptive step moves the model along the mean update, without bias correction") {
    // One step from m = 0, v = tau^2 with Delta = 1: m = 1 - beta1,
    // step = lr * (1 - beta1) / (sqrt(v) + tau). Bias correction would give about lr.
    ServerOptimizer adam(2, Adaptive(ServerOptimizerKind::kAdam, 0.1f));
    std::vector<float> g{1.0f, -1.0f};
    REQUIRE(adam.Step(g).ok());
    const double v = 0.99 * 1e-6 + 0.01 * 1.0;
    CHECK(g[0] == doctest::Approx(0.1 * 0.1 / (std::sqrt(v) + 1e-3)).epsilon(1e-5));
    CHECK(g[0] > 0.0f);
    CHECK(g[1] == -g[0]);
  }

  TEST_CASE("Yogi's v grows while Delta^2 > v, shrinks while Delta^2 < v, and holds at equality") {
    ServerOptimizerConfig cfg = Adaptive(ServerOptimizerKind::kYogi, 0.1f);
    ServerOptimizer opt(1, cfg);
    const float tau2 = cfg.tau * cfg.tau;
    std::vector<float> g{1.0f};  // Delta^2 = 1 > v = tau^2: v += (1 - beta2) * 1
    REQUIRE(opt.Step(g).ok());
    CHECK(opt.state()[1] == doctest::Approx(tau2 + 0.01).epsilon(1e-6));
    g = {0.01f};  // Delta^2 = 1e-4 < v: v -= (1 - beta2) * 1e-4
    REQUIRE(opt.Step(g).ok());
    CHECK(opt.state()[1] == doctest::Approx(tau2 + 0.01 - 0.01 * 1e-4).epsilon(1e-6));
    CHECK(opt.state()[1] < tau2 + 0.01f);
    // Adam would have decayed v by beta2 instead: (tau^2 + 0.01) * 0.99 + 1e-6.
    CHECK(opt.state()[1] > (tau2 + 0.01f) * 0.99f + 1e-5f);
    // Delta^2 == v exactly (0.5^2 == 0.25 in float): sign(0) = 0, v unchanged.
    const std::vector<float> s{0.0f, 0.25f};
    REQUIRE(opt.SetState(s).ok());
    g = {0.5f};
    REQUIRE(opt.Step(g).ok());
    CHECK(opt.state()[1] == 0.25f);
    CHECK(g[0] == doctest::Approx(0.1 * 0.05 / (0.5 + 1e-3)).epsilon(1e-6));
  }

  TEST_CASE(
      "state saved after three steps and restored into a new optimizer gives the same fourth "
      "step") {
    const size_t d = 40;
    std::vector<ServerOptimizerConfig> cfgs = {{.learning_rate = 0.8f, .momentum = 0.9f}};
    for (ServerOptimizerKind k : kAdaptiveKinds) cfgs.push_back(Adaptive(k, 0.05f));
    for (const ServerOptimizerConfig& cfg : cfgs) {
      CAPTURE(ServerOptimizerName(cfg.kind));
      ServerOptimizer a(d, cfg);
      for (uint64_t t = 0; t < 3; ++t) {
        std::vector<float> g = RandomVector(d, 7 + t, 0.2f);
        REQUIRE(a.Step(g).ok());
      }
      const std::vector<float> saved(a.state().begin(), a.state().end());
      ServerOptimizer b(d, cfg), fresh(d, cfg);
      REQUIRE(b.SetState(saved).ok());
      CHECK(SameBits(b.state(), a.state()));
      const std::vector<float> fourth = RandomVector(d, 99, 0.2f);
      std::vector<float> ga = fourth, gb = fourth, gf = fourth;
      REQUIRE(a.Step(ga).ok());
      REQUIRE(b.Step(gb).ok());
      REQUIRE(fresh.Step(gf).ok());
      CHECK(SameBits(ga, gb));
      CHECK(SameBits(a.state(), b.state()));
      CHECK_FALSE(SameBits(ga, gf));  // the state matters, so the test would notice it lost
    }
  }

  TEST_CASE(
      "restoring state of the wrong size, or with non-finite or negative second moments, is "
      "refused") {
    ServerOptimizer adam(5, Adaptive(ServerOptimizerKind::kAdam, 0.1f));
    const std::vector<float> before(adam.state().begin(), adam.state().end());
    auto st = adam.SetState(std::vector<float>(5, 0.0f));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code() == ErrorCode::kInvalidArgument);
    CHECK(st.error().message().find("size 5") != std::string::npos);
    CHECK(st.error().message().find("expected 10") != std::string::npos);
    std::vector<float> bad(10, 0.0f);
    bad[7] = -1.0f;  // a second moment
    CHECK_FALSE(adam.SetState(bad).ok());
    bad[7] = std::numeric_limits<float>::infinity();
    CHECK_FALSE(adam.SetState(bad).ok());
    bad[7] = 0.0f;
    bad[2] = std::numeric_limits<float>::quiet_NaN();  // a first moment
    CHECK_FALSE(adam.SetState(bad).ok());
    CHECK(SameBits(adam.state(), before));
    bad[2] = -3.0f;  // first moments may be negative
    CHECK(adam.SetState(bad).ok());

    ServerOptimizer momentum(4, {.momentum = 0.5f});
    st = momentum.SetState(std::vector<float>(8, 0.0f));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message().find("size 8") != std::string::npos);
    CHECK(st.error().message().find("expected 4") != std::string::npos);
    ServerOptimizer plain(4, {});
    CHECK(plain.SetState({}).ok());
    CHECK_FALSE(plain.SetState(std::vector<float>(4, 0.0f)).ok());
  }

  TEST_CASE(
      "a step that would not be finite is refused and changes neither the update nor the state") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<ServerOptimizerConfig> cfgs = {{}, {.learning_rate = 0.5f}, {.momentum = 0.9f}};
    for (ServerOptimizerKind k : kAdaptiveKinds) cfgs.push_back(Adaptive(k, 0.1f));
    for (const ServerOptimizerConfig& cfg : cfgs) {
      CAPTURE(ServerOptimizerName(cfg.kind));
      ServerOptimizer opt(3, cfg);
      std::vector<float> warm{0.1f, -0.2f, 0.3f};
      REQUIRE(opt.Step(warm).ok());
      const std::vector<float> state(opt.state().begin(), opt.state().end());
      for (float poison : {nan, std::numeric_limits<float>::infinity()}) {
        std::vector<float> g{0.1f, 0.2f, poison};
        const std::vector<float> g_before = g;
        auto st = opt.Step(g);
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().code() == ErrorCode::kInvalidArgument);
        CHECK(st.error().message().find("coordinate 2") != std::string::npos);
        CHECK(SameBits(g, g_before));
        CHECK(SameBits(opt.state(), state));
      }
      std::vector<float> wrong(4, 0.0f);
      CHECK_FALSE(opt.Step(wrong).ok());
    }
    // Finite but huge: Delta^2 overflows float, which would make v infinite and the step 0 or NaN.
    for (ServerOptimizerKind k : kAdaptiveKinds) {
      ServerOptimizer opt(2, Adaptive(k, 0.1f));
      std::vector<float> g{0.5f, 1e30f};
      CHECK_FALSE(opt.Step(g).ok());
      CHECK(g[0] == 0.5f);
      CHECK(opt.state()[0] == 0.0f);
    }
  }
}

}  // namespace
}  // namespace frugal
