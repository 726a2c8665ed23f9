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
#include <utility>
#include <vector>

#include "frugal/core/config_reader.h"
#include "frugal/core/status.h"
#include "frugal/energy/grid_curves.h"
#include "frugal/energy/profiles.h"
#include "frugal/round/selection.h"

namespace frugal {

// The [carbon] table. Every feature is off by default except derived hourly curves.
struct CarbonSettings {
  HourlyMode hourly = HourlyMode::kDerived;  // carbon.hourly: "derived" | "yearly"
  std::string grid_csv;                      // carbon.grid_csv: a user's hourly CSV (the front end reads it)
  int day_of_year = 80;                      // carbon.day_of_year: the day derived curves are computed for
  double shift_slack_h = 0;                  // carbon.shift_slack_h: the most one round waits (0: no shifting)
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
