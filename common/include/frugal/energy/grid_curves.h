// Hourly grid carbon intensity per region: parsed from a CSV the user supplies
// (an Electricity Maps or ENTSO-E export: region, UTC hour or timestamp,
// gCO2e/kWh), or derived from a region's yearly intensity and solar share with
// a computed clear-sky solar curve (docs/energy-model.md, "Hourly intensity").
// Pure functions over text and numbers; the front end reads the file.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/energy/profiles.h"

namespace frugal {

// One region's average day: gco2e_per_kwh[h] is the intensity in UTC hour [h, h+1).
struct HourlyCurve {
  std::string region;
  std::array<double, 24> gco2e_per_kwh{};
};

// Parses a CSV with a header naming a region column ("region" or "zone"), an
// hour column ("utc_hour": integer 0..23, or "datetime"/"datetime_utc":
// "YYYY-MM-DD[ T]HH[:MM[:SS]][Z]" in UTC) and an intensity column
// ("gco2e_per_kwh" or any header starting "carbon intensity"), in any order,
// other columns ignored. Several rows for one (region, hour) (e.g. a year of
// hourly data) are averaged into the average day. Every region named must have
// all 24 hours. Errors are kInvalidArgument naming `source`, the line and the
// column; at most 4 MiB of text and 200,000 rows are read.
Result<std::vector<HourlyCurve>> ParseHourlyIntensityCsv(std::string_view text, std::string_view source);

// Where a derived curve's inputs come from: a representative site of the
// region and the shares of solar and wind in its yearly generation.
struct GridSite {
  std::string_view region;
  double latitude_deg = 0;
  double longitude_deg = 0;
  double solar_share = 0;  // of yearly generation, 0..1
  double wind_share = 0;   // of yearly generation, 0..1 (no diurnal shape is derived from it)
};

// The sites of the shipped regions (docs/energy-model.md lists their sources);
// nullopt for a region without one (e.g. "world"). Case-insensitive.
std::optional<GridSite> ShippedGridSite(std::string_view region);

// Clear-sky global horizontal irradiance (W/m^2, Haurwitz 1945) at a site and
// UTC time: 1098 cos z exp(-0.057 / cos z) for solar zenith z < 90 degrees,
// else 0; declination by Cooper 1969, hour angle from longitude (no equation
// of time). day_of_year 1..365.
double ClearSkyIrradiance(double latitude_deg, double longitude_deg, int day_of_year, double utc_hour);

// The derived average day of a region (UTC hours): solar's share of each hour
// follows the clear-sky curve, s(h) = solar_share * g(h) / mean(g) (capped at
// 1), and displaces every other source in proportion, so
// I(h) = s(h) * kSolarLifecycleGco2e + (1 - s(h)) * I_rest with I_rest chosen
// so that the day's mean is the yearly intensity. A site without sun that day
// gives the yearly figure every hour.
std::array<double, 24> DerivedHourlyIntensity(double yearly_gco2e_per_kwh, const GridSite& site, int day_of_year);

// Lifecycle intensity of utility-scale solar PV, gCO2e/kWh (IPCC AR5 WGIII
// Annex III median, as Ember's methodology uses; docs/energy-model.md).
inline constexpr double kSolarLifecycleGco2e = 48.0;

// How a run prices carbon hour by hour (carbon.hourly).
enum class HourlyMode : uint8_t {
  kYearly,   // the yearly mean every hour (and any hourly_gco2e_per_kwh a profile gives)
  kDerived,  // DerivedHourlyIntensity for every region with a shipped site and no profile curve
};
Result<HourlyMode> ParseHourlyMode(std::string_view name);
std::string_view HourlyModeName(HourlyMode m);

// Gives `profiles` their hourly curves: `mode`'s derived curves, then every
// curve of `csv_curves` (which win; a region they name must exist, else
// kNotFound naming it). On error `profiles` is unchanged.
Status ApplyHourlyCurves(EnergyProfiles& profiles, HourlyMode mode, int day_of_year,
                         const std::vector<HourlyCurve>& csv_curves, std::string_view csv_source);

}  // namespace frugal
