// Planning a round, the same in every front end: which of the eligible
// clients take part, drawn from the run's seed streams, uniformly or weighted
// by what a participation is expected to cost. The simulator hands it its
// available population, the coordinator its connected clients. No I/O.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "frugal/energy/profiles.h"
#include "frugal/model/model.h"
#include "frugal/round/carbon_schedule.h"
#include "frugal/round/record.h"
#include "frugal/round/selection.h"
#include "frugal/round/settings.h"

namespace frugal {

// What the planner knows of a client that could take part in a round.
struct Candidate {
  uint32_t id = 0;
  const DeviceProfile* device = nullptr;
  const RadioProfile* radio = nullptr;
  const RegionProfile* region = nullptr;
  uint64_t examples = 0;  // local training examples
  bool charging = true;   // on charge now (carbon.require_charging); a front end that cannot tell says true
};

// Selection with its estimates. Not thread-safe.
class RoundPlanner {
 public:
  RoundPlanner(const RunSettings& settings, FlopCount flops_per_example);

  // The clients of `round`, ascending by id: SelectClients (uniform) or
  // SelectClientsWeighted with each candidate's SelectionWeight at `utc_hour`.
  // `candidates` must be ascending by id. The weights' expected payload sizes
  // are the previous round's mean per selected client (Observe); before any
  // round, `first_payload_bytes` (the payload a client holding what clients
  // start with downloads) stands for both directions. Under [carbon]:
  // ineligible candidates (not charging, metered) are left out, and with a
  // region floor, a budget or per-region shifting SelectWithRegionQuotas
  // draws instead, charging each selected client's expected joules to its
  // region's hour; with carbon.shift_mode = "region" the floor of a region
  // that RegionDefers is owed (RegionFloorLedger), and with
  // carbon.shift_draw_last the region is drawn last. With carbon.defer_metered
  // the draw is among the unmetered candidates when they fill the round, and
  // otherwise takes all of them and draws the remaining slots among the metered.
  std::vector<uint32_t> Select(uint32_t round, std::span<const Candidate> candidates, double utc_hour,
                               uint64_t first_payload_bytes) const;

  // Hours the round due at `utc_hour` waits for its candidates' cleaner hours
  // (TimeShifter::Delay over the eligible candidates' regions); 0 without
  // carbon.shift_slack_h or with carbon.shift_mode = "region". A front end
  // calls it once per round, before Select.
  double ShiftDelayHours(std::span<const Candidate> candidates, double utc_hour);
  // Time the run spent not waiting (a round and the pause after it), hours.
  void AddActiveHours(double hours) { shifter_.AddActive(hours); }
  double waited_hours() const { return shifter_.waited_hours(); }

  // The estimate a weighted selection uses for one candidate (exposed for tests and reports).
  ParticipationEstimate Estimate(const Candidate& c, uint64_t first_payload_bytes) const;

  // The model's FLOPs after a shape change (structured pruning) for the next
  // estimates, and the training FLOPs per example of the device classes that
  // train a narrower sub-network ([widths]; by profile id, as
  // LeanRound::TrainFlopsByDevice), which their estimates use instead.
  void SetFlopsPerExample(FlopCount flops, std::map<std::string, double> narrow_by_device = {}) {
    flops_per_example_ = flops.forward + flops.backward;
    narrow_flops_ = std::move(narrow_by_device);
  }

  // A finished round: its mean bytes per selected client become the next estimates.
  void Observe(const RoundRecord& round);

 private:
  uint64_t seed_;
  RoundPlan plan_;
  double flops_per_example_;  // forward + backward
  std::map<std::string, double> narrow_flops_;  // [widths]: forward + backward by device profile id
  uint64_t epochs_;
  struct Sizes {
    uint64_t down = 0, up = 0;
  };
  std::optional<Sizes> expected_;
  CarbonSettings carbon_;
  TimeShifter shifter_;
  // What selections have committed against the per-region hourly budgets:
  // bookkeeping that Select (a const draw for every other purpose) updates.
  mutable RegionBudget budget_;
  // The floor slots each region is owed under carbon.shift_mode = "region"
  // (bookkeeping, like budget_).
  mutable RegionFloorLedger floors_;

  bool Eligible(const Candidate& c) const;
  // `count` of `candidates` (ascending by id), uniformly or by SelectionWeight.
  std::vector<uint32_t> Draw(std::span<const Candidate> candidates, size_t count, uint64_t seed, double utc_hour,
                             uint64_t first_payload_bytes) const;
};

}  // namespace frugal
