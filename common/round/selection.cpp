#include "frugal/round/selection.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_map>

#include "frugal/core/random.h"
#include "frugal/energy/model.h"

namespace frugal {

Result<SelectionPolicy> ParseSelectionPolicy(std::string_view name) {
  if (name == "uniform") return SelectionPolicy::kUniform;
  if (name == "energy") return SelectionPolicy::kEnergy;
  if (name == "carbon") return SelectionPolicy::kCarbon;
  return InvalidArgumentError("unknown selection policy '" + std::string(name) + "' (uniform, energy, carbon)");
}

std::string_view SelectionPolicyName(SelectionPolicy p) {
  switch (p) {
    case SelectionPolicy::kUniform: return "uniform";
    case SelectionPolicy::kEnergy: return "energy";
    case SelectionPolicy::kCarbon: return "carbon";
  }
  return "?";
}

std::vector<uint32_t> SelectClients(std::span<const uint32_t> available, size_t count, uint64_t seed) {
  const size_t n = available.size();
  count = std::min(count, n);
  // Partial Fisher-Yates over a virtual copy: only the swapped positions are
  // stored, so selecting 1,000 of 1,000,000 costs O(count), not O(n).
  std::unordered_map<size_t, uint32_t> swapped;
  swapped.reserve(2 * count);
  auto at = [&](size_t i) {
    auto it = swapped.find(i);
    return it == swapped.end() ? available[i] : it->second;
  };
  Rng rng(seed);
  std::vector<uint32_t> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const size_t j = i + static_cast<size_t>(rng.UniformInt(n - i));
    const uint32_t vi = at(i), vj = at(j);
    swapped[j] = vi;
    out.push_back(vj);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint32_t> SelectClientsPoisson(std::span<const uint32_t> available, double q, uint64_t seed) {
  Rng rng(seed);
  std::vector<uint32_t> out;
  for (uint32_t id : available) {
    if (rng.Uniform() < q) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<double> CappedInclusionProbabilities(std::span<const double> weights, double expected, double cap) {
  cap = std::clamp(cap, 0.0, 1.0);
  std::vector<double> p(weights.size(), 0.0);
  std::vector<size_t> order;
  double total = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] > 0 && std::isfinite(weights[i])) {
      order.push_back(i);
      total += weights[i];
    }
  }
  if (order.empty() || !(expected > 0) || cap == 0) return p;
  // Heaviest first; ties by index so the result does not depend on the sort.
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return weights[a] != weights[b] ? weights[a] > weights[b] : a < b;
  });
  const double n = static_cast<double>(order.size());
  if (expected >= cap * n) {
    for (size_t i : order) p[i] = cap;
    return p;
  }
  // Hold the k heaviest at the cap while the next one's share would pass it.
  size_t k = 0;
  double rest = total;  // sum of the weights not held at the cap
  double c = expected / rest;
  while (k < order.size() && c * weights[order[k]] > cap) {
    rest -= weights[order[k]];
    ++k;
    c = (expected - cap * static_cast<double>(k)) / rest;
  }
  for (size_t j = 0; j < order.size(); ++j) p[order[j]] = j < k ? cap : std::min(cap, c * weights[order[j]]);
  return p;
}

std::vector<uint32_t> SelectClientsPoissonWeighted(std::span<const uint32_t> available, std::span<const double> weights,
                                                   double expected, double cap, uint64_t seed) {
  const size_t n = std::min(available.size(), weights.size());
  const std::vector<double> p = CappedInclusionProbabilities(weights.first(n), expected, cap);
  Rng rng(seed);
  std::vector<uint32_t> out;
  for (size_t i = 0; i < n; ++i) {
    if (rng.Uniform() < p[i]) out.push_back(available[i]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint32_t> SelectClientsWeighted(std::span<const uint32_t> available, std::span<const double> weights,
                                            size_t count, uint64_t seed) {
  // Key log(u) / w for u uniform in (0, 1): the `count` largest keys are a
  // weighted sample without replacement. A min-heap keeps the best `count`.
  using Keyed = std::pair<double, uint32_t>;
  std::vector<Keyed> heap;
  heap.reserve(count + 1);
  auto greater = [](const Keyed& a, const Keyed& b) { return a.first > b.first; };
  Rng rng(seed);
  const size_t n = std::min(available.size(), weights.size());
  for (size_t i = 0; i < n; ++i) {
    const double u = rng.Uniform();  // drawn for every client, so keys do not depend on other weights
    const double w = weights[i];
    if (count == 0 || !(w > 0) || !std::isfinite(w)) continue;
    const double key = std::log(std::max(u, 1e-300)) / w;
    if (heap.size() < count) {
      heap.emplace_back(key, available[i]);
      std::push_heap(heap.begin(), heap.end(), greater);
    } else if (key > heap.front().first) {
      std::pop_heap(heap.begin(), heap.end(), greater);
      heap.back() = {key, available[i]};
      std::push_heap(heap.begin(), heap.end(), greater);
    }
  }
  std::vector<uint32_t> out;
  out.reserve(heap.size());
  for (const auto& [key, id] : heap) out.push_back(id);
  std::sort(out.begin(), out.end());
  return out;
}

double ExpectedParticipationJoules(const DeviceProfile& device, const RadioProfile& radio,
                                   const ParticipationEstimate& e) {
  const double t_up = TransferSeconds(radio, e.bytes_down, Direction::kDown) + ComputeSeconds(device, e.flops);
  const Transfer schedule[] = {{0.0, e.bytes_down, Direction::kDown}, {t_up, e.bytes_up, Direction::kUp}};
  return ComputeJoules(device, e.flops) + RadioEnergy(radio, schedule).joules;
}

double SelectionWeight(SelectionPolicy policy, const DeviceProfile& device, const RadioProfile& radio,
                       const RegionProfile& region, double utc_hour, const ParticipationEstimate& e,
                       double exponent) {
  if (policy == SelectionPolicy::kUniform) return 1.0;
  const double joules = ExpectedParticipationJoules(device, radio, e);
  const double cost = policy == SelectionPolicy::kEnergy ? joules : CarbonGrams(joules, region, utc_hour);
  if (!(cost > 0)) return 0.0;
  return exponent == 1.0 ? 1.0 / cost : std::pow(cost, -exponent);
}

}  // namespace frugal
