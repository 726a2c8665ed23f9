#include "frugal/round/carbon_schedule.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "frugal/core/random.h"
#include "frugal/energy/model.h"

namespace frugal {

Status ReadCarbonSettings(ConfigReader& r, CarbonSettings& s) {
  std::string hourly(HourlyModeName(s.hourly));
  r.Get("carbon.hourly", hourly);
  r.Get("carbon.grid_csv", s.grid_csv);
  r.Get("carbon.day_of_year", s.day_of_year);
  r.Get("carbon.shift_slack_h", s.shift_slack_h);
  std::string shift_mode(ShiftModeName(s.shift_mode));
  r.Get("carbon.shift_mode", shift_mode);
  r.Get("carbon.shift_draw_last", s.shift_draw_last);
  r.Get("carbon.shift_step_h", s.shift_step_h);
  r.Get("carbon.shift_max_wait_ratio", s.shift_max_wait_ratio);
  r.Get("carbon.shift_min_saving", s.shift_min_saving);
  r.Get("carbon.region_budget_j_per_h", s.region_budget_j_per_h);
  r.Get("carbon.region_floor", s.region_floor);
  r.Get("carbon.require_charging", s.require_charging);
  r.Get("carbon.require_unmetered", s.require_unmetered);
  r.Get("carbon.defer_metered", s.defer_metered);
  if (r.error()) return *r.error();
  FRUGAL_ASSIGN_OR_RETURN(s.hourly, ParseHourlyMode(hourly));
  FRUGAL_ASSIGN_OR_RETURN(s.shift_mode, ParseShiftMode(shift_mode));
  auto bad = [](const char* key, const std::string& want) {
    return InvalidArgumentError(std::string(key) + " must be " + want);
  };
  if (s.day_of_year < 1 || s.day_of_year > 365) return bad("carbon.day_of_year", "1..365");
  if (!(s.shift_slack_h >= 0) || s.shift_slack_h > 48) return bad("carbon.shift_slack_h", "in [0, 48] hours");
  if (!(s.shift_step_h >= 1.0 / 60) || s.shift_step_h > 24) {
    return bad("carbon.shift_step_h", "in [1/60, 24] hours");
  }
  if (!(s.shift_max_wait_ratio >= 0) || !std::isfinite(s.shift_max_wait_ratio)) {
    return bad("carbon.shift_max_wait_ratio", "finite and >= 0");
  }
  if (!(s.shift_min_saving >= 0) || s.shift_min_saving >= 1) return bad("carbon.shift_min_saving", "in [0, 1)");
  if (!(s.region_budget_j_per_h >= 0) || !std::isfinite(s.region_budget_j_per_h)) {
    return bad("carbon.region_budget_j_per_h", "finite and >= 0");
  }
  if (!(s.region_floor >= 0) || s.region_floor > 1) return bad("carbon.region_floor", "in [0, 1]");
  if (s.defer_metered && (s.region_floor > 0 || s.region_budget_j_per_h > 0 ||
                          (s.shifts() && s.shift_mode == ShiftMode::kRegion))) {
    return InvalidArgumentError("carbon.defer_metered draws unmetered clients first and cannot also keep "
                                "carbon.region_floor, carbon.region_budget_j_per_h or carbon.shift_mode = \"region\"");
  }
  return OkStatus();
}

Result<ShiftMode> ParseShiftMode(std::string_view name) {
  if (name == "region") return ShiftMode::kRegion;
  if (name == "round") return ShiftMode::kRound;
  return InvalidArgumentError("carbon.shift_mode must be \"region\" or \"round\", not \"" + std::string(name) + "\"");
}

std::string_view ShiftModeName(ShiftMode m) { return m == ShiftMode::kRegion ? "region" : "round"; }

bool IsUnmetered(const RadioProfile& radio) {
  return radio.id.starts_with("wifi") || radio.id.starts_with("ethernet");
}

double ExpectedIntensity(std::span<const RegionCount> mix, SelectionPolicy policy, double utc_hour) {
  double n = 0, sum = 0, inv = 0;
  for (const RegionCount& m : mix) {
    if (m.region == nullptr || m.count == 0) continue;
    const double c = static_cast<double>(m.count);
    const double i = CarbonIntensity(*m.region, utc_hour);
    n += c;
    sum += c * i;
    inv += i > 0 ? c / i : 0;
  }
  if (n == 0) return 0;
  if (policy == SelectionPolicy::kCarbon) return inv > 0 ? n / inv : 0;
  return sum / n;
}

double TimeShifter::Delay(std::span<const RegionCount> mix, SelectionPolicy policy, double now_utc_hour) {
  if (!s_.shifts() || !std::isfinite(now_utc_hour)) return 0;
  double allowed = s_.shift_slack_h;
  if (s_.shift_max_wait_ratio > 0) allowed = std::min(allowed, s_.shift_max_wait_ratio * active_h_ - waited_h_);
  if (!(allowed >= s_.shift_step_h)) return 0;
  const auto steps = static_cast<int>(std::floor(allowed / s_.shift_step_h + 1e-9));
  std::vector<double> score(static_cast<size_t>(steps) + 1);
  for (int k = 0; k <= steps; ++k) {
    score[static_cast<size_t>(k)] = ExpectedIntensity(mix, policy, now_utc_hour + k * s_.shift_step_h);
  }
  const double best = *std::min_element(score.begin(), score.end());
  if (!(score[0] > 0) || best > score[0] * (1.0 - s_.shift_min_saving)) return 0;
  for (int k = 0; k <= steps; ++k) {
    if (score[static_cast<size_t>(k)] <= best * 1.01) {
      const double d = k * s_.shift_step_h;
      waited_h_ += d;
      return d;
    }
  }
  return 0;
}

std::vector<uint32_t> SelectWithRegionQuotas(std::span<const BudgetedCandidate> candidates, size_t count,
                                             uint64_t seed, std::span<const uint64_t> floor_slots,
                                             std::span<const uint8_t> deferred, std::span<double> budget_left) {
  Rng rng(seed);
  struct Keyed {
    double key;
    size_t i;
  };
  std::vector<Keyed> keyed;
  keyed.reserve(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    const double u = rng.Uniform();  // one draw per candidate, eligible or not
    const double w = candidates[i].weight;
    if (!(w > 0) || !std::isfinite(w)) continue;
    keyed.push_back({std::log(std::max(u, 1e-300)) / w, i});
  }
  // Best key first; ties (equal keys) by position, so the order is total.
  std::sort(keyed.begin(), keyed.end(),
            [](const Keyed& a, const Keyed& b) { return a.key != b.key ? a.key > b.key : a.i < b.i; });
  std::vector<bool> taken(candidates.size(), false);
  std::vector<uint32_t> out;
  auto fits = [&](const BudgetedCandidate& c) {
    return budget_left.empty() || c.expected_j <= budget_left[c.region];
  };
  auto take = [&](size_t i) {
    taken[i] = true;
    out.push_back(candidates[i].id);
    if (!budget_left.empty()) budget_left[candidates[i].region] -= candidates[i].expected_j;
  };
  auto is_deferred = [&](uint32_t r) { return r < deferred.size() && deferred[r] != 0; };
  std::vector<uint64_t> quota(floor_slots.begin(), floor_slots.end());
  for (const Keyed& k : keyed) {
    if (out.size() >= count) break;
    const BudgetedCandidate& c = candidates[k.i];
    if (c.region >= quota.size() || quota[c.region] == 0 || !fits(c)) continue;
    --quota[c.region];
    take(k.i);
  }
  // Regions that do not defer first, then the deferred ones.
  for (const bool second : {false, true}) {
    for (const Keyed& k : keyed) {
      if (out.size() >= count) break;
      const BudgetedCandidate& c = candidates[k.i];
      if (taken[k.i] || is_deferred(c.region) != second || !fits(c)) continue;
      take(k.i);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint32_t> SelectWithRegionLimits(std::span<const BudgetedCandidate> candidates, size_t count,
                                             uint64_t seed, double floor, std::span<double> budget_left) {
  std::vector<uint64_t> in_region;
  uint64_t eligible = 0;
  for (const BudgetedCandidate& c : candidates) {
    if (!(c.weight > 0) || !std::isfinite(c.weight)) continue;
    if (c.region >= in_region.size()) in_region.resize(c.region + 1, 0);
    ++in_region[c.region];
    ++eligible;
  }
  std::vector<uint64_t> quota(in_region.size(), 0);
  if (floor > 0) {
    for (size_t r = 0; r < in_region.size(); ++r) {
      const double share = static_cast<double>(in_region[r]) / static_cast<double>(eligible);
      const double slots = std::ceil(floor * static_cast<double>(count) * share - 1e-9);
      quota[r] = std::min<uint64_t>(in_region[r], static_cast<uint64_t>(slots));
    }
  }
  return SelectWithRegionQuotas(candidates, count, seed, quota, {}, budget_left);
}

bool RegionDefers(const RegionProfile& region, const CarbonSettings& s, double utc_hour) {
  if (!s.shifts() || s.shift_mode != ShiftMode::kRegion || !std::isfinite(utc_hour)) return false;
  const double now = CarbonIntensity(region, utc_hour);
  if (!(now > 0)) return false;
  const auto steps = static_cast<int>(std::floor(s.shift_slack_h / s.shift_step_h + 1e-9));
  for (int k = 1; k <= steps; ++k) {
    if (CarbonIntensity(region, utc_hour + k * s.shift_step_h) < now * (1.0 - s.shift_min_saving)) return true;
  }
  return false;
}

uint64_t RegionFloorLedger::Due(const std::string& region, double quota, bool defers, double slack_h,
                                double utc_hour) {
  Owed& o = owed_[region];
  if (!(o.slots > 1e-9)) o.since_h = utc_hour;
  o.slots += std::max(0.0, quota);
  if (defers && utc_hour - o.since_h < slack_h) return 0;
  return static_cast<uint64_t>(std::ceil(o.slots - 1e-9));
}

void RegionFloorLedger::Took(const std::string& region, uint64_t picks) {
  Owed& o = owed_[region];
  o.slots = std::max(0.0, o.slots - static_cast<double>(picks));
}

double RegionFloorLedger::owed(const std::string& region) const {
  const auto it = owed_.find(region);
  return it == owed_.end() ? 0.0 : it->second.slots;
}

double RegionBudget::Left(const std::string& region, double utc_hour) const {
  const auto it = spent_.find({region, static_cast<int64_t>(std::floor(utc_hour))});
  return per_hour_ - (it == spent_.end() ? 0.0 : it->second);
}

void RegionBudget::Spend(const std::string& region, double utc_hour, double joules) {
  spent_[{region, static_cast<int64_t>(std::floor(utc_hour))}] += joules;
}

}  // namespace frugal
