// Robust aggregation rules against plain dense reference implementations
// written here: each rule's output, verdicts and state on small random sparse
// updates (synthetic: the rules' arithmetic does not depend on where the
// updates came from).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <utility>
#include <vector>

#include "codec/test_util.h"
#include "frugal/aggregate/fedavg.h"
#include "frugal/aggregate/hdbscan.h"
#include "frugal/aggregate/robust.h"
#include "frugal/core/random.h"

namespace frugal {
namespace {

using Dense = std::vector<double>;

SparseUpdate RandomSparse(uint32_t dim, uint32_t k, uint64_t seed, double scale = 1.0, double shift = 0.0) {
  SparseUpdate u;
  u.dim = dim;
  u.indices = codec_test::RandomSubset(dim, k, seed);
  Rng rng(DeriveSeed(seed, 1));
  for (size_t t = 0; t < u.indices.size(); ++t) u.values.push_back(static_cast<float>(shift + scale * rng.Normal()));
  return u;
}

SparseUpdate FromDense(const std::vector<float>& v) {
  SparseUpdate u;
  u.dim = static_cast<uint32_t>(v.size());
  for (uint32_t j = 0; j < v.size(); ++j) {
    u.indices.push_back(j);
    u.values.push_back(v[j]);
  }
  return u;
}

Dense ToDense(const SparseUpdate& u) {
  Dense d(u.dim, 0.0);
  for (size_t t = 0; t < u.indices.size(); ++t) d[u.indices[t]] = u.values[t];
  return d;
}

std::vector<bool> Support(const SparseUpdate& u) {
  std::vector<bool> s(u.dim, false);
  for (uint32_t j : u.indices) s[j] = true;
  return s;
}

double Norm(const Dense& d) {
  double s = 0;
  for (double x : d) s += x * x;
  return std::sqrt(s);
}

std::vector<RobustInput> Inputs(const std::vector<SparseUpdate>& us, const std::vector<double>& weights = {}) {
  std::vector<RobustInput> in(us.size());
  for (size_t i = 0; i < us.size(); ++i) in[i] = {100 + i, &us[i], weights.empty() ? 1.0 : weights[i]};
  return in;
}

std::vector<SparseUpdate> RandomRound(size_t n, uint32_t dim, uint32_t k, uint64_t seed) {
  std::vector<SparseUpdate> us;
  for (size_t i = 0; i < n; ++i) us.push_back(RandomSparse(dim, k, DeriveSeed(seed, i)));
  return us;
}

std::vector<double> RandomWeights(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> w(n);
  for (double& x : w) x = 1.0 + 9.0 * rng.Uniform();
  return w;
}

// Plain weighted mean, each coordinate divided as the Averaging says.
Dense ReferenceMean(const std::vector<Dense>& xs, const std::vector<std::vector<bool>>& supports,
                    const std::vector<double>& w, Averaging averaging) {
  const size_t dim = xs[0].size();
  Dense sum(dim, 0.0), carried(dim, 0.0);
  double total = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    total += w[i];
    for (size_t j = 0; j < dim; ++j) {
      sum[j] += w[i] * xs[i][j];
      if (supports[i][j]) carried[j] += w[i];
    }
  }
  for (size_t j = 0; j < dim; ++j) {
    const double denom = averaging == Averaging::kAll ? total : carried[j];
    sum[j] = denom > 0 ? sum[j] / denom : 0.0;
  }
  return sum;
}

Dense ReferenceMean(const std::vector<SparseUpdate>& us, const std::vector<double>& w, Averaging averaging) {
  std::vector<Dense> xs;
  std::vector<std::vector<bool>> sup;
  for (const SparseUpdate& u : us) xs.push_back(ToDense(u)), sup.push_back(Support(u));
  return ReferenceMean(xs, sup, w, averaging);
}

void CheckClose(const std::vector<float>& got, const Dense& want, double tol = 1e-5) {
  REQUIRE(got.size() == want.size());
  for (size_t j = 0; j < got.size(); ++j) {
    INFO("coordinate " << j);
    CHECK(std::abs(got[j] - want[j]) <= tol * (1.0 + std::abs(want[j])));
  }
}

struct Outcome {
  Status status;
  std::vector<float> out;
  std::vector<RobustVerdict> verdicts;
};

Outcome Run(RobustAggregator& agg, const std::vector<RobustInput>& in, const SparseUpdate* reference = nullptr,
            size_t dim = 0) {
  Outcome o;
  o.out.assign(dim ? dim : in.at(0).update->dim, -7.0f);
  o.status = agg.Aggregate(in, reference, o.out, o.verdicts);
  return o;
}

RobustConfig Rule(RobustRule r) {
  RobustConfig c;
  c.rule = r;
  return c;
}

double NearestRank(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t rank = std::clamp<size_t>(static_cast<size_t>(std::ceil(q * static_cast<double>(v.size()))), 1,
                                         v.size());
  return v[rank - 1];
}

// Dense reference of centered clipping on the values present: deviations on
// each update's support, each coordinate moved by the weighted mean of the
// clipped deviations of the updates carrying it.
Dense ReferenceCenteredClip(const std::vector<SparseUpdate>& us, const std::vector<double>& w, Dense& centre,
                            double tau, int iterations, Averaging averaging, std::vector<double>& factors) {
  const size_t dim = centre.size(), n = us.size();
  factors.assign(n, 1.0);
  for (int it = 0; it < iterations; ++it) {
    Dense num(dim, 0.0), den(dim, 0.0);
    for (size_t i = 0; i < n; ++i) {
      const Dense x = ToDense(us[i]);
      const std::vector<bool> s = Support(us[i]);
      double dist2 = 0;
      for (size_t j = 0; j < dim; ++j) {
        if (s[j]) dist2 += (x[j] - centre[j]) * (x[j] - centre[j]);
      }
      const double dist = std::sqrt(dist2);
      factors[i] = dist > tau ? tau / dist : 1.0;
      for (size_t j = 0; j < dim; ++j) {
        if (!s[j]) continue;
        num[j] += w[i] * factors[i] * (x[j] - centre[j]);
        den[j] += w[i];
      }
    }
    for (size_t j = 0; j < dim; ++j) {
      if (den[j] > 0) centre[j] += num[j] / den[j];
    }
  }
  Dense out(dim, 0.0), carried(dim, 0.0);
  const double total = std::accumulate(w.begin(), w.end(), 0.0);
  for (size_t i = 0; i < n; ++i) {
    for (uint32_t j : us[i].indices) carried[j] += w[i];
  }
  for (size_t j = 0; j < dim; ++j) {
    if (carried[j] > 0) out[j] = averaging == Averaging::kAll ? centre[j] * carried[j] / total : centre[j];
  }
  return out;
}

// Brute-force coordinate-wise median / trimmed mean over the values present,
// and how many of each update's values were used.
Dense ReferenceCoordinateWise(const std::vector<SparseUpdate>& us, bool trimmed, double trim, Averaging averaging,
                              std::vector<size_t>& used) {
  const size_t dim = us[0].dim, n = us.size();
  Dense out(dim, 0.0);
  used.assign(n, 0);
  std::vector<std::vector<std::pair<double, size_t>>> columns(dim);
  for (size_t i = 0; i < n; ++i) {
    for (size_t t = 0; t < us[i].indices.size(); ++t) columns[us[i].indices[t]].push_back({us[i].values[t], i});
  }
  for (size_t j = 0; j < dim; ++j) {
    std::vector<std::pair<double, size_t>>& present = columns[j];
    if (present.empty()) continue;
    std::sort(present.begin(), present.end());
    const size_t c = present.size();
    size_t cut = trimmed ? static_cast<size_t>(std::floor(trim * static_cast<double>(c))) : 0;
    std::vector<size_t> keep;
    if (trimmed && c > 2 * cut) {
      for (size_t t = cut; t < c - cut; ++t) keep.push_back(t);
    } else if (c % 2 == 1) {
      keep = {c / 2};
    } else {
      keep = {c / 2 - 1, c / 2};
    }
    double s = 0;
    for (size_t t : keep) s += present[t].first, ++used[present[t].second];
    out[j] = s / static_cast<double>(keep.size()) *
             (averaging == Averaging::kAll ? static_cast<double>(c) / static_cast<double>(n) : 1.0);
  }
  return out;
}

std::vector<size_t> ReferenceKrumSelection(const std::vector<SparseUpdate>& us, size_t f, size_t m) {
  const size_t n = us.size();
  std::vector<Dense> xs;
  for (const SparseUpdate& u : us) xs.push_back(ToDense(u));
  std::vector<double> score(n, 0.0);
  const size_t nb = n - f - 2;
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> d;
    for (size_t j = 0; j < n; ++j) {
      if (j == i) continue;
      double s = 0;
      for (size_t c = 0; c < xs[i].size(); ++c) s += (xs[i][c] - xs[j][c]) * (xs[i][c] - xs[j][c]);
      d.push_back(s);
    }
    std::sort(d.begin(), d.end());
    score[i] = std::accumulate(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(nb), 0.0);
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] < score[b]; });
  order.resize(m);
  std::sort(order.begin(), order.end());
  return order;
}

TEST_SUITE("aggregate") {
  TEST_CASE("rule and action names parse and print, unknown names are refused") {
    for (RobustRule r : {RobustRule::kNone, RobustRule::kNormBound, RobustRule::kCenteredClip, RobustRule::kMedian,
                         RobustRule::kTrimmedMean, RobustRule::kMultiKrum, RobustRule::kFlTrust, RobustRule::kFlame}) {
      auto parsed = ParseRobustRule(RobustRuleName(r));
      REQUIRE(parsed.ok());
      CHECK(*parsed == r);
    }
    CHECK(RobustRuleName(RobustRule::kMultiKrum) == "multi_krum");
    auto bad = ParseRobustRule("krum");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message().find("multi_krum") != std::string::npos);
    CHECK(RobustActionName(RobustAction::kDownweighted) == "downweighted");
    CHECK(RobustActionName(RobustAction::kRejected) == "rejected");
  }

  TEST_CASE("none is the weighted FedAvg mean under both averagings, every update kept") {
    const auto us = RandomRound(12, 200, 9, 1);
    const auto w = RandomWeights(12, 2);
    for (Averaging a : {Averaging::kAll, Averaging::kSupport}) {
      RobustAggregator agg(200, a, Rule(RobustRule::kNone));
      Outcome o = Run(agg, Inputs(us, w));
      REQUIRE(o.status.ok());
      CheckClose(o.out, ReferenceMean(us, w, a));
      REQUIRE(o.verdicts.size() == 12);
      for (size_t i = 0; i < 12; ++i) {
        CHECK(o.verdicts[i].client == 100 + i);
        CHECK(o.verdicts[i].action == RobustAction::kKept);
        CHECK(o.verdicts[i].reason.empty());
      }
      CHECK(agg.StateSize() == 0);
      CHECK(agg.State().empty());
    }
  }

  TEST_CASE("norm bound clips each update to exactly the fixed bound") {
    std::vector<SparseUpdate> us = RandomRound(8, 100, 10, 3);
    for (float& v : us[2].values) v *= 50.0f;  // far above the others
    const auto w = RandomWeights(8, 4);
    RobustConfig cfg = Rule(RobustRule::kNormBound);
    cfg.clip_bound = 2.5;
    RobustAggregator agg(100, Averaging::kSupport, cfg);
    Outcome o = Run(agg, Inputs(us, w));
    REQUIRE(o.status.ok());
    std::vector<Dense> xs;
    std::vector<std::vector<bool>> sup;
    size_t clipped = 0;
    for (size_t i = 0; i < us.size(); ++i) {
      Dense x = ToDense(us[i]);
      const double norm = Norm(x);
      if (norm > 2.5) {
        ++clipped;
        for (double& v : x) v *= 2.5 / norm;
        CHECK(Norm(x) == doctest::Approx(2.5));
        CHECK(o.verdicts[i].action == RobustAction::kClipped);
        CHECK(o.verdicts[i].factor == doctest::Approx(2.5 / norm));
        CHECK(o.verdicts[i].reason.find("> bound 2.5") != std::string::npos);
      } else {
        CHECK(o.verdicts[i].action == RobustAction::kKept);
        CHECK(o.verdicts[i].factor == 1.0);
      }
      xs.push_back(x);
      sup.push_back(Support(us[i]));
    }
    CHECK(clipped >= 1);
    CHECK(clipped < us.size());
    CHECK(o.verdicts[2].action == RobustAction::kClipped);
    CheckClose(o.out, ReferenceMean(xs, sup, w, Averaging::kSupport));
  }

  TEST_CASE("norm bound's running quantile: the round's nearest-rank quantile, then a geometric mean across rounds") {
    RobustConfig cfg = Rule(RobustRule::kNormBound);
    cfg.clip_quantile = 0.5;
    RobustAggregator agg(300, Averaging::kAll, cfg);
    CHECK(agg.StateSize() == 1);
    CHECK(agg.State() == std::vector<float>{0.0f});
    const auto r1 = RandomRound(9, 300, 20, 5);
    std::vector<double> n1;
    for (const auto& u : r1) n1.push_back(Norm(ToDense(u)));
    Outcome o1 = Run(agg, Inputs(r1));
    REQUIRE(o1.status.ok());
    const double q1 = NearestRank(n1, 0.5);
    CHECK(agg.State()[0] == doctest::Approx(q1).epsilon(1e-6));
    // Exactly the updates above the median are clipped (4 of 9).
    size_t clipped = 0;
    for (size_t i = 0; i < 9; ++i) clipped += n1[i] > agg.State()[0] ? 1 : 0;
    CHECK(clipped == 4);
    CHECK(std::count_if(o1.verdicts.begin(), o1.verdicts.end(),
                        [](const RobustVerdict& v) { return v.action == RobustAction::kClipped; }) == 4);

    // A second round with larger norms: the bound moves halfway in log space.
    std::vector<SparseUpdate> r2 = RandomRound(9, 300, 20, 6);
    for (auto& u : r2) {
      for (float& v : u.values) v *= 4.0f;
    }
    std::vector<double> n2;
    for (const auto& u : r2) n2.push_back(Norm(ToDense(u)));
    const std::vector<float> saved = agg.State();
    Outcome o2 = Run(agg, Inputs(r2));
    REQUIRE(o2.status.ok());
    const double b2 = std::sqrt(static_cast<double>(saved[0]) * NearestRank(n2, 0.5));
    CHECK(agg.State()[0] == doctest::Approx(b2).epsilon(1e-6));

    // A restart from the saved state aggregates the second round bit for bit alike.
    RobustAggregator restarted(300, Averaging::kAll, cfg);
    REQUIRE(restarted.SetState(saved).ok());
    CHECK(restarted.State() == saved);
    Outcome o2b = Run(restarted, Inputs(r2));
    REQUIRE(o2b.status.ok());
    CHECK(o2b.out == o2.out);
    CHECK(restarted.State() == agg.State());
  }

  TEST_CASE("centered clipping with nothing clipped is FedAvg under both averagings") {
    const auto us = RandomRound(10, 150, 12, 7);
    const auto w = RandomWeights(10, 8);
    for (Averaging a : {Averaging::kAll, Averaging::kSupport}) {
      RobustConfig cfg = Rule(RobustRule::kCenteredClip);
      cfg.clip_bound = 1e6;
      RobustAggregator agg(150, a, cfg);
      Outcome o = Run(agg, Inputs(us, w));
      REQUIRE(o.status.ok());
      CheckClose(o.out, ReferenceMean(us, w, a));
      for (const auto& v : o.verdicts) CHECK(v.action == RobustAction::kKept);
    }
  }

  TEST_CASE("centered clipping matches the dense reference over rounds and iterations, and its centre round-trips") {
    const uint32_t dim = 80;
    for (Averaging a : {Averaging::kAll, Averaging::kSupport}) {
      RobustConfig cfg = Rule(RobustRule::kCenteredClip);
      cfg.clip_bound = 1.5;
      cfg.cc_iterations = 3;
      RobustAggregator agg(dim, a, cfg);
      CHECK(agg.StateSize() == 1 + dim);
      Dense centre(dim, 0.0);
      for (uint64_t round = 0; round < 3; ++round) {
        std::vector<SparseUpdate> us = RandomRound(7, dim, 15, 20 + round);
        for (float& v : us[round].values) v += 10.0f;  // one update far from the rest
        const auto w = RandomWeights(7, 30 + round);
        std::vector<double> factors;
        const Dense want = ReferenceCenteredClip(us, w, centre, 1.5, 3, a, factors);
        Outcome o = Run(agg, Inputs(us, w));
        REQUIRE(o.status.ok());
        CheckClose(o.out, want, 1e-4);
        for (size_t i = 0; i < us.size(); ++i) {
          if (factors[i] < 1.0) {
            CHECK(o.verdicts[i].action == RobustAction::kClipped);
            CHECK(o.verdicts[i].factor == doctest::Approx(factors[i]).epsilon(1e-4));
            CHECK(o.verdicts[i].reason.find("from the centre > tau 1.5") != std::string::npos);
          } else {
            CHECK(o.verdicts[i].action == RobustAction::kKept);
          }
        }
        CHECK(o.verdicts[round].action == RobustAction::kClipped);
        const std::vector<float> state = agg.State();
        REQUIRE(state.size() == 1 + dim);
        for (size_t j = 0; j < dim; ++j) CHECK(state[1 + j] == doctest::Approx(centre[j]).epsilon(1e-4));
      }
      RobustAggregator restarted(dim, a, cfg);
      REQUIRE(restarted.SetState(agg.State()).ok());
      CHECK(restarted.State() == agg.State());
      const auto next = RandomRound(7, dim, 15, 99);
      Outcome x = Run(agg, Inputs(next)), y = Run(restarted, Inputs(next));
      REQUIRE(x.status.ok());
      REQUIRE(y.status.ok());
      CHECK(x.out == y.out);
    }
  }

  TEST_CASE("centered clipping's running tau starts as the quantile of the norms (centre zero)") {
    RobustConfig cfg = Rule(RobustRule::kCenteredClip);
    cfg.clip_quantile = 0.75;
    RobustAggregator agg(120, Averaging::kSupport, cfg);
    const auto us = RandomRound(8, 120, 10, 40);
    std::vector<double> norms;
    for (const auto& u : us) norms.push_back(Norm(ToDense(u)));
    Outcome o = Run(agg, Inputs(us));
    REQUIRE(o.status.ok());
    const double tau = NearestRank(norms, 0.75);
    CHECK(agg.State()[0] == doctest::Approx(tau).epsilon(1e-6));
    Dense centre(120, 0.0);
    std::vector<double> factors;
    CheckClose(o.out, ReferenceCenteredClip(us, std::vector<double>(8, 1.0), centre, agg.State()[0], 1,
                                            Averaging::kSupport, factors),
               1e-4);
    CHECK(std::count(factors.begin(), factors.end(), 1.0) == 6);  // 2 of 8 above the 0.75 quantile
  }

  TEST_CASE("median and trimmed mean match brute force over the values present, verdicts count what was cut") {
    for (uint64_t seed = 0; seed < 20; ++seed) {
      const size_t n = 3 + seed % 9;
      const auto us = RandomRound(n, 40, static_cast<uint32_t>(5 + seed % 20), 100 + seed);
      for (bool trimmed : {false, true}) {
        for (Averaging a : {Averaging::kAll, Averaging::kSupport}) {
          RobustConfig cfg = Rule(trimmed ? RobustRule::kTrimmedMean : RobustRule::kMedian);
          cfg.trim_fraction = 0.25;
          RobustAggregator agg(40, a, cfg);
          // Weights do not enter the coordinate-wise rules.
          Outcome o = Run(agg, Inputs(us, RandomWeights(n, seed)));
          REQUIRE(o.status.ok());
          std::vector<size_t> used;
          CheckClose(o.out, ReferenceCoordinateWise(us, trimmed, 0.25, a, used));
          for (size_t i = 0; i < n; ++i) {
            const size_t k = us[i].indices.size();
            if (used[i] == k) {
              CHECK(o.verdicts[i].action == RobustAction::kKept);
            } else {
              CHECK(o.verdicts[i].action == RobustAction::kDownweighted);
              CHECK(o.verdicts[i].factor == doctest::Approx(static_cast<double>(used[i]) / static_cast<double>(k)));
              CHECK(o.verdicts[i].reason == std::to_string(k - used[i]) + " of " + std::to_string(k) + " values " +
                                                (trimmed ? "trimmed" : "off the median"));
            }
          }
        }
      }
    }
  }

  TEST_CASE("median, trimmed mean and Krum distances hold over more values than one transposition block") {
    // 300 updates of 4,000 values: 1.2 million values, transposed in two blocks.
    const uint32_t dim = 200000;
    const auto us = RandomRound(300, dim, 4000, 700);
    for (bool trimmed : {false, true}) {
      RobustAggregator agg(dim, Averaging::kSupport, Rule(trimmed ? RobustRule::kTrimmedMean : RobustRule::kMedian));
      Outcome o = Run(agg, Inputs(us));
      REQUIRE(o.status.ok());
      std::vector<size_t> used;
      CheckClose(o.out, ReferenceCoordinateWise(us, trimmed, RobustConfig{}.trim_fraction, Averaging::kSupport, used));
      for (size_t i = 0; i < us.size(); ++i) {
        CHECK(o.verdicts[i].factor == doctest::Approx(static_cast<double>(used[i]) / 4000.0));
      }
    }
    std::vector<const SparseUpdate*> ptrs;
    for (const auto& u : us) ptrs.push_back(&u);
    const std::vector<double> d = PairwiseSquaredDistances(ptrs, dim);
    for (size_t i = 0; i < us.size(); i += 37) {
      for (size_t j = 0; j < us.size(); j += 23) {
        const Dense a = ToDense(us[i]), b = ToDense(us[j]);
        double want = 0;
        for (size_t c = 0; c < dim; ++c) want += (a[c] - b[c]) * (a[c] - b[c]);
        CHECK(d[i * us.size() + j] == doctest::Approx(want).epsilon(1e-9));
      }
    }
  }

  TEST_CASE("a coordinate carried by 2 of 10 updates gets their median, not zero") {
    std::vector<SparseUpdate> us(10);
    for (size_t i = 0; i < 10; ++i) {
      us[i].dim = 6;
      us[i].indices = {static_cast<uint32_t>(i < 2 ? 1 : 3)};
      us[i].values = {i < 2 ? 0.5f + static_cast<float>(i) : -1.0f};
    }
    for (RobustRule r : {RobustRule::kMedian, RobustRule::kTrimmedMean}) {
      RobustAggregator agg(6, Averaging::kSupport, Rule(r));
      Outcome o = Run(agg, Inputs(us));
      REQUIRE(o.status.ok());
      CHECK(o.out[1] == doctest::Approx(1.0));  // median of {0.5, 1.5}
      CHECK(o.out[3] == doctest::Approx(-1.0));
      CHECK(o.out[0] == 0.0f);  // carried by none
      // kAll scales by the share carrying the coordinate, as FedAvg would.
      RobustAggregator diluted(6, Averaging::kAll, Rule(r));
      Outcome d = Run(diluted, Inputs(us));
      REQUIRE(d.status.ok());
      CHECK(d.out[1] == doctest::Approx(0.2));
    }
  }

  TEST_CASE("trimmed mean falls back to the median when trimming would leave nothing") {
    std::vector<SparseUpdate> us;
    for (float v : {1.0f, 2.0f, 10.0f, 40.0f}) us.push_back(FromDense({v}));
    RobustConfig cfg = Rule(RobustRule::kTrimmedMean);
    cfg.trim_fraction = 0.5;
    RobustAggregator agg(1, Averaging::kSupport, cfg);
    Outcome o = Run(agg, Inputs(us));
    REQUIRE(o.status.ok());
    CHECK(o.out[0] == doctest::Approx(6.0));
    cfg.trim_fraction = 0.25;  // cuts 1 at each end
    RobustAggregator quarter(1, Averaging::kSupport, cfg);
    o = Run(quarter, Inputs(us));
    REQUIRE(o.status.ok());
    CHECK(o.out[0] == doctest::Approx(6.0));
    CHECK(o.verdicts[3].action == RobustAction::kDownweighted);
    CHECK(o.verdicts[3].reason == "1 of 1 values trimmed");
    CHECK(o.verdicts[1].action == RobustAction::kKept);
  }

  TEST_CASE("sparse pairwise distances equal dense ones, coordinate by coordinate and pair by pair") {
    // Spread sparse supports take the per-coordinate path, dense updates the pairwise one.
    std::vector<SparseUpdate> sparse = RandomRound(9, 500, 60, 200);
    sparse.push_back(RandomSparse(500, 0, 1));    // empty update
    sparse.push_back(RandomSparse(500, 500, 2));  // dense
    const std::vector<SparseUpdate> dense = RandomRound(6, 50, 50, 210);
    for (const std::vector<SparseUpdate>* us : {&std::as_const(sparse), &dense}) {
      const uint32_t dim = (*us)[0].dim;
      std::vector<const SparseUpdate*> ptrs;
      for (const auto& u : *us) ptrs.push_back(&u);
      const std::vector<double> d = PairwiseSquaredDistances(ptrs, dim);
      const size_t n = us->size();
      REQUIRE(d.size() == n * n);
      for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < n; ++j) {
          const Dense a = ToDense((*us)[i]), b = ToDense((*us)[j]);
          double want = 0;
          for (size_t c = 0; c < dim; ++c) want += (a[c] - b[c]) * (a[c] - b[c]);
          CHECK(d[i * n + j] == doctest::Approx(want).epsilon(1e-9).scale(1.0));
        }
      }
    }
  }

  TEST_CASE("multi-Krum selects as the dense reference does and rejects a far outlier") {
    const uint32_t dim = 60;
    std::vector<SparseUpdate> us;
    for (size_t i = 0; i < 11; ++i) us.push_back(RandomSparse(dim, 30, 300 + i, 0.3, 1.0));
    for (float& v : us[4].values) v = -20.0f;  // the outlier
    const auto w = RandomWeights(11, 9);
    RobustAggregator agg(dim, Averaging::kAll, Rule(RobustRule::kMultiKrum));  // f = 2, m = 9
    Outcome o = Run(agg, Inputs(us, w));
    REQUIRE(o.status.ok());
    const std::vector<size_t> want = ReferenceKrumSelection(us, 2, 9);
    std::vector<size_t> got;
    std::vector<SparseUpdate> kept;
    std::vector<double> kept_w;
    for (size_t i = 0; i < us.size(); ++i) {
      if (o.verdicts[i].action == RobustAction::kKept) {
        got.push_back(i), kept.push_back(us[i]), kept_w.push_back(w[i]);
      } else {
        CHECK(o.verdicts[i].action == RobustAction::kRejected);
        CHECK(o.verdicts[i].factor == 0.0);
        CHECK(o.verdicts[i].reason.find("Krum score") != std::string::npos);
      }
    }
    CHECK(got == want);
    CHECK(std::find(got.begin(), got.end(), 4) == got.end());
    CheckClose(o.out, ReferenceMean(kept, kept_w, Averaging::kAll));

    RobustConfig one = Rule(RobustRule::kMultiKrum);
    one.krum_byzantine = 3;
    one.krum_select = 1;  // classic Krum
    RobustAggregator krum(dim, Averaging::kSupport, one);
    Outcome k = Run(krum, Inputs(us, w));
    REQUIRE(k.status.ok());
    const std::vector<size_t> chosen = ReferenceKrumSelection(us, 3, 1);
    CHECK(k.verdicts[chosen[0]].action == RobustAction::kKept);
    CheckClose(k.out, ToDense(us[chosen[0]]));
  }

  TEST_CASE("multi-Krum copes with one, two and three updates") {
    for (size_t n = 1; n <= 3; ++n) {
      const auto us = RandomRound(n, 20, 5, 400 + n);
      RobustAggregator agg(20, Averaging::kSupport, Rule(RobustRule::kMultiKrum));
      Outcome o = Run(agg, Inputs(us));
      REQUIRE(o.status.ok());
      REQUIRE(o.verdicts.size() == n);
      // f = 0 for n < 5, so all n are selected: the mean of all.
      CheckClose(o.out, ReferenceMean(us, std::vector<double>(n, 1.0), Averaging::kSupport));
    }
    RobustConfig cfg = Rule(RobustRule::kMultiKrum);
    cfg.krum_byzantine = 5;  // more than n: still one nearest neighbour, m clamped to 1
    RobustAggregator agg(20, Averaging::kSupport, cfg);
    const auto us = RandomRound(3, 20, 5, 410);
    Outcome o = Run(agg, Inputs(us));
    REQUIRE(o.status.ok());
    CHECK(std::count_if(o.verdicts.begin(), o.verdicts.end(),
                        [](const RobustVerdict& v) { return v.action == RobustAction::kKept; }) == 1);
  }

  TEST_CASE("FLTrust rejects a sign-flipped update and matches the dense reference") {
    const uint32_t dim = 50;
    std::vector<float> g(dim);
    Rng rng(500);
    for (float& x : g) x = static_cast<float>(rng.Normal());
    const SparseUpdate reference = FromDense(g);
    std::vector<SparseUpdate> us;
    for (size_t i = 0; i < 6; ++i) {
      SparseUpdate u = RandomSparse(dim, 20, 510 + i, 0.5);
      for (size_t t = 0; t < u.indices.size(); ++t) u.values[t] += g[u.indices[t]];  // honest: near g
      us.push_back(u);
    }
    for (float& v : us[3].values) v = -5.0f * v;  // sign-flipped and scaled up
    for (Averaging a : {Averaging::kAll, Averaging::kSupport}) {
      RobustAggregator agg(dim, a, Rule(RobustRule::kFlTrust));
      Outcome o = Run(agg, Inputs(us, RandomWeights(6, 1)), &reference);
      REQUIRE(o.status.ok());
      const Dense g0 = ToDense(reference);
      const double g0n = Norm(g0);
      std::vector<Dense> xs;
      std::vector<std::vector<bool>> sup;
      std::vector<double> trust;
      for (size_t i = 0; i < us.size(); ++i) {
        Dense x = ToDense(us[i]);
        const double xn = Norm(x);
        double dot = 0;
        for (size_t j = 0; j < dim; ++j) dot += x[j] * g0[j];
        const double cosine = dot / (xn * g0n);
        const double t = std::max(0.0, cosine);
        if (t == 0) {
          CHECK(o.verdicts[i].action == RobustAction::kRejected);
          CHECK(o.verdicts[i].reason.find("with the server update") != std::string::npos);
          continue;
        }
        CHECK(o.verdicts[i].action == RobustAction::kDownweighted);
        CHECK(o.verdicts[i].factor == doctest::Approx(t));
        for (double& v : x) v *= g0n / xn;
        xs.push_back(x), sup.push_back(Support(us[i])), trust.push_back(t);
      }
      CHECK(o.verdicts[3].action == RobustAction::kRejected);
      CHECK(o.verdicts[3].reason.rfind("cosine -", 0) == 0);
      CheckClose(o.out, ReferenceMean(xs, sup, trust, a), 1e-4);
    }
  }

  TEST_CASE("FLTrust with no positive cosine gives a zero aggregate and says so") {
    const SparseUpdate reference = FromDense({1.0f, 1.0f, 1.0f});
    std::vector<SparseUpdate> us = {FromDense({-1.0f, 0.0f, 0.0f}), FromDense({0.0f, -2.0f, 1.0f})};
    RobustAggregator agg(3, Averaging::kAll, Rule(RobustRule::kFlTrust));
    Outcome o = Run(agg, Inputs(us), &reference);
    REQUIRE(o.status.ok());
    CHECK(o.out == std::vector<float>{0.0f, 0.0f, 0.0f});
    for (const auto& v : o.verdicts) {
      CHECK(v.action == RobustAction::kRejected);
      CHECK(v.reason.find("the aggregate is zero") != std::string::npos);
    }
  }

  TEST_CASE("bad input is refused with an error naming it, and leaves the state alone") {
    const auto us = RandomRound(3, 30, 5, 600);
    RobustConfig cfg = Rule(RobustRule::kNormBound);
    RobustAggregator agg(30, Averaging::kAll, cfg);
    std::vector<float> out(30);
    std::vector<RobustVerdict> verdicts;
    auto message = [&](std::vector<RobustInput> in, const SparseUpdate* ref = nullptr) {
      Status s = agg.Aggregate(in, ref, out, verdicts);
      REQUIRE_FALSE(s.ok());
      CHECK(verdicts.empty());
      return s.error().message();
    };
    CHECK(message({}).find("no updates") != std::string::npos);
    auto in = Inputs(us);
    in[1].update = nullptr;
    CHECK(message(in) == "update of client 101 is null");
    SparseUpdate wrong_dim = us[0];
    wrong_dim.dim = 31;
    in = Inputs(us);
    in[2].update = &wrong_dim;
    CHECK(message(in).find("dimension 31") != std::string::npos);
    SparseUpdate nan = us[0];
    nan.values[1] = std::numeric_limits<float>::quiet_NaN();
    in = Inputs(us);
    in[0].update = &nan;
    CHECK(message(in).find("update of client 100") != std::string::npos);
    SparseUpdate unsorted = us[0];
    std::swap(unsorted.indices[0], unsorted.indices[1]);
    in[0].update = &unsorted;
    CHECK(message(in).find("update of client 100") != std::string::npos);
    in = Inputs(us);
    in[1].weight = 0;
    CHECK(message(in).find("weight") != std::string::npos);
    std::vector<float> short_out(29);
    CHECK_FALSE(agg.Aggregate(Inputs(us), nullptr, short_out, verdicts).ok());
    CHECK(agg.State() == std::vector<float>{0.0f});  // no round was folded into the bound

    RobustAggregator fltrust(30, Averaging::kAll, Rule(RobustRule::kFlTrust));
    Status s = fltrust.Aggregate(Inputs(us), nullptr, out, verdicts);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message().find("fltrust needs") != std::string::npos);
    const SparseUpdate zero = FromDense(std::vector<float>(30, 0.0f));
    s = fltrust.Aggregate(Inputs(us), &zero, out, verdicts);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message().find("reference update is zero") != std::string::npos);

    RobustConfig bad = Rule(RobustRule::kTrimmedMean);
    bad.trim_fraction = 0.7;
    RobustAggregator trim(30, Averaging::kAll, bad);
    s = trim.Aggregate(Inputs(us), nullptr, out, verdicts);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message().find("trim_fraction") != std::string::npos);

    CHECK_FALSE(agg.SetState(std::vector<float>{1.0f, 2.0f}).ok());
    CHECK_FALSE(agg.SetState(std::vector<float>{-1.0f}).ok());
    CHECK_FALSE(agg.SetState(std::vector<float>{std::numeric_limits<float>::infinity()}).ok());
    CHECK(agg.SetState(std::vector<float>{3.0f}).ok());
    CHECK(agg.State() == std::vector<float>{3.0f});
  }

  // FoolsGold straight from Fung et al.'s Algorithm 1, on dense histories of
  // every client seen: returns the weight multiplier (alpha) of each update.
  struct ReferenceFoolsGold {
    size_t dim, width;
    std::vector<uint64_t> ids;
    std::vector<Dense> hist;
    std::vector<double> Round(const std::vector<SparseUpdate>& us, const std::vector<uint64_t>& clients) {
      std::vector<size_t> rows;
      for (size_t i = 0; i < us.size(); ++i) {
        auto it = std::find(ids.begin(), ids.end(), clients[i]);
        if (it == ids.end()) ids.push_back(clients[i]), hist.emplace_back(width, 0.0), it = ids.end() - 1;
        const auto r = static_cast<size_t>(it - ids.begin());
        const Dense x = ToDense(us[i]);
        for (size_t t = 0; t < width; ++t) hist[r][t] += static_cast<float>(x[dim - width + t]);
        rows.push_back(r);
      }
      const size_t k = ids.size();
      auto cs = [&](size_t a, size_t b) {
        double dot = 0, na = 0, nb = 0;
        for (size_t t = 0; t < width; ++t) dot += hist[a][t] * hist[b][t], na += hist[a][t] * hist[a][t], nb += hist[b][t] * hist[b][t];
        return na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : 0.0;
      };
      std::vector<double> v(k, 0.0);
      for (size_t a = 0; a < k; ++a)
        for (size_t b = 0; b < k; ++b)
          if (a != b) v[a] = std::max(v[a], cs(a, b));
      std::vector<double> alpha;
      for (size_t r : rows) {
        double most = 0;
        for (size_t b = 0; b < k; ++b) {
          if (b == r) continue;
          double c = cs(r, b);
          if (v[b] > v[r]) c *= v[r] / v[b];
          most = std::max(most, c);
        }
        alpha.push_back(std::clamp(1 - most, 0.0, 1.0));
      }
      const double top = *std::max_element(alpha.begin(), alpha.end());
      for (double& a : alpha) {
        a = top > 0 ? a / top : 0;
        if (a == 1) a = 0.99;
        a = a > 0 ? std::clamp(std::log(a / (1 - a)) + 0.5, 0.0, 1.0) : 0.0;
      }
      return alpha;
    }
  };

  TEST_CASE("FoolsGold matches the paper's algorithm over rounds, with and without a tail, and its state round-trips") {
    const uint32_t dim = 40;
    for (uint32_t tail : {0u, 12u}) {
      for (Averaging a : {Averaging::kAll, Averaging::kSupport}) {
        RobustConfig cfg = Rule(RobustRule::kFoolsGold);
        cfg.foolsgold_tail = tail;
        RobustAggregator agg(dim, a, cfg);
        ReferenceFoolsGold ref{dim, tail > 0 ? tail : dim, {}, {}};
        // Two sybils (clients 7 and 8) send the same direction plus a little noise.
        const SparseUpdate sybil = RandomSparse(dim, 30, 900, 1.0, 0.5);
        for (uint64_t round = 0; round < 6; ++round) {
          std::vector<SparseUpdate> us;
          std::vector<uint64_t> clients;
          for (uint64_t c = 0; c < 4; ++c) {
            clients.push_back((round + c) % 6);  // honest clients 0-5 come back in turn
            us.push_back(RandomSparse(dim, 15, DeriveSeed(910 + round, c)));
          }
          for (uint64_t c : {7u, 8u}) {
            SparseUpdate u = sybil;
            for (float& x : u.values) x += static_cast<float>(0.01 * (c + round));
            clients.push_back(c), us.push_back(u);
          }
          std::vector<RobustInput> in;
          const auto w = RandomWeights(us.size(), round);
          for (size_t i = 0; i < us.size(); ++i) in.push_back({clients[i], &us[i], w[i]});
          Outcome o = Run(agg, in);
          REQUIRE(o.status.ok());
          const std::vector<double> alpha = ref.Round(us, clients);
          std::vector<SparseUpdate> kept;
          std::vector<double> kept_w;
          for (size_t i = 0; i < us.size(); ++i) {
            INFO("round " << round << " client " << clients[i]);
            if (alpha[i] == 0) {
              CHECK(o.verdicts[i].action == RobustAction::kRejected);
              continue;
            }
            CHECK(o.verdicts[i].factor == doctest::Approx(alpha[i]).epsilon(1e-6));
            kept.push_back(us[i]), kept_w.push_back(w[i] * alpha[i]);
          }
          // The sybils find each other and are cut from the aggregate.
          CHECK(o.verdicts[4].action == RobustAction::kRejected);
          CHECK(o.verdicts[5].action == RobustAction::kRejected);
          CHECK(o.verdicts[4].reason.find("with client 8") != std::string::npos);
          CheckClose(o.out, ReferenceMean(kept, kept_w, a), 1e-4);
        }
        // A restart from State() carries on exactly.
        RobustAggregator restored(dim, a, cfg);
        REQUIRE(restored.SetState(agg.State()).ok());
        CHECK(restored.State() == agg.State());
        const auto next = RandomRound(5, dim, 10, 990);
        std::vector<RobustInput> in;
        for (size_t i = 0; i < next.size(); ++i) in.push_back({i * 3, &next[i], 1.0});
        Outcome x = Run(agg, in), y = Run(restored, in);
        REQUIRE(x.status.ok());
        REQUIRE(y.status.ok());
        CHECK(x.out == y.out);
        CHECK(agg.State() == restored.State());
      }
    }
  }

  TEST_CASE("FoolsGold keeps dissimilar clients and refuses a corrupt state") {
    RobustAggregator agg(4, Averaging::kAll, Rule(RobustRule::kFoolsGold));
    const std::vector<SparseUpdate> us = {FromDense({1, 0, 0, 0}), FromDense({0, 1, 0, 0}), FromDense({0, 0, 1, 0})};
    Outcome o = Run(agg, Inputs(us));
    REQUIRE(o.status.ok());
    for (const auto& v : o.verdicts) CHECK(v.action == RobustAction::kKept);  // orthogonal: nobody alike
    Dense want(4, 1.0 / 3);  // (GCC 12 -O3 -march=native gave want[3] = 1/3 for the braced list {1/3, 1/3, 1/3, 0})
    want[3] = 0;
    CheckClose(o.out, want);
    const std::vector<float> state = agg.State();
    REQUIRE(state.size() == 3 * (3 + 4));
    CHECK(agg.StateSize() == state.size());
    RobustAggregator fresh(4, Averaging::kAll, Rule(RobustRule::kFoolsGold));
    CHECK(fresh.SetState(std::vector<float>(8, 0.0f)).error().message().find("whole number") != std::string::npos);
    std::vector<float> bad = state;
    bad[0] = 0.5f;  // not an integer piece of an id
    CHECK(fresh.SetState(bad).error().message().find("client id") != std::string::npos);
    bad = state;
    bad[3] = std::numeric_limits<float>::quiet_NaN();
    CHECK(fresh.SetState(bad).error().message().find("non-finite") != std::string::npos);
    bad = state;
    std::copy(state.begin(), state.begin() + 3, bad.begin() + 7);  // the second record names client 100 again
    CHECK(fresh.SetState(bad).error().message().find("twice") != std::string::npos);
    CHECK(fresh.State().empty());
    CHECK(fresh.SetState(state).ok());
    CHECK(fresh.State() == state);
  }

  // Bulyan by brute force on dense copies: Krum theta times over what is left,
  // then per coordinate the mean of the beta values nearest the median among
  // the values the selected updates carry, values tied at the last distance
  // sharing the places left.
  std::pair<Dense, std::vector<bool>> ReferenceBulyan(const std::vector<SparseUpdate>& us, size_t f, Averaging a) {
    const size_t n = us.size(), dim = us[0].dim, theta = n > 2 * f ? n - 2 * f : 1;
    std::vector<Dense> xs;
    for (const auto& u : us) xs.push_back(ToDense(u));
    auto dist = [&](size_t i, size_t j) {
      double s2 = 0;
      for (size_t t = 0; t < dim; ++t) s2 += (xs[i][t] - xs[j][t]) * (xs[i][t] - xs[j][t]);
      return s2;
    };
    std::vector<bool> sel(n, false);
    for (size_t pick = 0; pick < theta; ++pick) {
      const size_t left = n - pick;
      const size_t nb = left < 2 ? 0 : std::clamp<size_t>(left > f + 2 ? left - f - 2 : 1, 1, left - 1);
      size_t best = n;
      double best_score = 0;
      for (size_t i = 0; i < n; ++i) {
        if (sel[i]) continue;
        std::vector<double> ds;
        for (size_t j = 0; j < n; ++j)
          if (j != i && !sel[j]) ds.push_back(dist(i, j));
        std::sort(ds.begin(), ds.end());
        const double score = std::accumulate(ds.begin(), ds.begin() + static_cast<std::ptrdiff_t>(nb), 0.0);
        if (best == n || score < best_score) best = i, best_score = score;
      }
      sel[best] = true;
    }
    Dense out(dim, 0.0);
    for (size_t j = 0; j < dim; ++j) {
      std::vector<double> vals;
      for (size_t i = 0; i < n; ++i) {
        if (sel[i] && Support(us[i])[j]) vals.push_back(static_cast<float>(xs[i][j]));
      }
      if (vals.empty()) continue;
      std::sort(vals.begin(), vals.end());
      const size_t c = vals.size();
      const double med = c % 2 ? vals[c / 2] : 0.5 * (vals[c / 2 - 1] + vals[c / 2]);
      const size_t cut = c * f / theta, beta = c > 2 * cut ? c - 2 * cut : 1;
      // The beta nearest: every value nearer than the beta-th nearest distance,
      // and those at that distance sharing the places left equally.
      std::vector<double> gap(c);
      for (size_t t = 0; t < c; ++t) gap[t] = std::abs(vals[t] - med);
      std::vector<double> sorted_gap = gap;
      std::sort(sorted_gap.begin(), sorted_gap.end());
      const double last = sorted_gap[beta - 1];
      double nearer = 0, at = 0;
      size_t n_nearer = 0, n_at = 0;
      for (size_t t = 0; t < c; ++t) {
        if (gap[t] < last) nearer += vals[t], ++n_nearer;
        if (gap[t] == last) at += vals[t], ++n_at;
      }
      const double mean =
          (nearer + at * static_cast<double>(beta - n_nearer) / static_cast<double>(n_at)) / static_cast<double>(beta);
      out[j] = a == Averaging::kAll ? mean * static_cast<double>(c) / static_cast<double>(n) : mean;
    }
    return {out, sel};
  }

  TEST_CASE("Bulyan selects and averages as the brute-force reference does, and rejects far outliers") {
    const uint32_t dim = 60;
    for (size_t n : {3u, 7u, 10u}) {
      for (Averaging a : {Averaging::kAll, Averaging::kSupport}) {
        auto us = RandomRound(n, dim, 25, 1000 + n);
        for (float& v : us[1].values) v *= 40.0f;  // a scaled attacker
        RobustAggregator agg(dim, a, Rule(RobustRule::kBulyan));
        Outcome o = Run(agg, Inputs(us));
        REQUIRE(o.status.ok());
        const auto [want, sel] = ReferenceBulyan(us, n / 5, a);
        CheckClose(o.out, want, 1e-5);
        for (size_t i = 0; i < n; ++i) {
          INFO("n " << n << " update " << i);
          CHECK((o.verdicts[i].action == RobustAction::kRejected) == !sel[i]);
        }
        if (n >= 7) {
          CHECK(o.verdicts[1].action == RobustAction::kRejected);
          CHECK(o.verdicts[1].reason.find("not among Bulyan's") != std::string::npos);
        }
      }
    }
  }

  TEST_CASE("multi-Krum's n >= 2f + 3 and Bulyan's n >= 4f + 3: a round below its bound says so, naming n and f") {
    for (size_t n = 1; n <= 200; ++n) {
      INFO("n " << n);
      const size_t f = n / 5;  // the default f, written out: floor(0.2 n)
      const std::string bulyan = RobustBoundShortfall(Rule(RobustRule::kBulyan), n);
      const std::string krum = RobustBoundShortfall(Rule(RobustRule::kMultiKrum), n);
      CHECK(KrumByzantine(Rule(RobustRule::kBulyan), n) == f);
      if (f == 0) {
        CHECK(bulyan.find("f = floor(0.2 n) = 0 at n = " + std::to_string(n) + " updates") != std::string::npos);
        CHECK(krum.find("assumes no Byzantine update") != std::string::npos);
        continue;
      }
      CHECK(bulyan.empty() == (n >= 4 * f + 3));
      CHECK(krum.empty() == (n >= 2 * f + 3));  // true from n = 5 on
      if (!bulyan.empty()) {
        CHECK(bulyan.find("bulyan's bound n >= 4f + 3 does not hold: n = " + std::to_string(n) + " updates, f = " +
                          std::to_string(f) + " (floor(0.2 n)) needs n >= " + std::to_string(4 * f + 3)) !=
              std::string::npos);
      }
      for (RobustRule r : {RobustRule::kNone, RobustRule::kNormBound, RobustRule::kCenteredClip,
                           RobustRule::kMedian, RobustRule::kTrimmedMean, RobustRule::kFlTrust,
                           RobustRule::kFoolsGold, RobustRule::kFlame}) {
        CHECK(RobustBoundShortfall(Rule(r), n).empty());
      }
    }
    // fmnist-dir0.5's 10 senders a round: Bulyan's bound fails, Krum's holds.
    CHECK_FALSE(RobustBoundShortfall(Rule(RobustRule::kBulyan), 10).empty());
    CHECK(RobustBoundShortfall(Rule(RobustRule::kMultiKrum), 10).empty());
    RobustConfig two = Rule(RobustRule::kMultiKrum);
    two.krum_byzantine = 2;  // a set f is the user's: named as such, whatever n
    CHECK(RobustBoundShortfall(two, 6).find("n = 6 updates, f = 2 (server.krum_byzantine) needs n >= 7") !=
          std::string::npos);
    CHECK(RobustBoundShortfall(two, 7).empty());
    CHECK(KrumByzantine(two, 100) == 2);
  }

  TEST_CASE("below its bound Bulyan keeps and rejects what it did before, and every verdict says the bound does not hold") {
    const uint32_t dim = 60;
    for (size_t n : {10u, 11u}) {
      auto us = RandomRound(n, dim, 25, 1200 + n);
      for (float& v : us[1].values) v *= 40.0f;  // a scaled attacker
      RobustAggregator agg(dim, Averaging::kAll, Rule(RobustRule::kBulyan));
      Outcome o = Run(agg, Inputs(us));
      REQUIRE(o.status.ok());
      // The same aggregate and selection as the brute-force reference, which knows nothing of the bound.
      const auto [want, sel] = ReferenceBulyan(us, n / 5, Averaging::kAll);
      CheckClose(o.out, want, 1e-5);
      const std::string shortfall = RobustBoundShortfall(Rule(RobustRule::kBulyan), n);
      CHECK(shortfall.empty() == (n == 11));
      for (size_t i = 0; i < n; ++i) {
        INFO("n " << n << " update " << i);
        const RobustVerdict& v = o.verdicts[i];
        CHECK((v.action == RobustAction::kRejected) == !sel[i]);
        if (v.action == RobustAction::kRejected) CHECK(v.reason.starts_with("not among Bulyan's"));
        if (v.action == RobustAction::kKept) {
          CHECK(v.reason == shortfall);  // empty when the bound holds
        } else if (!shortfall.empty()) {
          CHECK(v.reason.ends_with("; " + shortfall));
        }
        CHECK((v.reason.find("does not hold") != std::string::npos) == (n == 10));
      }
      CHECK(o.verdicts[1].action == RobustAction::kRejected);
    }
  }

  // What alie_flanders sends (docs/robustness.md, "Why the majority rules fall
  // to alie_flanders"): every attacker of a round the same update, far on one
  // side of the honest values on every coordinate. Ten senders a round, as on
  // fmnist-dir0.5, with m of them such clones: each rule holds while m is
  // under its breakdown point and follows the clones past it.
  TEST_CASE("identical one-sided clones: each rule holds up to its breakdown point and follows them past it") {
    const uint32_t dim = 40;
    const size_t n = 10, f = n / 5;  // the default f of multi_krum and bulyan
    const float clone = -5.0f;
    for (size_t m = 1; m <= 5; ++m) {
      std::vector<SparseUpdate> us;
      for (size_t i = 0; i < n - m; ++i) us.push_back(RandomSparse(dim, dim, 5000 + 31 * m + i, 0.1));
      std::vector<float> lo(dim, std::numeric_limits<float>::max()), hi(dim, -std::numeric_limits<float>::max());
      for (const SparseUpdate& u : us) {
        for (uint32_t j = 0; j < dim; ++j) lo[j] = std::min(lo[j], u.values[j]), hi[j] = std::max(hi[j], u.values[j]);
      }
      for (size_t i = 0; i < m; ++i) us.push_back(FromDense(std::vector<float>(dim, clone)));
      const auto in = Inputs(us);
      // Within the honest values on every coordinate, or below all of them on every one.
      auto inside = [&](const std::vector<float>& out) {
        for (uint32_t j = 0; j < dim; ++j) {
          if (out[j] < lo[j] || out[j] > hi[j]) return false;
        }
        return true;
      };
      auto below = [&](const std::vector<float>& out) {
        for (uint32_t j = 0; j < dim; ++j) {
          if (out[j] >= lo[j]) return false;
        }
        return true;
      };
      const std::string label = "m = " + std::to_string(m);
      INFO(label);

      RobustAggregator median(dim, Averaging::kAll, Rule(RobustRule::kMedian));
      Outcome o = Run(median, in);
      REQUIRE(o.status.ok());
      CHECK((m < n / 2 ? inside(o.out) : below(o.out)));  // the median's point: half the values

      RobustAggregator trimmed(dim, Averaging::kAll, Rule(RobustRule::kTrimmedMean));  // cuts 2 of 10 at each end
      o = Run(trimmed, in);
      REQUIRE(o.status.ok());
      CHECK((m <= 2 ? inside(o.out) : below(o.out)));

      // Multi-Krum averages n - f = 8: with more than f clones, m - f of them at least.
      RobustAggregator krum(dim, Averaging::kAll, Rule(RobustRule::kMultiKrum));
      o = Run(krum, in);
      REQUIRE(o.status.ok());
      size_t clones_kept = 0;
      for (size_t i = n - m; i < n; ++i) clones_kept += o.verdicts[i].action == RobustAction::kKept;
      const std::vector<size_t> want = ReferenceKrumSelection(us, f, n - f);
      CHECK(clones_kept == static_cast<size_t>(std::count_if(want.begin(), want.end(), [&](size_t i) { return i >= n - m; })));
      if (m <= f) CHECK(clones_kept == 0);
      if (m > f) CHECK(clones_kept >= m - f);

      // Bulyan at n = 10 < 4f + 3: its later Krum picks, over 5 or 6 updates,
      // sum 1 or 2 nearest distances, which are 0 between clones, so m - 1
      // clones are selected (m <= 4); 3 clones of its 6 own the median.
      RobustAggregator bulyan(dim, Averaging::kAll, Rule(RobustRule::kBulyan));
      o = Run(bulyan, in);
      REQUIRE(o.status.ok());
      const auto [bulyan_want, selected] = ReferenceBulyan(us, f, Averaging::kAll);
      CheckClose(o.out, bulyan_want, 1e-5);
      size_t clones_selected = 0;
      for (size_t i = n - m; i < n; ++i) clones_selected += selected[i] ? 1 : 0;
      if (m <= 4) CHECK(clones_selected == m - 1);
      CHECK((m <= 3 ? inside(o.out) : below(o.out)));
    }
  }

  TEST_CASE("Bulyan, median and trimmed mean prefer no side: negating every update negates the aggregate") {
    const uint32_t dim = 40;
    auto negated = [](std::vector<SparseUpdate> us) {
      for (SparseUpdate& u : us) {
        for (float& v : u.values) v = -v;
      }
      return us;
    };
    // Ten dense updates, four of them identical (alie_flanders' colluding
    // copies, which make exact ties at the median), and a sparse round.
    std::vector<SparseUpdate> clones;
    for (size_t i = 0; i < 6; ++i) clones.push_back(RandomSparse(dim, dim, 6100 + i, 0.1));
    for (size_t i = 0; i < 4; ++i) clones.push_back(FromDense(std::vector<float>(dim, -5.0f)));
    for (const auto& us : {clones, RandomRound(10, dim, 12, 6200)}) {
      const auto mirror = negated(us);
      for (RobustRule r : {RobustRule::kBulyan, RobustRule::kMedian, RobustRule::kTrimmedMean}) {
        for (Averaging a : {Averaging::kAll, Averaging::kSupport}) {
          INFO(RobustRuleName(r));
          RobustAggregator pos(dim, a, Rule(r)), neg(dim, a, Rule(r));
          Outcome p = Run(pos, Inputs(us)), q = Run(neg, Inputs(mirror));
          REQUIRE(p.status.ok());
          REQUIRE(q.status.ok());
          for (uint32_t j = 0; j < dim; ++j) CHECK(q.out[j] == doctest::Approx(-p.out[j]).epsilon(1e-6));
        }
      }
    }
    // With four copies among Bulyan's six selections, the copies and the
    // nearest honest value are equally near the median: the four share the two
    // places, so the copies get three quarters of the coordinate, not all of it.
    RobustAggregator bulyan(dim, Averaging::kSupport, Rule(RobustRule::kBulyan));  // no c/n dilution
    Outcome o = Run(bulyan, Inputs(clones));
    REQUIRE(o.status.ok());
    const auto [want, selected] = ReferenceBulyan(clones, 2, Averaging::kSupport);
    CheckClose(o.out, want, 1e-6);
    CHECK(std::count(selected.begin() + 6, selected.end(), true) == 3);
    for (uint32_t j = 0; j < dim; ++j) CHECK(o.out[j] > -5.0f + 1e-3f);
    // Each selected copy had half a place on every coordinate: its verdict says so.
    for (size_t i = 6; i < 10; ++i) {
      if (!selected[i]) continue;
      CHECK(o.verdicts[i].action == RobustAction::kDownweighted);
      CHECK(o.verdicts[i].factor == doctest::Approx(0.5));
      CHECK(o.verdicts[i].reason.find("0 of 40 values away from the median, some sharing a tie") != std::string::npos);
    }
  }

  // FLAME's plain reference: the admitted set by breadth-first search over
  // the links at each candidate level, lowest first (not union-find).
  std::vector<bool> ReferenceFlameCluster(const std::vector<double>& cd, size_t n) {
    if (n <= 2) return std::vector<bool>(n, true);
    std::vector<double> core(n);
    for (size_t i = 0; i < n; ++i) {
      std::vector<double> row;
      for (size_t j = 0; j < n; ++j) if (j != i) row.push_back(cd[i * n + j]);
      std::sort(row.begin(), row.end());
      core[i] = row[n / 2 - 1];
    }
    auto reach = [&](size_t i, size_t j) { return std::max({core[i], core[j], cd[i * n + j]}); };
    std::set<double> levels;
    for (size_t i = 0; i < n; ++i) for (size_t j = i + 1; j < n; ++j) levels.insert(reach(i, j));
    for (double level : levels) {
      std::vector<int> comp(n, -1);
      for (size_t s0 = 0; s0 < n; ++s0) {
        if (comp[s0] >= 0) continue;
        std::vector<size_t> stack = {s0}, members;
        comp[s0] = static_cast<int>(s0);
        while (!stack.empty()) {
          const size_t i = stack.back();
          stack.pop_back();
          members.push_back(i);
          for (size_t j = 0; j < n; ++j) {
            if (comp[j] < 0 && j != i && reach(i, j) <= level) comp[j] = static_cast<int>(s0), stack.push_back(j);
          }
        }
        if (members.size() >= n / 2 + 1) {
          std::vector<bool> in(n, false);
          for (size_t i : members) in[i] = true;
          return in;
        }
      }
    }
    return std::vector<bool>(n, true);
  }

  TEST_CASE("FLAME: the majority cluster on sparse cosine distances, clipping at the median norm, as a dense reference") {
    const uint32_t dim = 60;
    std::vector<float> g(dim);
    Rng rng(700);
    for (float& x : g) x = static_cast<float>(rng.Normal());
    // Seven honest updates near g on their own 30-coordinate supports, of
    // different norms; three attackers: two sign-flipped and boosted, one orthogonal-ish noise.
    std::vector<SparseUpdate> us;
    for (size_t i = 0; i < 10; ++i) {
      SparseUpdate u = RandomSparse(dim, 30, 710 + i, 0.3);
      for (size_t t = 0; t < u.indices.size(); ++t) u.values[t] += g[u.indices[t]] * static_cast<float>(0.5 + 0.2 * i);
      us.push_back(u);
    }
    for (float& v : us[2].values) v *= -4.0f;
    for (float& v : us[6].values) v *= -4.0f;
    us[8] = RandomSparse(dim, 30, 799, 3.0);
    for (Averaging a : {Averaging::kAll, Averaging::kSupport}) {
      RobustConfig cfg = Rule(RobustRule::kFlame);
      cfg.flame_noise = 0;  // the noise is checked below
      RobustAggregator agg(dim, a, cfg);
      const auto w = RandomWeights(10, 3);
      Outcome o = Run(agg, Inputs(us, w));
      REQUIRE(o.status.ok());
      // The reference, densely.
      const size_t n = us.size();
      std::vector<Dense> xs(n);
      std::vector<double> norms(n);
      for (size_t i = 0; i < n; ++i) xs[i] = ToDense(us[i]), norms[i] = Norm(xs[i]);
      std::vector<double> cd(n * n, 0.0);
      for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < n; ++j) {
          if (i == j) continue;
          double dot = 0;
          for (size_t c = 0; c < dim; ++c) dot += xs[i][c] * xs[j][c];
          cd[i * n + j] = 1 - dot / (norms[i] * norms[j]);
        }
      }
      const std::vector<bool> admitted = ReferenceFlameCluster(cd, n);
      CHECK(FlameCluster(cd, n) == admitted);
      CHECK_FALSE(admitted[2]);
      CHECK_FALSE(admitted[6]);
      CHECK_FALSE(admitted[8]);
      CHECK(admitted[0]);
      std::vector<double> sorted = norms;
      std::sort(sorted.begin(), sorted.end());
      const double bound = sorted[4];  // nearest-rank median of 10: the 5th smallest
      std::vector<Dense> kept;
      std::vector<std::vector<bool>> sup;
      std::vector<double> kw;
      for (size_t i = 0; i < n; ++i) {
        CAPTURE(i);
        if (!admitted[i]) {
          CHECK(o.verdicts[i].action == RobustAction::kRejected);
          CHECK(o.verdicts[i].reason.find("majority cluster") != std::string::npos);
          continue;
        }
        Dense x = xs[i];
        if (norms[i] > bound) {
          CHECK(o.verdicts[i].action == RobustAction::kClipped);
          CHECK(o.verdicts[i].factor == doctest::Approx(bound / norms[i]));
          for (double& v : x) v *= bound / norms[i];
        } else {
          CHECK(o.verdicts[i].action == RobustAction::kKept);
        }
        kept.push_back(x), sup.push_back(Support(us[i])), kw.push_back(w[i]);
      }
      CHECK(kept.size() >= 6);
      CheckClose(o.out, ReferenceMean(kept, sup, kw, a), 1e-4);
      CHECK(agg.State() == std::vector<float>{1.0f});
    }
  }

  TEST_CASE("FLAME adds noise of sd flame_noise x the median norm, seeded by the round, which its state carries") {
    const uint32_t dim = 20000;
    const auto us = RandomRound(5, dim, 400, 31);
    RobustConfig cfg = Rule(RobustRule::kFlame);
    cfg.flame_noise = 0.01;
    cfg.seed = 4;
    RobustConfig quiet = cfg;
    quiet.flame_noise = 0;
    RobustAggregator noisy(dim, Averaging::kAll, cfg), plain(dim, Averaging::kAll, quiet);
    Outcome a = Run(noisy, Inputs(us)), b = Run(plain, Inputs(us));
    REQUIRE(a.status.ok());
    REQUIRE(b.status.ok());
    std::vector<double> norms;
    for (const auto& u : us) norms.push_back(Norm(ToDense(u)));
    std::sort(norms.begin(), norms.end());
    const double sigma = 0.01 * norms[2];
    double sum = 0, sq = 0;
    for (uint32_t j = 0; j < dim; ++j) {
      const double e = a.out[j] - b.out[j];
      sum += e, sq += e * e;
    }
    CHECK(std::abs(sum / dim) < 5 * sigma / std::sqrt(dim));
    CHECK(std::sqrt(sq / dim) == doctest::Approx(sigma).epsilon(0.03));
    // Round 2 draws other noise; a restart from the state draws round 2's again.
    RobustAggregator restarted(dim, Averaging::kAll, cfg);
    REQUIRE(restarted.SetState(noisy.State()).ok());
    Outcome second = Run(noisy, Inputs(us)), again = Run(restarted, Inputs(us));
    CHECK(second.out == again.out);
    CHECK(second.out != a.out);
    CHECK_FALSE(restarted.SetState(std::vector<float>{1.5f}).ok());
  }

  TEST_CASE("rlr: sign votes by the updates carrying a coordinate; only the attackers' coordinates are negated") {
    // Four honest clients on coordinates 0-5, two attackers on 0 (against the
    // honest sign) and on 8-11, which no honest update carries: the trigger's
    // weights of a backdoor. theta = 3.
    const uint32_t dim = 12;
    auto make = [&](std::vector<std::pair<uint32_t, float>> iv) {
      SparseUpdate u;
      u.dim = dim;
      for (const auto& p : iv) u.indices.push_back(p.first), u.values.push_back(p.second);
      return u;
    };
    std::vector<SparseUpdate> us = {
        make({{0, 1.0f}, {1, 0.5f}, {2, -0.2f}, {3, 0.3f}}),
        make({{0, 0.8f}, {1, 0.4f}, {2, -0.1f}, {4, 0.6f}}),
        make({{0, 0.6f}, {1, 0.7f}, {2, -0.3f}, {5, -0.2f}}),
        make({{0, 0.9f}, {1, -0.1f}, {2, -0.4f}, {3, 0.2f}}),
        make({{0, -2.0f}, {8, 1.0f}, {9, 1.0f}, {10, -1.0f}, {11, 1.0f}}),
        make({{0, -2.0f}, {8, 1.0f}, {9, 1.0f}, {10, -1.0f}}),
    };
    const std::vector<double> w = {1, 2, 1, 3, 1, 1};
    std::vector<int32_t> votes;
    SignVotes(Inputs(us, w), dim, votes);
    // By hand: 0: 4 - 2; 1: 3 - 1; 2: -4; 3: 2; 4, 5: +-1; 6, 7: nobody; 8, 9: 2; 10: -2; 11: 1.
    CHECK(votes == std::vector<int32_t>{2, 2, -4, 2, 1, -1, 0, 0, 2, 2, -2, 1});
    for (Averaging a : {Averaging::kAll, Averaging::kSupport}) {
      for (bool zero : {false, true}) {
        CAPTURE(zero);
        RobustConfig cfg = Rule(RobustRule::kNone);
        cfg.rlr = true;
        cfg.rlr_threshold = 3;
        cfg.rlr_zero = zero;
        RobustAggregator agg(dim, a, cfg);
        Outcome o = Run(agg, Inputs(us, w));
        REQUIRE(o.status.ok());
        Dense want = ReferenceMean(us, w, a);
        for (uint32_t j : {0u, 1u, 3u, 4u, 5u, 8u, 9u, 10u, 11u}) want[j] = zero ? 0.0 : -want[j];
        CheckClose(o.out, want);
        CHECK(o.out[2] != 0.0f);  // the one coordinate with 4 agreeing votes keeps its step
        CHECK(o.out[6] == 0.0f);
        // Client 2 (index 2) carries 0, 1, 2, 5: three of them short of theta.
        CHECK(o.verdicts[2].action == RobustAction::kDownweighted);
        CHECK(o.verdicts[2].factor == doctest::Approx(0.25));
        CHECK(o.verdicts[4].factor == doctest::Approx(0.0));
        CHECK(o.verdicts[4].reason.find("5 of 5 values where the sign vote fell short of 3") != std::string::npos);
        CHECK(o.verdicts[4].reason.find(zero ? "zeroed" : "negated") != std::string::npos);
      }
    }
    // theta = 2: what at least two agreeing carriers push keeps its step, so
    // the attackers' shared coordinates 8-10 pass and 11 (one attacker) does not.
    RobustConfig cfg2 = Rule(RobustRule::kNone);
    cfg2.rlr = true;
    cfg2.rlr_threshold = 2;
    RobustAggregator agg2(dim, Averaging::kSupport, cfg2);
    Outcome o2 = Run(agg2, Inputs(us, w));
    REQUIRE(o2.status.ok());
    Dense want2 = ReferenceMean(us, w, Averaging::kSupport);
    for (uint32_t j : {4u, 5u, 11u}) want2[j] = -want2[j];
    CheckClose(o2.out, want2);
    CHECK(o2.verdicts[0].action == RobustAction::kKept);
    // A threshold of 0 is refused.
    // Votes of the updates flagged: without the attackers, coordinate 0 has 4.
    SignVotes(Inputs(us, w), dim, votes, {true, true, true, true, false, false});
    CHECK(votes == std::vector<int32_t>{4, 2, -4, 2, 1, -1, 0, 0, 0, 0, 0, 0});
    // On top of a rule: norm_bound clips the attackers (norm > 2) and keeps
    // its action; the vote's reason is appended.
    RobustConfig nb = Rule(RobustRule::kNormBound);
    nb.clip_bound = 2.0;
    nb.rlr = true;
    nb.rlr_threshold = 3;
    RobustAggregator agg_nb(dim, Averaging::kAll, nb);
    Outcome onb = Run(agg_nb, Inputs(us, w));
    REQUIRE(onb.status.ok());
    CHECK(onb.verdicts[4].action == RobustAction::kClipped);
    CHECK(onb.verdicts[4].reason.find("> bound 2; 5 of 5 values where the sign vote fell short of 3") != std::string::npos);
    CHECK(onb.verdicts[0].action == RobustAction::kDownweighted);
    RobustConfig plain_nb = nb;
    plain_nb.rlr = false;
    RobustAggregator agg_plain(dim, Averaging::kAll, plain_nb);
    Outcome oplain = Run(agg_plain, Inputs(us, w));
    REQUIRE(oplain.status.ok());
    for (uint32_t j = 0; j < dim; ++j) CHECK(onb.out[j] == (j == 2 ? oplain.out[j] : -oplain.out[j]));
    RobustConfig bad = Rule(RobustRule::kNone);
    bad.rlr = true;
    bad.rlr_threshold = 0;
    RobustAggregator agg0(dim, Averaging::kAll, bad);
    Outcome o0 = Run(agg0, Inputs(us, w));
    REQUIRE_FALSE(o0.status.ok());
    CHECK(o0.status.error().message().find("rlr_threshold") != std::string::npos);
  }

  TEST_CASE("rlr matches a dense reference on random sparse rounds, both averagings, negated and zeroed") {
    const uint32_t dim = 3000;
    // Heavily overlapping supports (k = 600 of 3,000) so that votes of every size occur.
    const auto us = RandomRound(10, dim, 600, 91);
    const auto w = RandomWeights(10, 92);
    for (Averaging a : {Averaging::kAll, Averaging::kSupport}) {
      for (bool zero : {false, true}) {
        for (uint32_t theta : {1u, 2u, 3u}) {
          RobustConfig cfg = Rule(RobustRule::kNone);
          cfg.rlr = true;
          cfg.rlr_threshold = theta;
          cfg.rlr_zero = zero;
          RobustAggregator agg(dim, a, cfg);
          Outcome o = Run(agg, Inputs(us, w));
          REQUIRE(o.status.ok());
          Dense want = ReferenceMean(us, w, a);
          std::vector<int> vote(dim, 0);
          for (const SparseUpdate& u : us) {
            const Dense x = ToDense(u);
            const std::vector<bool> sup = Support(u);
            for (uint32_t j = 0; j < dim; ++j) {
              if (sup[j]) vote[j] += x[j] > 0 ? 1 : x[j] < 0 ? -1 : 0;
            }
          }
          size_t flipped = 0;
          for (uint32_t j = 0; j < dim; ++j) {
            if (std::abs(vote[j]) < static_cast<int>(theta) && want[j] != 0) {
              want[j] = zero ? 0.0 : -want[j];
              ++flipped;
            }
          }
          if (theta > 1) CHECK(flipped > 100);
          CheckClose(o.out, want);
          for (size_t i = 0; i < us.size(); ++i) {
            size_t short_votes = 0;
            for (uint32_t j : us[i].indices) short_votes += std::abs(vote[j]) < static_cast<int>(theta);
            CHECK(o.verdicts[i].factor ==
                  doctest::Approx(1.0 - static_cast<double>(short_votes) / static_cast<double>(us[i].indices.size())));
          }
        }
      }
    }
  }

  // Euclidean distances of points in the plane (or on a line: y = 0).
  std::vector<double> PlaneDistances(const std::vector<std::pair<double, double>>& p) {
    const size_t n = p.size();
    std::vector<double> d(n * n);
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) d[i * n + j] = std::hypot(p[i].first - p[j].first, p[i].second - p[j].second);
    }
    return d;
  }

  TEST_CASE("HDBSCAN finds two well-separated groups and leaves far outliers as noise") {
    // A: a unit square and its centre; B: a unit square 9 to the right; two
    // points farther from both than the groups are from each other.
    // min_cluster_size 3, min_samples 2: by hand, the outliers leave the root
    // (at reachability 11.7 and 11.3) before it splits into A and B at 9, and
    // A (stability 6.5) and B (3.6) are each more stable than the root (1.2).
    const std::vector<std::pair<double, double>> pts = {{0, 0},  {1, 0},  {0, 1},  {1, 1},   {0.5, 0.5}, {10, 0},
                                                        {11, 0}, {10, 1}, {11, 1}, {-8, -8}, {5, 12}};
    const auto d = PlaneDistances(pts);
    for (bool single : {false, true}) {
      const std::vector<int32_t> labels = Hdbscan(d, pts.size(), {2, 3, single});
      CAPTURE(single);
      CHECK(labels[0] >= 0);
      for (size_t i = 1; i < 5; ++i) CHECK(labels[i] == labels[0]);
      CHECK(labels[5] >= 0);
      CHECK(labels[5] != labels[0]);
      for (size_t i = 6; i < 9; ++i) CHECK(labels[i] == labels[5]);
      CHECK(labels[9] == -1);
      CHECK(labels[10] == -1);
    }
    // A minimum cluster size above either group: no two clusters can form.
    // Without the root allowed everything is noise; with it, the root, whose
    // members are what stays to its end: it ends at 9, where A and B part
    // (both under 6), so the groups are in and the outliers, gone before, not.
    const std::vector<int32_t> none = Hdbscan(d, pts.size(), {2, 6, false});
    CHECK(std::count(none.begin(), none.end(), -1) == 11);
    const std::vector<int32_t> root = Hdbscan(d, pts.size(), {2, 6, true});
    for (size_t i = 0; i < 9; ++i) CHECK(root[i] == 0);
    CHECK(root[9] == -1);
    CHECK(root[10] == -1);
  }

  TEST_CASE("HDBSCAN's min_samples decides FLAME's cluster where the simpler majority rule does not look") {
    // Five honest points 0.1 apart on a line and one attacker 0.05 from the
    // last, three more attackers far away; n = 9, FLAME's min cluster size 5.
    // By hand, with min_samples 1 (single linkage) the six near points form
    // the cluster, which ends only when its 0.1 links are cut, all at one
    // level: the six are admitted. With min_samples 5 (HDBSCAN's default,
    // and the eighth session's simpler rule, core = the 4th nearest other)
    // the end point 0 has core 0.4 while the attacker at 0.45 has 0.35, so
    // the majority forms without 0 and 0 is noise.
    const std::vector<std::pair<double, double>> pts = {{0, 0},    {0.1, 0},  {0.2, 0},  {0.3, 0}, {0.4, 0},
                                                        {0.45, 0}, {10.0, 0}, {10.1, 0}, {10.2, 0}};
    const auto d = PlaneDistances(pts);
    const std::vector<bool> single = FlameCluster(d, 9, 1), dflt = FlameCluster(d, 9);
    CHECK(single == std::vector<bool>{true, true, true, true, true, true, false, false, false});
    CHECK(dflt == std::vector<bool>{false, true, true, true, true, true, false, false, false});
    CHECK(FlameCluster(d, 9, 5) == dflt);
    CHECK(ReferenceFlameCluster(d, 9) == dflt);
  }

  TEST_CASE("HDBSCAN at FLAME's parameters admits what the first majority component does, on random distances") {
    // With min_cluster_size n/2 + 1 no two clusters fit, so the condensed tree
    // is the root shedding points; the labelled ones are those left when it
    // ends, which is the first majority component of the mutual-reachability
    // graph. Checked against that brute-force reference (min_samples n/2 + 1),
    // on random points in the plane (distinct distances) and on cosine
    // distances of random sparse updates.
    for (uint64_t seed = 1; seed <= 40; ++seed) {
      Rng rng(seed);
      const size_t n = 3 + seed % 12;
      std::vector<std::pair<double, double>> pts(n);
      for (auto& p : pts) p = {rng.Normal() * (1 + 3 * (rng.Uniform() < 0.3)), rng.Normal()};
      const auto d = PlaneDistances(pts);
      CAPTURE(seed);
      const std::vector<bool> got = FlameCluster(d, n);
      CHECK(got == ReferenceFlameCluster(d, n));
      CHECK(static_cast<size_t>(std::count(got.begin(), got.end(), true)) >= n / 2 + 1);
    }
    // Two points: both admitted; one: admitted.
    CHECK(FlameCluster(std::vector<double>{0, 1, 1, 0}, 2) == std::vector<bool>{true, true});
    CHECK(FlameCluster(std::vector<double>{0}, 1) == std::vector<bool>{true});
  }
}

}  // namespace
}  // namespace frugal
