// Carbon-aware scheduling of a round, the same in every front end: the
// [carbon] keys (hourly intensity, time shifting, per-region energy budgets,
// eligibility by device policy, per-region participation floors), the delay a
// round waits for its regions' cleaner hours, and a selection that honours
// budgets and floors (FedZero, Wiesner et al. 2024; Bonawitz et al. 2019 for
// eligibility). The front end only waits: the simulator on its virtual clock,
// the coordinator on its clock. No I/O.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "frugal/core/config_reader.h"
#include "frugal/core/status.h"
#include "frugal/energy/grid_curves.h"
#include "frugal/energy/profiles.h"
#include "frugal/round/selection.h"

namespace frugal {

// How time shifting works (carbon.shift_mode).
enum class ShiftMode : uint8_t {
  // Rounds run on time; a region whose cleaner hours lie within the slack is
  // deferred: the floor it is owed waits (at most the slack) for its clean
  // hours, and with carbon.shift_draw_last its candidates are drawn only
  // after every other region's (FedZero's per-region scheduling). The run
  // takes no longer.
  kRegion,
  // The whole round waits, up to the slack and the wait budget, for the
  // selected regions' cleaner hours (TimeShifter). The run takes longer.
  kRound,
};
Result<ShiftMode> ParseShiftMode(std::string_view name);
std::string_view ShiftModeName(ShiftMode m);

// The [carbon] table. Every feature is off by default except derived hourly curves.
struct CarbonSettings {
  HourlyMode hourly = HourlyMode::kDerived;  // carbon.hourly: "derived" | "yearly"
  std::string grid_csv;                      // carbon.grid_csv: a user's hourly CSV (the front end reads it)
  int day_of_year = 80;                      // carbon.day_of_year: the day derived curves are computed for
  double shift_slack_h = 0;                  // carbon.shift_slack_h: the most one round waits (0: no shifting)
  ShiftMode shift_mode = ShiftMode::kRegion;  // carbon.shift_mode: "region" | "round"
  // carbon.shift_draw_last: under "region", a deferred region's candidates
  // beyond its floor come after every other region's. Off by default: the
  // slots it gives up go to whichever regions do not defer, often dirtier
  // ones (docs/benchmarks.md, "Carbon-aware rounds").
  bool shift_draw_last = false;
  double shift_step_h = 0.25;                // carbon.shift_step_h: start times considered, this far apart
  // carbon.shift_max_wait_ratio: all waiting so far at most this times the
  // run's time spent not waiting (0.5: a run takes at most 1.5x as long).
  // 0 = no cap beyond the slack.
  double shift_max_wait_ratio = 0.5;
  double shift_min_saving = 0.02;       // carbon.shift_min_saving: wait only for at least this relative saving
  double region_budget_j_per_h = 0;     // carbon.region_budget_j_per_h: expected client joules per region per UTC hour (0: none)
  double region_floor = 0;              // carbon.region_floor: each region gets >= this x its share of the candidates' slots
  bool require_charging = false;        // carbon.require_charging: only charging devices are eligible
  bool require_unmetered = false;       // carbon.require_unmetered: only wifi / ethernet clients are eligible
  // carbon.defer_metered: metered (cellular) clients are drawn only for the
  // slots the eligible unmetered ones cannot fill, so a round pays a cellular
  // radio's tail only when it would otherwise run short. Refused with
  // Poisson sampling and with region floors, budgets or per-region shifting.
  bool defer_metered = false;

  bool shifts() const { return shift_slack_h > 0; }
};

// Reads carbon.* from `r` (values in `s` are the defaults) and validates them;
// errors name the key.
Status ReadCarbonSettings(ConfigReader& r, CarbonSettings& s);

// A radio is unmetered when it is Wi-Fi or Ethernet (the ids "wifi" and
// "ethernet", or any id starting with them).
bool IsUnmetered(const RadioProfile& radio);

// How many candidates of one region are up for a round.
struct RegionCount {
  const RegionProfile* region = nullptr;
  uint64_t count = 0;
};

// The expected intensity (gCO2e/kWh) of one participation drawn from `mix` at
// utc_hour under `policy`: the count-weighted mean of the regions'
// intensities; for kCarbon, whose weights go as 1 / intensity, the
// count-weighted harmonic mean. 0 for an empty mix.
double ExpectedIntensity(std::span<const RegionCount> mix, SelectionPolicy policy, double utc_hour);

// Waiting state of a run. Not thread-safe; a restarted coordinator starts afresh.
class TimeShifter {
 public:
  explicit TimeShifter(const CarbonSettings& s) : s_(s) {}

  // Hours the round due at `now_utc_hour` waits: the earliest delay d in
  // [0, allowed] (steps of shift_step_h) whose ExpectedIntensity is within 1%
  // of the lowest in that window, where allowed = min(slack, the wait budget
  // left); 0 unless it saves at least shift_min_saving against now. Counts
  // the delay as waited.
  double Delay(std::span<const RegionCount> mix, SelectionPolicy policy, double now_utc_hour);
  // Time the run spent not waiting (rounds and the pauses between them).
  void AddActive(double hours) { active_h_ += hours; }
  double waited_hours() const { return waited_h_; }

 private:
  CarbonSettings s_;
  double waited_h_ = 0, active_h_ = 0;
};

// One candidate as the budgeted selection sees it.
struct BudgetedCandidate {
  uint32_t id = 0;
  double weight = 0;         // the selection weight (1 for uniform)
  uint32_t region = 0;       // an index into the caller's region list
  double expected_j = 0;     // expected client joules of a participation
};

// Weighted sampling without replacement with per-region floors and budgets:
// every candidate gets the key log(u) / weight (u from Rng(seed), one draw per
// candidate in order, as SelectClientsWeighted); first each region takes its
// floor, ceil(floor x count x its share of the candidates), best keys first;
// then the rest go by key across regions. A candidate whose expected joules
// would take its region past `budget_left[region]` (when not empty) is
// skipped, and what is taken is subtracted from it. Returns ids ascending.
std::vector<uint32_t> SelectWithRegionLimits(std::span<const BudgetedCandidate> candidates, size_t count,
                                             uint64_t seed, double floor, std::span<double> budget_left);

// Like SelectWithRegionLimits, with the floors given per region
// (floor_slots[r] candidates of region r first, best keys first; a region
// past the end of floor_slots has none) and `deferred` regions (deferred[r]
// != 0) drawn only once every other region's eligible candidates are taken.
// Returns ids ascending.
std::vector<uint32_t> SelectWithRegionQuotas(std::span<const BudgetedCandidate> candidates, size_t count,
                                             uint64_t seed, std::span<const uint64_t> floor_slots,
                                             std::span<const uint8_t> deferred, std::span<double> budget_left);

// Whether `region` defers at utc_hour under carbon.shift_mode = "region": some
// start within the slack (steps of shift_step_h) is cleaner than now by at
// least shift_min_saving. False without shifting.
bool RegionDefers(const RegionProfile& region, const CarbonSettings& s, double utc_hour);

// The floor slots each region is owed under per-region shifting: a round adds
// floor x slots x the region's share of the candidates to what the region is
// owed; a region that does not defer, or has been owed for the slack or
// longer, is given all of it (rounded up) as its floor now, one that defers
// none; what the region then gets, floor or not, is paid off. So a deferred
// region's floor is made up in its clean hours, at most a slack later.
// Not thread-safe.
class RegionFloorLedger {
 public:
  // The floor of `region` in the round at utc_hour (quota: this round's floor
  // x slots x share; defers: RegionDefers); `slack_h` bounds how long it is owed.
  uint64_t Due(const std::string& region, double quota, bool defers, double slack_h, double utc_hour);
  // `region` got `picks` candidates in the round at utc_hour.
  void Took(const std::string& region, uint64_t picks);
  double owed(const std::string& region) const;

 private:
  struct Owed {
    double slots = 0;
    double since_h = 0;  // when the region last went from owing nothing to owing
  };
  std::map<std::string, Owed> owed_;
};

// Per-region expected joules already committed in each UTC hour, for budgets.
class RegionBudget {
 public:
  explicit RegionBudget(double joules_per_hour) : per_hour_(joules_per_hour) {}
  bool active() const { return per_hour_ > 0; }
  // The joules left to `region` in the UTC hour holding utc_hour.
  double Left(const std::string& region, double utc_hour) const;
  void Spend(const std::string& region, double utc_hour, double joules);

 private:
  double per_hour_;
  std::map<std::pair<std::string, int64_t>, double> spent_;
};

}  // namespace frugal
