// Seeded client selection for a round, reproducible for (seed, round):
// uniform, or weighted towards the clients a participation costs least in
// joules (energy-aware) or in grams of CO2e (carbon-aware).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/energy/profiles.h"

namespace frugal {

enum class SelectionPolicy : uint8_t {
  kUniform,  // every available client equally likely (FedAvg)
  kEnergy,   // probability proportional to 1 / expected joules of a participation
  kCarbon,   // probability proportional to 1 / expected grams of CO2e
};

// Parses "uniform", "energy" or "carbon".
Result<SelectionPolicy> ParseSelectionPolicy(std::string_view name);
std::string_view SelectionPolicyName(SelectionPolicy p);

// Returns min(count, available.size()) distinct ids drawn uniformly from
// `available`, sorted ascending so downstream work has a canonical order.
std::vector<uint32_t> SelectClients(std::span<const uint32_t> available, size_t count, uint64_t seed);

// Poisson sampling: each id of `available` independently with probability q
// (clamped to [0, 1]), one uniform draw per id in order; ascending.
std::vector<uint32_t> SelectClientsPoisson(std::span<const uint32_t> available, double q, uint64_t seed);

// Inclusion probabilities for weighted Poisson sampling: p[i] = min(cap,
// c * weights[i]) with c chosen so that the p sum to min(expected, cap times
// the number of usable weights) (water-filling: the heaviest clients are held
// at the cap and the rest share what is left in proportion to their weights).
// A weight that is not positive and finite gets 0. cap is clamped to [0, 1].
// No p exceeds cap, which is what makes the DP bound at q = cap hold for
// every client (docs/privacy.md, "Weighted Poisson selection").
std::vector<double> CappedInclusionProbabilities(std::span<const double> weights, double expected, double cap);

// Weighted Poisson sampling: each id of `available` independently with
// probability p[i] (CappedInclusionProbabilities(weights, expected, cap)), one
// uniform draw per id in order as SelectClientsPoisson; ascending.
std::vector<uint32_t> SelectClientsPoissonWeighted(std::span<const uint32_t> available, std::span<const double> weights,
                                                   double expected, double cap, uint64_t seed);

// Weighted sampling without replacement (Efraimidis & Spirakis 2006): each
// draw picks a remaining client with probability proportional to its weight.
// weights[i] belongs to available[i]; a weight that is not positive and finite
// is never picked. Returns at most `count` ids, sorted ascending. O(n log count).
std::vector<uint32_t> SelectClientsWeighted(std::span<const uint32_t> available, std::span<const double> weights,
                                            size_t count, uint64_t seed);

// What a participation is expected to move and compute, e.g. the previous
// round's mean encoded sizes and the task's FLOPs for the client's examples.
struct ParticipationEstimate {
  double flops = 0;
  uint64_t bytes_down = 0;
  uint64_t bytes_up = 0;
};

// Client joules of one participation through the ledger's own model: the
// download at t = 0, compute, then the upload (so an upload inside the
// download's radio tail pays no second tail), plus compute energy.
double ExpectedParticipationJoules(const DeviceProfile& device, const RadioProfile& radio,
                                   const ParticipationEstimate& e);

// The selection weight of one client under `policy` (1 for kUniform):
// 1 / joules, or 1 / grams at the region's carbon intensity at utc_hour,
// raised to `exponent` (round.selection_exponent): 1 is the policy as
// named, 0 is uniform, values between temper how strongly cheap clients are
// preferred (and so how often the same few take part).
double SelectionWeight(SelectionPolicy policy, const DeviceProfile& device, const RadioProfile& radio,
                       const RegionProfile& region, double utc_hour, const ParticipationEstimate& e,
                       double exponent = 1.0);

}  // namespace frugal
