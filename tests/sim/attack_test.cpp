#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"
#include "frugal/model/model.h"
#include "frugal/sim/attack.h"
#include "frugal/sim/config.h"
#include "frugal/sim/runner.h"
#include "frugal/train/trainer.h"

namespace frugal::sim {
namespace {

// Synthetic images (side x side codes, seeded) where a test needs to know
// every pixel; the sim runs below use Fashion-MNIST.
Dataset Images(size_t rows, size_t side, size_t classes, uint64_t seed, bool coded = true) {
  Dataset d;
  d.num_features = side * side;
  d.num_classes = classes;
  Rng rng(seed);
  for (size_t i = 0; i < rows; ++i) {
    for (size_t j = 0; j < d.num_features; ++j) {
      const auto code = static_cast<uint8_t>(rng.UniformInt(200));
      if (coded) d.codes.push_back(code); else d.features.push_back(static_cast<float>(code) / 255.0f);
    }
    d.labels.push_back(static_cast<int32_t>(rng.UniformInt(classes)));
  }
  return d;
}

bool InTrigger(size_t j, size_t side) { return j / side >= side - 4 && j % side >= side - 4; }

std::vector<float> Row(const Dataset& d, size_t i) {
  std::vector<float> out(d.num_features);
  d.CopyRow(i, out.data());
  return out;
}

constexpr const char* kRun = R"(
name = "attack"
seed = 5
rounds = 6
pipeline = "dense"
model = "logreg"
[data]
partition = "dirichlet"
alpha = 0.5
eval_examples = 2000
[population]
clients = 40
[round]
clients_per_round = 8
selection = "uniform"
[train]
epochs = 1
batch_size = 32
learning_rate = 0.1
)";

SimConfig Parse(const std::vector<std::string>& sets) {
  auto c = ParseSimConfig(kRun, "attack.toml", sets);
  REQUIRE_MESSAGE(c.ok(), c.error().ToString());
  return *c;
}

RunResult Run(const SimConfig& cfg) {
  auto r = RunSimulation(cfg, RunOptions{});
  REQUIRE_MESSAGE(r.ok(), r.error().ToString());
  return std::move(*r);
}

TEST_SUITE("sim") {
  TEST_CASE("attackers: round(fraction * population) of them, the same for the same seed") {
    for (size_t n : {1u, 7u, 40u, 100u, 1001u}) {
      for (double f : {0.0, 0.1, 0.2, 0.5, 1.0}) {
        const std::vector<bool> a = ChooseAttackers(n, f, 42);
        CHECK(a.size() == n);
        CHECK(static_cast<size_t>(std::count(a.begin(), a.end(), true)) ==
              static_cast<size_t>(std::llround(f * static_cast<double>(n))));
        CHECK(ChooseAttackers(n, f, 42) == a);
      }
    }
    CHECK(ChooseAttackers(1000, 0.2, 1) != ChooseAttackers(1000, 0.2, 2));
  }

  TEST_CASE("ALIE's z follows Baruch et al.'s formula for n clients and m attackers") {
    // References: Python's statistics.NormalDist().inv_cdf.
    CHECK(PhiInverse(0.975) == doctest::Approx(1.9599639845400536).epsilon(1e-12));
    CHECK(PhiInverse(0.01) == doctest::Approx(-2.3263478740408408).epsilon(1e-12));
    CHECK(PhiInverse(1e-6) == doctest::Approx(-4.753424308822899).epsilon(1e-12));
    CHECK(AlieZ(10, 2) == doctest::Approx(0.0).epsilon(1e-12));  // s = 4, p = 4/8
    CHECK(AlieZ(10, 3) == doctest::Approx(0.18001236979270493).epsilon(1e-12));
    CHECK(AlieZ(100, 20) == doctest::Approx(0.2858408748811658).epsilon(1e-12));
    CHECK(AlieZ(50, 12) == doctest::Approx(0.336038140371823).epsilon(1e-12));
    CHECK(AlieZ(10, 1) == doctest::Approx(-0.1397102988818621).epsilon(1e-12));
    CHECK(AlieZ(5, 0) == 0);
    CHECK(AlieZ(4, 4) == 0);
  }

  TEST_CASE("alie_flanders' z is Flower's: the CDF of Baruch et al.'s ratio, not its quantile") {
    // References: Python's statistics.NormalDist().cdf of (n - m - s) / (n - m), s = n // 2 + 1 - m.
    CHECK(Phi(0) == 0.5);
    CHECK(Phi(1.959963984540054) == doctest::Approx(0.975).epsilon(1e-12));
    CHECK(FlandersZ(10, 2) == doctest::Approx(0.6914624612740131).epsilon(1e-12));    // ratio 0.5
    CHECK(FlandersZ(10, 1) == doctest::Approx(0.6716393567181148).epsilon(1e-12));    // ratio 4/9
    CHECK(FlandersZ(10, 3) == doctest::Approx(0.7161454169013237).epsilon(1e-12));    // ratio 4/7
    CHECK(FlandersZ(10, 7) == doctest::Approx(0.9087887802741321).epsilon(1e-12));    // s = -1, ratio 4/3, no clamp
    CHECK(FlandersZ(100, 20) == doctest::Approx(0.7298965009987647).epsilon(1e-12));  // ratio 49/80
    CHECK(FlandersZ(10, 0) == 0);
    CHECK(FlandersZ(4, 4) == 0);
    // The published z is unchanged beside it.
    CHECK(AlieZ(10, 2) == doctest::Approx(0.0).epsilon(1e-12));
    CHECK(AlieZ(100, 20) == doctest::Approx(0.2858408748811658).epsilon(1e-12));
  }

  TEST_CASE("alie_flanders sends mean - z sqrt(std) over every sender; alie still sends mean - z std") {
    // Hand-computed (Python): three senders, z = Phi(0.5) = FlandersZ(10, 2).
    const std::vector<float> a = {1, -2, 0.5f, 0}, b = {3, 2, 0.5f, -4}, c = {2, 0, 2, 1};
    const std::vector<std::span<const float>> senders = {a, b, c};
    const DeltaMoments mo = Moments(senders);
    // std: sqrt(2/3), sqrt(8/3), sqrt(1/2), sqrt(14/3)
    const std::vector<double> flanders = {1.375193134571807, -0.8836103429523717, 0.41855169503217193,
                                          -2.0162962028933613};
    std::vector<float> out(4);
    FlandersAlieDelta(mo, FlandersZ(10, 2), out);
    for (size_t j = 0; j < 4; ++j) CHECK(out[j] == doctest::Approx(flanders[j]).epsilon(1e-6));
    // Baruch et al. at n = 10, m = 2: z = 0, the plain mean {2, 0, 1, -1}.
    AlieDelta(mo, AlieZ(10, 2), out);
    CHECK(out == std::vector<float>{2, 0, 1, -1});
    // Where the senders agree (std 0) neither form moves off the mean.
    const std::vector<float> same = {0.25f, 0.25f};
    const std::vector<std::span<const float>> twins = {same, same};
    std::vector<float> two(2);
    FlandersAlieDelta(Moments(twins), 0.9, two);
    CHECK(two == same);
  }

  TEST_CASE("model-poisoning transforms match a plain reference") {
    const std::vector<float> a = {1, -2, 0.5f, 0}, b = {3, 2, 0.5f, -4}, c = {2, 0, 2, 1};
    const std::vector<std::span<const float>> honest = {a, b, c};
    const DeltaMoments mo = Moments(honest);
    REQUIRE(mo.count == 3);
    for (size_t j = 0; j < 4; ++j) {
      const double mean = (a[j] + b[j] + c[j]) / 3.0;
      const double var = (std::pow(a[j] - mean, 2) + std::pow(b[j] - mean, 2) + std::pow(c[j] - mean, 2)) / 3.0;
      CHECK(mo.mean[j] == doctest::Approx(mean));
      CHECK(mo.std[j] == doctest::Approx(std::sqrt(var)));
    }
    std::vector<float> out(4);
    AlieDelta(mo, 1.5, out);
    for (size_t j = 0; j < 4; ++j) CHECK(out[j] == doctest::Approx(mo.mean[j] - 1.5 * mo.std[j]));
    IpmDelta(mo, 0.1, out);
    for (size_t j = 0; j < 4; ++j) CHECK(out[j] == doctest::Approx(-0.1 * mo.mean[j]));

    std::vector<float> d = a;
    ScaleDelta(d, 10);
    CHECK(d == std::vector<float>{10, -20, 5, 0});
    d = a;
    SignFlip(d, 1);
    CHECK(d == std::vector<float>{-1, 2, -0.5f, -0.0f});
    d = a;
    SignFlip(d, 4);
    CHECK(d == std::vector<float>{-4, 8, -2, -0.0f});

    std::vector<float> g1(20000), g2(20000);
    GaussianDelta(g1, 0.3, 9);
    GaussianDelta(g2, 0.3, 9);
    CHECK(g1 == g2);
    double sum = 0, sq = 0;
    for (float v : g1) sum += v, sq += static_cast<double>(v) * v;
    CHECK(std::abs(sum / 20000) < 0.01);
    CHECK(std::sqrt(sq / 20000) == doctest::Approx(0.3).epsilon(0.02));
  }

  TEST_CASE("a malicious update is a well-formed uplink frame of the codec it went through") {
    Rng rng(3);
    std::vector<float> honest1(500), honest2(500), residual(500, 0.0f);
    for (float& v : honest1) v = static_cast<float>(0.01 * rng.Normal());
    for (float& v : honest2) v = static_cast<float>(0.01 * rng.Normal());
    const std::vector<std::span<const float>> hs = {honest1, honest2};
    std::vector<float> alie(500), scaled = honest1, noise(500);
    AlieDelta(Moments(hs), AlieZ(3, 1), alie);
    ScaleDelta(scaled, 8);
    GaussianDelta(noise, 0.1, 4);
    for (const auto* delta : {&alie, &scaled, &noise}) {
      UplinkConfig sparse;
      sparse.density = 0.05;
      auto bytes = EncodeUplink(*delta, sparse, residual);
      REQUIRE(bytes.ok());
      auto dec = DecodeUplink(*bytes, 500);
      REQUIRE_MESSAGE(dec.ok(), dec.error().ToString());
      CHECK(dec->indices.size() == 25);
      CHECK(ValidateSparseUpdate(*dec, 500).ok());
      UplinkConfig dense;
      dense.dense = true;
      auto raw = EncodeUplink(*delta, dense, {});
      REQUIRE(raw.ok());
      auto full = DecodeUplink(*raw, 500);
      REQUIRE(full.ok());
      CHECK(full->values == *delta);
    }
  }

  TEST_CASE("label_flip relabels every example y -> 9 - y and nothing else; the source is untouched") {
    for (bool coded : {true, false}) {
      const Dataset src = Images(30, 28, 10, 1, coded);
      const Dataset before = src;
      const std::vector<uint32_t> rows = {3, 0, 17, 29, 8};
      AttackConfig a;
      a.kind = AttackKind::kLabelFlip;
      std::vector<uint32_t> changed;
      auto copy = PoisonedCopy(src, rows, a, 7, &changed);
      REQUIRE(copy.ok());
      CHECK(copy->size() == rows.size());
      CHECK(changed == std::vector<uint32_t>{0, 1, 2, 3, 4});
      for (size_t k = 0; k < rows.size(); ++k) {
        CHECK(copy->labels[k] == 9 - src.labels[rows[k]]);
        CHECK(Row(*copy, k) == Row(src, rows[k]));
      }
      CHECK(src.codes == before.codes);
      CHECK(src.features == before.features);
      CHECK(src.labels == before.labels);
    }
  }

  TEST_CASE("backdoor stamps the 4x4 trigger and the target on exactly round(poison_fraction * n) examples") {
    for (bool coded : {true, false}) {
      const Dataset src = Images(40, 28, 10, 2, coded);
      std::vector<uint32_t> rows(33);
      std::iota(rows.begin(), rows.end(), 4u);
      AttackConfig a;
      a.kind = AttackKind::kBackdoor;
      a.poison_fraction = 0.3;
      a.target_label = 6;
      std::vector<uint32_t> changed;
      auto copy = PoisonedCopy(src, rows, a, 11, &changed);
      REQUIRE(copy.ok());
      CHECK(changed.size() == 10);  // round(0.3 * 33)
      CHECK(std::is_sorted(changed.begin(), changed.end()));
      std::vector<uint32_t> again;
      REQUIRE(PoisonedCopy(src, rows, a, 11, &again).ok());
      CHECK(again == changed);
      for (size_t k = 0; k < rows.size(); ++k) {
        const bool poisoned = std::binary_search(changed.begin(), changed.end(), static_cast<uint32_t>(k));
        const std::vector<float> got = Row(*copy, k), orig = Row(src, rows[k]);
        CHECK(copy->labels[k] == (poisoned ? 6 : src.labels[rows[k]]));
        for (size_t j = 0; j < got.size(); ++j) {
          if (poisoned && InTrigger(j, 28)) {
            CHECK(got[j] == 1.0f);
          } else {
            CHECK(got[j] == orig[j]);
          }
        }
      }
    }
    AttackConfig bad;
    bad.kind = AttackKind::kBackdoor;
    const std::vector<uint32_t> one = {0};
    CHECK(!PoisonedCopy(Images(2, 3, 10, 1), one, bad, 1).ok());  // 3x3 images: no room for the trigger
    bad.target_label = 12;
    CHECK(!PoisonedCopy(Images(2, 28, 10, 1), one, bad, 1).ok());
  }

  TEST_CASE("backdoor success on a hand-made model equals a brute-force count") {
    // 5x5 images, 3 classes, a logistic regression with seeded weights that
    // the trigger pixels push toward class 2.
    const Dataset test = Images(60, 5, 3, 8);
    auto model = MakeModel("logreg", 25, 3);
    REQUIRE(model.ok());
    std::vector<float> params((*model)->num_params());
    (*model)->InitParams(params, 4);
    std::vector<float> grad(params.size());
    auto ws = (*model)->MakeWorkspace();
    // Steer the weights toward "trigger => class 2" with a few SGD steps on triggered copies.
    Dataset teach = test;
    for (size_t i = 0; i < teach.size(); ++i) {
      StampTrigger(teach, i);
      teach.labels[i] = 2;
    }
    std::vector<uint32_t> some = {0, 1, 2, 3, 4, 5};
    TrainConfig tc;
    tc.learning_rate = 0.005f;
    REQUIRE(Train(**model, params, teach, some, tc, *ws).ok());

    std::vector<uint32_t> rows(test.size());
    std::iota(rows.begin(), rows.end(), 0u);
    auto triggered = TriggeredTestSet(test, rows, 2);
    REQUIRE(triggered.ok());
    auto ev = Evaluate(**model, params, *triggered, {}, *ws);
    REQUIRE(ev.ok());

    size_t eligible = 0, hits = 0;
    for (size_t i = 0; i < test.size(); ++i) {
      if (test.labels[i] == 2) continue;
      ++eligible;
      std::vector<float> x = Row(test, i);
      for (size_t j = 0; j < x.size(); ++j) {
        if (InTrigger(j, 5)) x[j] = 1.0f;
      }
      int32_t label = 0, predicted = -1;
      REQUIRE(std::isfinite((*model)->Predict(params, BatchView{x.data(), &label, 1}, std::span(&predicted, 1), *ws)));
      if (predicted == 2) ++hits;
    }
    CHECK(triggered->size() == eligible);
    CHECK(hits > 0);
    CHECK(hits < eligible);  // the count is not trivially all or nothing
    CHECK(ev->accuracy == doctest::Approx(static_cast<double>(hits) / static_cast<double>(eligible)));
  }

  TEST_CASE("attack configuration: defaults per kind, keys of other kinds and bad values refused by name") {
    CHECK(Parse({}).attack.kind == AttackKind::kNone);
    const SimConfig scaling = Parse({"attack.kind=\"scaling\""});
    CHECK(scaling.attack.scale == 8);  // clients_per_round
    CHECK(scaling.attack.fraction == 0.2);
    CHECK(scaling.flat.at("attack.scale") == "8");
    CHECK(Parse({"attack.kind=\"sign_flip\""}).attack.scale == 1);
    CHECK(!Parse({"attack.kind=\"alie\""}).attack.z.has_value());
    CHECK(Parse({"attack.kind=\"alie\"", "attack.z=1.5"}).attack.z == 1.5);
    const SimConfig bd = Parse({"attack.kind=\"backdoor\"", "attack.target_label=3"});
    CHECK(bd.attack.poison_fraction == 0.5);
    CHECK(bd.attack.target_label == 3);
    CHECK(bd.attack.scale == 1);

    auto expect_error = [](const std::vector<std::string>& sets, const std::string& key) {
      auto c = ParseSimConfig(kRun, "attack.toml", sets);
      REQUIRE(!c.ok());
      CHECK_MESSAGE(c.error().message().find(key) != std::string::npos, c.error().message());
    };
    expect_error({"attack.kind=\"gaussian\"", "attack.scale=3"}, "attack.scale");
    expect_error({"attack.kind=\"scaling\"", "attack.sigma=3"}, "attack.sigma");
    expect_error({"attack.fraction=0.3"}, "attack.fraction");  // kind none
    expect_error({"attack.kind=\"flip\""}, "attack.kind");
    expect_error({"attack.kind=\"scaling\"", "attack.fraction=1.5"}, "attack.fraction");
    expect_error({"attack.kind=\"scaling\"", "attack.scale=-1"}, "attack.scale");
    expect_error({"attack.kind=\"backdoor\"", "attack.target_label=10"}, "attack.target_label");
    expect_error({"attack.kind=\"backdoor\"", "attack.poison_fraction=0"}, "attack.poison_fraction");
    expect_error({"attack.kind=\"gaussian\"", "attack.sigma=0"}, "attack.sigma");
    expect_error({"attack.kind=\"ipm\"", "attack.epsilon=\"big\""}, "attack.epsilon");
    CHECK(Parse({"attack.kind=\"alie_flanders\""}).attack.kind == AttackKind::kAlieFlanders);
    CHECK(AttackKindName(AttackKind::kAlieFlanders) == "alie_flanders");
    expect_error({"attack.kind=\"alie_flanders\"", "attack.z=1"}, "attack.z");  // Flower's z, every round
    CHECK(Parse({"attack.kind=\"ipm\""}).attack.start_round == 1);
    CHECK(Parse({"attack.kind=\"ipm\"", "attack.start_round=31"}).attack.start_round == 31);
    expect_error({"attack.kind=\"ipm\"", "attack.start_round=0"}, "attack.start_round");
    expect_error({"attack.start_round=3"}, "attack.start_round");  // kind none
  }

  TEST_CASE("a scaling attack costs FedAvg accuracy; attackers' energy stays on the ledger") {
    const RunResult clean = Run(Parse({}));
    const RunResult attacked = Run(Parse({"attack.kind=\"scaling\""}));
    MESSAGE("clean " << clean.rounds.back().accuracy << ", scaling " << attacked.rounds.back().accuracy);
    CHECK(attacked.rounds.back().accuracy < clean.rounds.back().accuracy - 0.05);
    // Same clients, same training: the same joules and bytes on the ledger.
    CHECK(attacked.summary.joules_client == doctest::Approx(clean.summary.joules_client));
    CHECK(clean.rounds.back().backdoor_success == -1);
  }

  TEST_CASE("an ALIE run is identical whatever the thread count, and an IPM run completes") {
    // The omniscient attacks gather the round's deltas from every thread (and rank) in slot order.
    SimConfig cfg = Parse({"attack.kind=\"alie\"", "attack.z=1", "rounds=2", "pipeline=\"frugal\"",
                           "attack.fraction=0.5"});
    cfg.threads = 1;
    const RunResult one = Run(cfg);
    cfg.threads = 3;
    const RunResult three = Run(cfg);
    CHECK(one.final_model == three.final_model);
    const RunResult ipm = Run(Parse({"attack.kind=\"ipm\"", "rounds=2", "attack.fraction=0.5"}));
    CHECK(ipm.rounds.size() == 2);
    CHECK(ipm.final_model != one.final_model);
  }

  TEST_CASE("alie runs keep Baruch et al.'s z; alie_flanders runs use Flower's and report its shift") {
    // Every client is selected every round (40 of 40) and 10 attack: n = 40, m = 10 in every round, so
    // the formula's z can be given as a fixed attack.z and the run must not change by a bit.
    const std::vector<std::string> all = {"round.clients_per_round=40", "attack.fraction=0.25", "rounds=3"};
    auto with = [&](std::vector<std::string> extra) {
      extra.insert(extra.end(), all.begin(), all.end());
      return Parse(extra);
    };
    const RunResult formula = Run(with({"attack.kind=\"alie\""}));
    char z[64];
    std::snprintf(z, sizeof z, "attack.z=%.17g", AlieZ(40, 10));
    const RunResult fixed = Run(with({"attack.kind=\"alie\"", z}));
    CHECK(formula.final_model == fixed.final_model);
    CHECK(formula.summary.extra_metrics.count("alie_flanders_z") == 0);

    const RunResult flanders = Run(with({"attack.kind=\"alie_flanders\""}));
    CHECK(flanders.final_model != formula.final_model);
    const auto& x = flanders.summary.extra_metrics;
    CHECK(x.at("alie_flanders_z") == doctest::Approx(FlandersZ(40, 10)).epsilon(1e-12));
    CHECK(x.at("alie_flanders_shift_std_p10") <= x.at("alie_flanders_shift_std_median"));
    CHECK(x.at("alie_flanders_shift_std_median") <= x.at("alie_flanders_shift_std_p90"));
    // z sqrt(std) / std = z / sqrt(std): more than z standard deviations wherever std < 1.
    CHECK(x.at("alie_flanders_sender_std_median") < 1);
    CHECK(x.at("alie_flanders_shift_std_median") > x.at("alie_flanders_z"));
  }

  TEST_CASE("before attack.start_round attackers train and send like every client") {
    const RunResult clean = Run(Parse({}));
    const RunResult never = Run(Parse({"attack.kind=\"scaling\"", "attack.start_round=7"}));  // after round 6
    CHECK(never.final_model == clean.final_model);
    const RunResult late = Run(Parse({"attack.kind=\"scaling\"", "attack.start_round=4"}));
    for (size_t i = 0; i < 3; ++i) CHECK(late.rounds[i].accuracy == clean.rounds[i].accuracy);
    CHECK(late.final_model != clean.final_model);
  }

  TEST_CASE("a run whose model an attack destroys goes on: clients that cannot train send nothing") {
    // Weights of 1e18 overflow the 2NN's second layer: training has no finite loss after round 1.
    const RunResult r = Run(Parse({"model=\"mlp\"", "attack.kind=\"gaussian\"", "attack.sigma=1e18", "rounds=3",
                                   "attack.fraction=0.5"}));
    CHECK(r.rounds.size() == 3);
    CHECK(r.summary.extra_metrics.at("attack_diverged_tasks") > 0);
    CHECK(r.rounds.back().completed < r.rounds.back().selected);
  }

  TEST_CASE("a backdoor run records its success rate every round") {
    const RunResult r = Run(Parse({"attack.kind=\"backdoor\"", "rounds=2", "attack.fraction=0.5"}));
    for (const RoundRecord& rec : r.rounds) {
      CHECK(rec.backdoor_success >= 0);
      CHECK(rec.backdoor_success <= 1);
    }
    CHECK(r.summary.extra_metrics.at("backdoor_success") == r.rounds.back().backdoor_success);
    // attack.scale boosts the backdoored delta (model replacement): another model.
    const RunResult boosted =
        Run(Parse({"attack.kind=\"backdoor\"", "rounds=2", "attack.fraction=0.5", "attack.scale=10"}));
    CHECK(boosted.final_model != r.final_model);
    AttackConfig a;
    a.kind = AttackKind::kBackdoor;
    CHECK_FALSE(a.poisons_model());
    a.scale = 10;
    CHECK(a.poisons_model());
  }
}

}  // namespace
}  // namespace frugal::sim
