#include "frugal/round/planner.h"

#include <algorithm>

#include "frugal/core/streams.h"

namespace frugal {

RoundPlanner::RoundPlanner(const RunSettings& settings, FlopCount flops_per_example)
    : seed_(settings.seed),
      plan_(settings.plan),
      flops_per_example_(flops_per_example.forward + flops_per_example.backward),
      epochs_(static_cast<uint64_t>(settings.task.train.epochs)) {}

ParticipationEstimate RoundPlanner::Estimate(const Candidate& c, uint64_t first_payload_bytes) const {
  const Sizes sizes = expected_.value_or(Sizes{first_payload_bytes, first_payload_bytes});
  return ParticipationEstimate{flops_per_example_ * static_cast<double>(c.examples * epochs_), sizes.down, sizes.up};
}

std::vector<uint32_t> RoundPlanner::Select(uint32_t round, std::span<const Candidate> candidates, double utc_hour,
                                           uint64_t first_payload_bytes) const {
  std::vector<uint32_t> ids(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) ids[i] = candidates[i].id;
  const uint64_t seed = StreamSeed(seed_, SeedStream::kSelect, round);
  if (plan_.selection == SelectionPolicy::kUniform) return SelectClients(ids, plan_.SelectCount(), seed);
  std::vector<double> weights(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    weights[i] = SelectionWeight(plan_.selection, *c.device, *c.radio, *c.region, utc_hour,
                                 Estimate(c, first_payload_bytes));
  }
  return SelectClientsWeighted(ids, weights, plan_.SelectCount(), seed);
}

void RoundPlanner::Observe(const RoundRecord& round) {
  const uint64_t n = std::max<uint32_t>(1, round.selected);
  expected_ = Sizes{round.bytes_down / n, round.bytes_up / n};
}

}  // namespace frugal
