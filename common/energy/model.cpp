#include "frugal/energy/model.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace frugal {

namespace {
constexpr double kJoulesPerKwh = 3.6e6;
}  // namespace

double TransferSeconds(const RadioProfile& r, uint64_t bytes, Direction dir) {
  const double bps = dir == Direction::kUp ? r.bandwidth_up_bps : r.bandwidth_down_bps;
  return static_cast<double>(bytes) * 8.0 / bps;
}

RadioCost RadioEnergy(const RadioProfile& r, std::span<const Transfer> schedule) {
  RadioCost cost;
  auto by_start = [](const Transfer& a, const Transfer& b) { return a.start_s < b.start_s; };
  const bool all_finite = std::all_of(schedule.begin(), schedule.end(),
                                      [](const Transfer& t) { return std::isfinite(t.start_s); });
  std::vector<Transfer> sorted;
  if (!all_finite || !std::is_sorted(schedule.begin(), schedule.end(), by_start)) {
    sorted.assign(schedule.begin(), schedule.end());
    // A NaN would break the sort's ordering; such a start is taken as 0.
    for (Transfer& t : sorted) {
      if (!std::isfinite(t.start_s)) t.start_s = 0;
    }
    std::stable_sort(sorted.begin(), sorted.end(), by_start);
    schedule = sorted;
  }
  const double full_tail_j = r.tail_watts * r.tail_seconds;
  bool active = false;    // a burst has happened and its tail is not yet paid
  double busy_until = 0;  // end of the latest transfer so far
  for (const Transfer& t : schedule) {
    if (t.bytes == 0) continue;
    const double bits = static_cast<double>(t.bytes) * 8.0;
    const double e_bit = t.dir == Direction::kUp ? r.joules_per_bit_up : r.joules_per_bit_down;
    const double seconds = TransferSeconds(r, t.bytes, t.dir);
    if (active) {
      // The previous activity ended at busy_until; its tail runs until the
      // radio drops to idle or this burst takes it over.
      const double gap = t.start_s - busy_until;
      if (gap >= r.tail_seconds) {
        cost.tail_joules += full_tail_j;
        ++cost.full_tails;
      } else if (gap > 0) {
        cost.tail_joules += r.tail_watts * gap;
      }
    }
    cost.joules += bits * e_bit;
    cost.seconds += seconds;
    busy_until = active ? std::max(busy_until, t.start_s + seconds) : t.start_s + seconds;
    active = true;
  }
  if (active) {
    cost.tail_joules += full_tail_j;
    ++cost.full_tails;
  }
  cost.joules += cost.tail_joules;
  return cost;
}

double ComputeJoules(const DeviceProfile& d, double flops, bool int8) {
  return flops * (int8 ? d.joules_per_flop_int8 : d.joules_per_flop_fp32);
}

double ComputeSeconds(const DeviceProfile& d, double flops) { return flops / d.flops_per_s_fp32; }

double CarbonIntensity(const RegionProfile& region, double utc_hour) {
  if (!std::isfinite(utc_hour)) return region.gco2e_per_kwh;
  if (region.utc_hourly_gco2e_per_kwh.has_value()) {
    double h = std::fmod(utc_hour, 24.0);
    if (h < 0) h += 24.0;
    return (*region.utc_hourly_gco2e_per_kwh)[std::min<size_t>(static_cast<size_t>(std::floor(h)), 23)];
  }
  if (!region.hourly_gco2e_per_kwh.has_value()) return region.gco2e_per_kwh;
  double local = std::fmod(utc_hour + region.utc_offset_hours, 24.0);
  if (local < 0) local += 24.0;
  // fmod of a value just below 0 can round up to exactly 24 after the add.
  size_t hour = std::min<size_t>(static_cast<size_t>(std::floor(local)), 23);
  return (*region.hourly_gco2e_per_kwh)[hour];
}

double CarbonGrams(double joules, const RegionProfile& region, double utc_hour, double pue) {
  return joules / kJoulesPerKwh * CarbonIntensity(region, utc_hour) * pue;
}

Result<ServerCost> ServerAggregationCost(const EnergyProfiles& profiles, double cpu_seconds, double utc_hour) {
  if (!std::isfinite(cpu_seconds) || cpu_seconds < 0) {
    return InvalidArgumentError("server cpu_seconds must be finite and >= 0");
  }
  FRUGAL_ASSIGN_OR_RETURN(const RegionProfile* region, profiles.Region(profiles.server_region()));
  ServerCost c;
  c.joules = cpu_seconds * profiles.server_watts() * profiles.server_pue();
  // PUE is already in the joules: carbon at PUE 1 so it is not counted twice.
  c.gco2e = CarbonGrams(c.joules, *region, utc_hour, 1.0);
  return c;
}

}  // namespace frugal
