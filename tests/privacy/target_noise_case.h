// One configuration that both front ends' tests (tests/sim/sim_test.cpp,
// tests/coordinator/round_driver_test.cpp) derive privacy.noise_multiplier
// from privacy.target_epsilon with: the same keys and the same planned count
// of eligible clients must give both the same z, the accountant's own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "frugal/privacy/accountant.h"

namespace frugal::testing {

// Central DP, 3 rounds of 6 clients, target ε = 4 at δ = 1e-5, no noise multiplier.
inline const std::vector<std::string> kTargetNoiseSets = {
    "rounds=3",         "model=\"logreg\"",       "pipeline=\"dense\"",     "round.clients_per_round=6",
    "round.over_selection=1", "privacy.mode=\"central\"", "privacy.clip=1", "privacy.target_epsilon=4",
    "privacy.delta=1e-5"};
// frugal-sim: population.clients; the coordinator: round.min_clients.
inline constexpr uint32_t kTargetNoiseEligible = 40;

// The z both must derive: the smallest that keeps 3 rounds at q = 6/40 within
// ε = 4, under the fixed-size bound both front ends' rounds are accounted with
// (exactly 6 of the eligible clients, round.sampling = "fixed").
inline double ExpectedTargetNoise() {
  auto z = privacy::NoiseMultiplierForEpsilon(privacy::SamplingScheme::kFixedSize, 4, 6.0 / 40, 3, 1e-5);
  return z.ok() ? *z : -1;
}

}  // namespace frugal::testing
