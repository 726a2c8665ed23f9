// libFuzzer target for the hourly grid intensity CSV (a user's Electricity
// Maps / ENTSO-E export): any bytes give an Error or curves of 24 finite,
// non-negative values for non-empty regions; applying them to the shipped
// profiles either succeeds with every curve in place or changes nothing.
#include <cmath>
#include <cstdint>
#include <string_view>

#include "frugal/energy/grid_curves.h"
#include "frugal/energy/model.h"
#include "fuzz_common.h"

using frugal::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const frugal::EnergyProfiles kShipped = [] {
    auto p = frugal::EnergyProfiles::LoadDefault();
    Require(p.ok());
    return *p;
  }();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto curves = frugal::ParseHourlyIntensityCsv(text, "fuzz.csv");
  if (!curves.ok()) {
    Require(!curves.error().message().empty());
    return 0;
  }
  Require(!curves->empty());
  for (const frugal::HourlyCurve& c : *curves) {
    Require(!c.region.empty());
    for (double v : c.gco2e_per_kwh) Require(std::isfinite(v) && v >= 0);
  }
  frugal::EnergyProfiles p = kShipped;
  const frugal::Status s = frugal::ApplyHourlyCurves(p, frugal::HourlyMode::kYearly, 80, *curves, "fuzz.csv");
  if (!s.ok()) {
    for (const auto& r : p.regions()) Require(!r.utc_hourly_gco2e_per_kwh.has_value());  // unchanged
    return 0;
  }
  for (const frugal::HourlyCurve& c : *curves) {
    auto r = p.Region(c.region);
    Require(r.ok());
    for (int h = 0; h < 24; ++h) {
      Require(frugal::CarbonIntensity(**r, h + 0.5) == c.gco2e_per_kwh[static_cast<size_t>(h)]);
    }
  }
  return 0;
}
