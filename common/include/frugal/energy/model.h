// The energy model: compute joules from FLOPs executed, radio joules from a
// schedule of transfers (bytes actually encoded, with the cellular tail after
// each burst), and grams of CO2e from joules, region, local hour and PUE.
// Pure functions; thread-safe. Equations and sources: docs/energy-model.md.
#pragma once

#include <cstdint>
#include <span>

#include "frugal/energy/profiles.h"

namespace frugal {

enum class Direction : uint8_t { kDown, kUp };

// One burst on the radio: starts at start_s (any common time origin, seconds).
struct Transfer {
  double start_s = 0;
  uint64_t bytes = 0;
  Direction dir = Direction::kDown;
};

struct RadioCost {
  double joules = 0;       // total: transfer energy plus tail_joules
  double tail_joules = 0;  // the part spent in tails after bursts
  double seconds = 0;      // time on air, sum of transfer durations
  int full_tails = 0;      // bursts followed by a complete tail
};

// Seconds to move `bytes` at the radio's typical bandwidth in that direction.
double TransferSeconds(const RadioProfile& r, uint64_t bytes, Direction dir);

// Joules for a schedule of transfers (sorted by start; an unsorted schedule is
// sorted on a copy). Each transfer costs bytes*8*J/bit. After a burst the radio
// holds its tail: if the next burst starts within tail_seconds of the end of the
// previous activity it pays only tail_watts * gap, else a full tail; the last
// burst pays a full tail. Overlapping bursts merge. Zero-byte transfers are
// skipped; a non-finite start is taken as 0.
RadioCost RadioEnergy(const RadioProfile& r, std::span<const Transfer> schedule);

// flops * joules per FLOP of the device class at that precision (int8 only for
// FLOPs a client reports as int8; Frugal's own trainer runs fp32).
double ComputeJoules(const DeviceProfile& d, double flops, bool int8 = false);
// flops / sustained fp32 FLOP/s of the device class.
double ComputeSeconds(const DeviceProfile& d, double flops);

// Grid carbon intensity (gCO2e/kWh) of `region` at `utc_hour` (hours since any
// UTC midnight; wraps modulo 24): the hourly profile at local hour
// floor(utc_hour + offset) mod 24 if present, else the yearly mean. A non-finite
// hour gives the yearly mean.
double CarbonIntensity(const RegionProfile& region, double utc_hour);

// joules / 3.6e6 * CarbonIntensity(region, utc_hour) * pue.
double CarbonGrams(double joules, const RegionProfile& region, double utc_hour, double pue = 1.0);

// The coordinator's aggregation energy: facility joules (PUE included) and grams.
struct ServerCost {
  double joules = 0;
  double gco2e = 0;
};
// cpu_seconds * server_watts * server_pue joules, carbon at the server region's
// intensity at utc_hour. Fails (kNotFound) if the server region is unknown, or
// kInvalidArgument if cpu_seconds is negative or non-finite.
Result<ServerCost> ServerAggregationCost(const EnergyProfiles& profiles, double cpu_seconds, double utc_hour);

}  // namespace frugal
