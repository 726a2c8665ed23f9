#include "frugal/round/planner.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "frugal/core/streams.h"

namespace frugal {

RoundPlanner::RoundPlanner(const RunSettings& settings, FlopCount flops_per_example)
    : seed_(settings.seed),
      plan_(settings.plan),
      flops_per_example_(flops_per_example.forward + flops_per_example.backward),
      epochs_(static_cast<uint64_t>(settings.task.train.epochs)),
      carbon_(settings.carbon),
      shifter_(settings.carbon),
      budget_(settings.carbon.region_budget_j_per_h) {}

ParticipationEstimate RoundPlanner::Estimate(const Candidate& c, uint64_t first_payload_bytes) const {
  const Sizes sizes = expected_.value_or(Sizes{first_payload_bytes, first_payload_bytes});
  double flops = flops_per_example_;
  if (c.device != nullptr && !narrow_flops_.empty()) {
    const auto narrow = narrow_flops_.find(c.device->id);
    if (narrow != narrow_flops_.end()) flops = narrow->second;
  }
  return ParticipationEstimate{flops * static_cast<double>(c.examples * epochs_), sizes.down, sizes.up};
}

bool RoundPlanner::Eligible(const Candidate& c) const {
  if (carbon_.require_charging && !c.charging) return false;
  if (carbon_.require_unmetered && !IsUnmetered(*c.radio)) return false;
  return true;
}

std::vector<uint32_t> RoundPlanner::Select(uint32_t round, std::span<const Candidate> all, double utc_hour,
                                           uint64_t first_payload_bytes) const {
  std::vector<Candidate> kept;
  const bool filters = carbon_.require_charging || carbon_.require_unmetered;
  if (filters) {
    for (const Candidate& c : all) {
      if (Eligible(c)) kept.push_back(c);
    }
  }
  const std::span<const Candidate> candidates = filters ? std::span<const Candidate>(kept) : all;
  std::vector<uint32_t> ids(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) ids[i] = candidates[i].id;
  const uint64_t seed = StreamSeed(seed_, SeedStream::kSelect, round);
  // Poisson sampling (settings refuse it with floors, budgets or deferral): uniform, or with each
  // client's probability its weight's share held at the cap the accountant composes.
  if (plan_.poisson && !plan_.Weighted()) return SelectClientsPoisson(ids, plan_.SamplingRate(0, ids.size()), seed);
  if (plan_.poisson) {
    std::vector<double> weights(candidates.size());
    for (size_t i = 0; i < candidates.size(); ++i) {
      const Candidate& c = candidates[i];
      weights[i] = SelectionWeight(plan_.selection, *c.device, *c.radio, *c.region, utc_hour,
                                   Estimate(c, first_payload_bytes), plan_.selection_exponent);
    }
    return SelectClientsPoissonWeighted(ids, weights, plan_.SelectCount(), plan_.SamplingRate(0, ids.size()), seed);
  }
  const bool region_shift = carbon_.shifts() && carbon_.shift_mode == ShiftMode::kRegion;
  const bool limits = carbon_.region_floor > 0 || budget_.active() || region_shift;
  if (carbon_.defer_metered) {  // settings refuse it with Poisson sampling and region limits
    std::vector<Candidate> unmetered, metered;
    for (const Candidate& c : candidates) (IsUnmetered(*c.radio) ? unmetered : metered).push_back(c);
    const size_t count = plan_.SelectCount();
    if (unmetered.size() >= count) return Draw(unmetered, count, seed, utc_hour, first_payload_bytes);
    // Too few unmetered clients: all of them, and the rest of the slots drawn among the metered.
    std::vector<uint32_t> out = Draw(metered, count - unmetered.size(), seed, utc_hour, first_payload_bytes);
    for (const Candidate& c : unmetered) out.push_back(c.id);
    std::sort(out.begin(), out.end());
    return out;
  }
  if (!limits) return Draw(candidates, plan_.SelectCount(), seed, utc_hour, first_payload_bytes);
  // Regions indexed in order of first appearance (candidates ascend by id, so this is deterministic).
  std::map<const RegionProfile*, uint32_t> index;
  std::vector<const RegionProfile*> regions;
  std::vector<BudgetedCandidate> budgeted(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    auto [it, fresh] = index.emplace(c.region, static_cast<uint32_t>(regions.size()));
    if (fresh) regions.push_back(c.region);
    const ParticipationEstimate e = Estimate(c, first_payload_bytes);
    budgeted[i] = BudgetedCandidate{c.id,
                                    SelectionWeight(plan_.selection, *c.device, *c.radio, *c.region, utc_hour, e,
                                                    plan_.selection_exponent),
                                    it->second, ExpectedParticipationJoules(*c.device, *c.radio, e)};
  }
  std::vector<double> left;
  if (budget_.active()) {
    for (const RegionProfile* r : regions) left.push_back(budget_.Left(r->id, utc_hour));
  }
  const size_t count = plan_.SelectCount();
  std::vector<uint64_t> in_region(regions.size(), 0);
  uint64_t weighted = 0;
  for (const BudgetedCandidate& b : budgeted) {
    if (b.weight > 0 && std::isfinite(b.weight)) ++in_region[b.region], ++weighted;
  }
  std::vector<uint64_t> floors(regions.size(), 0);
  std::vector<uint8_t> deferred(regions.size(), 0);
  for (size_t r = 0; r < regions.size() && weighted > 0; ++r) {
    const double quota = carbon_.region_floor * static_cast<double>(count) *
                         (static_cast<double>(in_region[r]) / static_cast<double>(weighted));
    if (region_shift) {
      const bool defers = RegionDefers(*regions[r], carbon_, utc_hour);
      deferred[r] = defers && carbon_.shift_draw_last ? 1 : 0;
      floors[r] = floors_.Due(regions[r]->id, quota, defers, carbon_.shift_slack_h, utc_hour);
    } else {
      floors[r] = static_cast<uint64_t>(std::ceil(quota - 1e-9));
    }
    floors[r] = std::min(floors[r], in_region[r]);
  }
  std::vector<uint32_t> out = SelectWithRegionQuotas(budgeted, count, seed, floors, deferred, left);
  std::vector<uint64_t> picks(regions.size(), 0);
  size_t i = 0;
  for (uint32_t id : out) {  // both ascend by id
    while (budgeted[i].id != id) ++i;
    ++picks[budgeted[i].region];
    if (budget_.active()) budget_.Spend(regions[budgeted[i].region]->id, utc_hour, budgeted[i].expected_j);
  }
  if (region_shift) {
    for (size_t r = 0; r < regions.size(); ++r) floors_.Took(regions[r]->id, picks[r]);
  }
  return out;
}

std::vector<uint32_t> RoundPlanner::Draw(std::span<const Candidate> candidates, size_t count, uint64_t seed,
                                         double utc_hour, uint64_t first_payload_bytes) const {
  std::vector<uint32_t> ids(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) ids[i] = candidates[i].id;
  if (plan_.selection == SelectionPolicy::kUniform) return SelectClients(ids, count, seed);
  std::vector<double> weights(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    weights[i] = SelectionWeight(plan_.selection, *c.device, *c.radio, *c.region, utc_hour,
                                 Estimate(c, first_payload_bytes), plan_.selection_exponent);
  }
  return SelectClientsWeighted(ids, weights, count, seed);
}

double RoundPlanner::ShiftDelayHours(std::span<const Candidate> candidates, double utc_hour) {
  if (!carbon_.shifts() || carbon_.shift_mode != ShiftMode::kRound) return 0;
  // Keyed by id, not address, so every front end sums in the same order.
  std::map<std::string, RegionCount> counts;
  for (const Candidate& c : candidates) {
    if (!Eligible(c)) continue;
    RegionCount& rc = counts[c.region->id];
    rc.region = c.region;
    ++rc.count;
  }
  std::vector<RegionCount> mix;
  for (const auto& [id, rc] : counts) mix.push_back(rc);
  return shifter_.Delay(mix, plan_.selection, utc_hour);
}

void RoundPlanner::Observe(const RoundRecord& round) {
  const uint64_t n = std::max<uint32_t>(1, round.selected);
  expected_ = Sizes{round.bytes_down / n, round.bytes_up / n};
}

}  // namespace frugal
