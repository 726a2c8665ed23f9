// frugal-robust-bench: what each robust aggregation rule costs on a round of
// sparse updates, as a ratio against plain FedAvg (rule none) measured in the
// same process, one JSON object per line. Inputs are synthetic and shaped like
// the pipeline's uplink: n updates of the 2NN's dimension (199,210) at a
// density, each on a uniformly random support with ternary values (+-mu, mu
// drawn per update), weights 1..100 samples; fltrust's reference is a dense
// N(0, 0.01^2) vector. A timed call is one RobustAggregator::Aggregate on an
// aggregator kept across calls, as the round engine keeps one across rounds.
// Every rule runs once untimed, then `reps` times, interleaved with the other
// rules; times are medians: thread CPU time (one core's work) and wall time
// (what the round waits, higher on a shared machine).
//
// A last line compares the two O(k) ways of taking a sparse dot product that
// multi-Krum needs n^2/2 of: a sorted-index merge, and a gather against the
// other update scattered into a dense row (what PairwiseSquaredDistances does).
//
// Usage: frugal-robust-bench [reps=3] [updates=1000] [density=0.02] [dim=199210] [rules=all]
// rules: a comma-separated subset (none is always timed, as the baseline).

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "measure.h"

#include "frugal/aggregate/robust.h"
#include "frugal/core/random.h"

namespace frugal {
namespace {

using bench::Measure;
using bench::ThreadCpuSeconds;
using bench::Timing;

using Json = nlohmann::ordered_json;

double Median(std::vector<double> v) {
  const auto mid = static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  return v[static_cast<size_t>(mid)];
}

[[noreturn]] void Die(const Error& e) {
  std::fprintf(stderr, "robust bench: %s\n", e.ToString().c_str());
  std::exit(1);
}

// k distinct indices of [0, dim), ascending (Floyd's sampling, then sorted).
std::vector<uint32_t> RandomSupport(uint32_t dim, uint32_t k, Rng& rng) {
  std::vector<bool> taken(dim, false);
  std::vector<uint32_t> out;
  out.reserve(k);
  for (uint32_t j = dim - k; j < dim; ++j) {
    auto t = static_cast<uint32_t>(rng.UniformInt(j + 1));
    if (taken[t]) t = j;
    taken[t] = true;
    out.push_back(t);
  }
  std::sort(out.begin(), out.end());
  return out;
}

SparseUpdate TernaryUpdate(uint32_t dim, uint32_t k, uint64_t seed) {
  Rng rng(seed);
  SparseUpdate u;
  u.dim = dim;
  u.indices = RandomSupport(dim, k, rng);
  const auto mu = static_cast<float>(0.005 + 0.01 * rng.Uniform());
  u.values.resize(k);
  for (float& v : u.values) v = rng.UniformInt(2) ? mu : -mu;
  return u;
}

double MergeDot(const SparseUpdate& a, const SparseUpdate& b) {
  double s = 0;
  size_t i = 0, j = 0;
  while (i < a.indices.size() && j < b.indices.size()) {
    if (a.indices[i] < b.indices[j]) {
      ++i;
    } else if (a.indices[i] > b.indices[j]) {
      ++j;
    } else {
      s += static_cast<double>(a.values[i++]) * b.values[j++];
    }
  }
  return s;
}

double GatherDot(const SparseUpdate& a, const std::vector<float>& dense_b) {
  double s = 0;
  for (size_t t = 0; t < a.indices.size(); ++t) s += static_cast<double>(a.values[t]) * dense_b[a.indices[t]];
  return s;
}

void CompareDots(const std::vector<SparseUpdate>& us, uint32_t dim, int pairs_per_row) {
  const size_t rows = std::min<size_t>(us.size(), 20);
  double sink = 0;
  const Timing merge = Measure(3, [&] {
    for (size_t i = 0; i < rows; ++i) {
      for (int p = 1; p <= pairs_per_row; ++p) sink += MergeDot(us[i], us[(i + static_cast<size_t>(p)) % us.size()]);
    }
  }, /*warm_up=*/1);
  std::vector<float> row(dim, 0.0f);
  const Timing gather = Measure(3, [&] {
    for (size_t i = 0; i < rows; ++i) {
      for (size_t t = 0; t < us[i].indices.size(); ++t) row[us[i].indices[t]] = us[i].values[t];
      for (int p = 1; p <= pairs_per_row; ++p) sink += GatherDot(us[(i + static_cast<size_t>(p)) % us.size()], row);
      for (uint32_t j : us[i].indices) row[j] = 0.0f;
    }
  }, /*warm_up=*/1);
  const double pairs = static_cast<double>(rows) * pairs_per_row;
  Json j;
  j["bench"] = "sparse_dot";
  j["k"] = us[0].indices.size();
  j["merge_ns_per_pair"] = 1e9 * merge.cpu_s / pairs;
  j["gather_ns_per_pair"] = 1e9 * gather.cpu_s / pairs;
  j["merge_over_gather"] = merge.cpu_s / gather.cpu_s;
  j["checksum"] = sink;
  std::printf("%s\n", j.dump().c_str());
}

}  // namespace
}  // namespace frugal

int main(int argc, char** argv) {
  using namespace frugal;
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 3;
  const size_t n = argc > 2 ? static_cast<size_t>(std::atol(argv[2])) : 1000;
  const double density = argc > 3 ? std::atof(argv[3]) : 0.02;
  const auto dim = static_cast<uint32_t>(argc > 4 ? std::atol(argv[4]) : 199210);
  const auto k = static_cast<uint32_t>(std::max(1.0, std::round(density * dim)));

  std::vector<SparseUpdate> updates(n);
  std::vector<RobustInput> inputs(n);
  Rng wrng(7);
  for (size_t i = 0; i < n; ++i) {
    updates[i] = TernaryUpdate(dim, k, DeriveSeed(42, i));
    inputs[i] = {i, &updates[i], 1.0 + static_cast<double>(wrng.UniformInt(100))};
  }
  SparseUpdate reference;
  reference.dim = dim;
  Rng grng(9);
  for (uint32_t j = 0; j < dim; ++j) {
    reference.indices.push_back(j);
    reference.values.push_back(static_cast<float>(0.01 * grng.Normal()));
  }

  // The rules' costs do not depend on the Averaging (it only picks the divisor).
  const Averaging averaging = Averaging::kSupport;
  std::vector<float> out(dim);
  std::vector<RobustVerdict> verdicts;
  std::vector<RobustRule> rules = {RobustRule::kNone,      RobustRule::kNormBound,   RobustRule::kCenteredClip,
                                   RobustRule::kMedian,    RobustRule::kTrimmedMean, RobustRule::kMultiKrum,
                                   RobustRule::kFlTrust,   RobustRule::kFoolsGold,   RobustRule::kBulyan,
                                   RobustRule::kFlame};
  // The robust learning rate (server.rlr) is an option on top of a rule: timed
  // on none and on centered_clip, named "none+rlr" and "centered_clip+rlr".
  std::vector<bool> with_rlr(rules.size(), false);
  for (RobustRule base : {RobustRule::kNone, RobustRule::kCenteredClip}) rules.push_back(base), with_rlr.push_back(true);
  auto name = [&](size_t r) { return std::string(RobustRuleName(rules[r])) + (with_rlr[r] ? "+rlr" : ""); };
  if (argc > 5) {  // a subset: the slow rules (foolsgold, bulyan) take seconds at 1,000 updates
    const std::string wanted = std::string(",") + argv[5] + ",";
    std::vector<RobustRule> kept_rules;
    std::vector<bool> kept_rlr;
    for (size_t r = 0; r < rules.size(); ++r) {
      if (r == 0 || wanted.find("," + name(r) + ",") != std::string::npos) {
        kept_rules.push_back(rules[r]), kept_rlr.push_back(with_rlr[r]);
      }
    }
    rules = kept_rules, with_rlr = kept_rlr;
  }
  // FoolsGold compares the clients' histories on the 2NN's output layer (its
  // last 2,010 parameters), as the paper suggests; on all d coordinates its
  // cost grows by d / 2,010 (docs/robustness.md). Every call here re-sends the
  // same n clients, so each call refreshes n rows of an n x n Gram matrix.
  const uint32_t foolsgold_tail = std::min<uint32_t>(2010, dim);
  std::vector<std::array<size_t, 4>> counts(rules.size());
  // One aggregator per rule for the whole run, as the round engine keeps one.
  std::vector<RobustAggregator> aggregators;
  for (size_t r = 0; r < rules.size(); ++r) {
    RobustConfig cfg;
    cfg.rule = rules[r];
    cfg.rlr = with_rlr[r];
    cfg.foolsgold_tail = foolsgold_tail;
    aggregators.emplace_back(dim, averaging, cfg);
  }
  auto aggregate = [&](size_t r) {
    if (Status s = aggregators[r].Aggregate(inputs, &reference, out, verdicts); !s.ok()) Die(s.error());
    counts[r] = {0, 0, 0, 0};
    for (const RobustVerdict& v : verdicts) ++counts[r][static_cast<int>(v.action)];
  };
  // Every rule once untimed, then the repetitions interleaved across rules:
  // the first calls of the process pay the allocator's growth (about 100 ms for
  // the first ~32 MB of scratch), which a coordinator aggregating every round
  // pays once, and a shared machine's load then falls on every rule alike.
  for (size_t r = 0; r < rules.size(); ++r) aggregate(r);
  std::vector<std::vector<double>> cpu(rules.size()), wall(rules.size());
  for (int rep = 0; rep < reps; ++rep) {
    for (size_t r = 0; r < rules.size(); ++r) {
      const auto start = std::chrono::steady_clock::now();
      const double cpu_start = ThreadCpuSeconds();
      aggregate(r);
      cpu[r].push_back(ThreadCpuSeconds() - cpu_start);
      wall[r].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  }
  const double base_cpu = Median(cpu[0]), base_wall = Median(wall[0]);
  for (size_t r = 0; r < rules.size(); ++r) {
    Json j;
    j["bench"] = "robust_aggregate";
    j["rule"] = name(r);
    if (rules[r] == RobustRule::kFoolsGold) j["foolsgold_tail"] = foolsgold_tail;
    j["averaging"] = AveragingName(averaging);
    j["updates"] = n;
    j["dim"] = dim;
    j["k"] = k;
    j["reps"] = reps;
    j["cpu_ms"] = 1e3 * Median(cpu[r]);
    j["wall_ms"] = 1e3 * Median(wall[r]);
    j["cpu_ratio_vs_none"] = Median(cpu[r]) / base_cpu;
    j["wall_ratio_vs_none"] = Median(wall[r]) / base_wall;
    j["kept"] = counts[r][0];
    j["clipped"] = counts[r][1];
    j["downweighted"] = counts[r][2];
    j["rejected"] = counts[r][3];
    std::printf("%s\n", j.dump().c_str());
  }
  std::fflush(stdout);
  CompareDots(updates, dim, 200);
  return 0;
}
