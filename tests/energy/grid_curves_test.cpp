// Hourly grid intensity: the user's CSV (averaged into a day, every error
// named), the clear-sky sun against hand-worked values, the derived curve
// against its defining equations, and the ledger's lookup by UTC hour.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <string>

#include "frugal/energy/grid_curves.h"
#include "frugal/energy/model.h"
#include "frugal/energy/profiles.h"

namespace frugal {
namespace {

std::string DayCsv(std::string_view region, double base) {
  std::string s;
  for (int h = 0; h < 24; ++h) s += std::string(region) + "," + std::to_string(h) + "," + std::to_string(base + h) + "\n";
  return s;
}

}  // namespace

TEST_SUITE("energy") {
  TEST_CASE("an hourly CSV gives each region's day by UTC hour, columns in any order") {
    const std::string text = "utc_hour,gco2e_per_kwh,region\r\n" + std::string("0,10,DE\r\n") + [] {
      std::string s;
      for (int h = 1; h < 24; ++h) s += std::to_string(h) + "," + std::to_string(10 + h) + ",DE\r\n";
      return s;
    }();
    auto curves = ParseHourlyIntensityCsv(text, "t.csv");
    REQUIRE(curves.ok());
    REQUIRE(curves->size() == 1);
    CHECK((*curves)[0].region == "DE");
    for (int h = 0; h < 24; ++h) CHECK((*curves)[0].gco2e_per_kwh[static_cast<size_t>(h)] == doctest::Approx(10 + h));
  }

  TEST_CASE("rows of a year-long export are averaged into the average day") {
    std::string text = "Datetime (UTC),Zone Id,Carbon Intensity gCO2eq/kWh (LCA),Other\n";
    for (int day = 1; day <= 2; ++day) {
      for (int h = 0; h < 24; ++h) {
        char line[96];
        std::snprintf(line, sizeof line, "2024-01-%02d %02d:00:00,FR,%d,x\n", day, h, day == 1 ? 100 : 200);
        text += line;
      }
    }
    auto curves = ParseHourlyIntensityCsv(text, "em.csv");
    REQUIRE(curves.ok());
    CHECK((*curves)[0].region == "FR");
    CHECK((*curves)[0].gco2e_per_kwh[7] == doctest::Approx(150));
  }

  TEST_CASE("a malformed hourly CSV is refused naming the file, line and column") {
    auto err = [](const std::string& text) {
      auto r = ParseHourlyIntensityCsv(text, "bad.csv");
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code() == ErrorCode::kInvalidArgument);
      return r.error().message();
    };
    CHECK(err("").find("empty") != std::string::npos);
    CHECK(err("region,hour,value\nDE,1,2\n").find("header") != std::string::npos);
    CHECK(err("region,utc_hour,gco2e_per_kwh\nDE,24,300\n").find("line 2") != std::string::npos);
    CHECK(err("region,utc_hour,gco2e_per_kwh\nDE,3,-1\n").find("gco2e_per_kwh") != std::string::npos);
    CHECK(err("region,utc_hour,gco2e_per_kwh\nDE,3,nan\n").find("line 2") != std::string::npos);
    CHECK(err("region,utc_hour,gco2e_per_kwh\nDE,3\n").find("fields") != std::string::npos);
    const std::string missing = err("region,utc_hour,gco2e_per_kwh\n" + DayCsv("DE", 1).substr(0, 200));
    CHECK(missing.find("'DE'") != std::string::npos);
    CHECK(missing.find("UTC hour") != std::string::npos);
    CHECK(err("region,datetime_utc,gco2e_per_kwh\nDE,2024-01-01 05:00+02:00,1\n").find("datetime") !=
          std::string::npos);
  }

  TEST_CASE("clear-sky irradiance matches hand-worked values") {
    // Equator, equinox (day 80: declination -0.40 degrees), solar noon at
    // longitude 0: cos z = cos(0.4036 deg), GHI = 1098 cos z exp(-0.057 / cos z).
    const double decl = 23.45 * std::sin(2 * std::numbers::pi * 364 / 365.0) * std::numbers::pi / 180;
    const double cz = std::cos(decl);
    CHECK(ClearSkyIrradiance(0, 0, 80, 12) == doctest::Approx(1098 * cz * std::exp(-0.057 / cz)).epsilon(1e-9));
    CHECK(ClearSkyIrradiance(0, 0, 80, 0) == 0);
    // Longitude 90 E has its noon at 06 UTC.
    CHECK(ClearSkyIrradiance(0, 90, 80, 6) == doctest::Approx(ClearSkyIrradiance(0, 0, 80, 12)));
    // Polar night: nothing all day.
    for (int h = 0; h < 24; ++h) CHECK(ClearSkyIrradiance(80, 0, 355, h + 0.5) == 0);
  }

  TEST_CASE("a derived day keeps the yearly mean, dips at solar noon and peaks at night") {
    const GridSite site{"X", 0, 0, 0.2, 0.1};
    const auto curve = DerivedHourlyIntensity(400, site, 80);
    double mean = 0;
    for (double v : curve) mean += v / 24;
    CHECK(mean == doctest::Approx(400).epsilon(1e-12));
    const auto lowest = std::min_element(curve.begin(), curve.end()) - curve.begin();
    CHECK((lowest == 11 || lowest == 12));
    // Night: no sun, so s = 0 and the intensity is I_rest, above the yearly figure.
    CHECK(curve[0] > 400);
    CHECK(curve[0] == doctest::Approx(curve[23]));
    // Reference: rebuild the noon hour from the definition with a plain loop.
    double g[24] = {}, total = 0;
    for (int h = 0; h < 24; ++h) {
      for (int k = 0; k < 12; ++k) g[h] += ClearSkyIrradiance(0, 0, 80, h + (k + 0.5) / 12) / 12;
      total += g[h];
    }
    double s_mean = 0;
    for (double v : g) s_mean += std::min(1.0, 0.2 * v / (total / 24)) / 24;
    const double rest = (400 - s_mean * kSolarLifecycleGco2e) / (1 - s_mean);
    const double s12 = std::min(1.0, 0.2 * g[12] / (total / 24));
    CHECK(curve[12] == doctest::Approx(s12 * kSolarLifecycleGco2e + (1 - s12) * rest).epsilon(1e-12));
    CHECK(curve[0] == doctest::Approx(rest).epsilon(1e-12));
    // No solar, or no sun that day: the yearly figure every hour.
    for (double v : DerivedHourlyIntensity(400, GridSite{"X", 0, 0, 0, 0.3}, 80)) CHECK(v == 400);
    for (double v : DerivedHourlyIntensity(400, GridSite{"X", 80, 0, 0.2, 0}, 355)) CHECK(v == 400);
  }

  TEST_CASE("the ledger prices carbon at the UTC hour's value of a region's curve") {
    RegionProfile r;
    r.id = "X";
    r.gco2e_per_kwh = 300;
    r.utc_offset_hours = 5;
    std::array<double, 24> day{};
    for (size_t h = 0; h < 24; ++h) day[h] = 100 + static_cast<double>(h);
    r.utc_hourly_gco2e_per_kwh = day;
    CHECK(CarbonIntensity(r, 5.5) == 105);   // UTC, not local: the offset does not apply
    CHECK(CarbonIntensity(r, 29.0) == 105);  // wraps by day
    CHECK(CarbonIntensity(r, -0.5) == 123);
    CHECK(CarbonIntensity(r, NAN) == 300);
    CHECK(CarbonGrams(3.6e6, r, 7.2) == doctest::Approx(107));
  }

  TEST_CASE("hourly curves are applied: derived where a site is known, a CSV over them, unknown regions refused") {
    EnergyProfiles p = *EnergyProfiles::LoadDefault();
    REQUIRE(ApplyHourlyCurves(p, HourlyMode::kDerived, 80, {}, "").ok());
    CHECK((*p.Region("DE"))->hourly_source == "derived");
    CHECK((*p.Region("DE"))->utc_hourly_gco2e_per_kwh.has_value());
    CHECK_FALSE((*p.Region("world"))->utc_hourly_gco2e_per_kwh.has_value());  // no site: yearly figure
    // Noon in Germany (about 11 UTC) is cleaner than midnight.
    CHECK(CarbonIntensity(**p.Region("DE"), 11.5) < CarbonIntensity(**p.Region("DE"), 23.5));

    auto curves = *ParseHourlyIntensityCsv("region,utc_hour,gco2e_per_kwh\n" + DayCsv("de", 50), "user.csv");
    REQUIRE(ApplyHourlyCurves(p, HourlyMode::kDerived, 80, curves, "user.csv").ok());
    CHECK((*p.Region("DE"))->hourly_source == "csv:user.csv");
    CHECK(CarbonIntensity(**p.Region("DE"), 3.2) == doctest::Approx(53));

    EnergyProfiles before = *EnergyProfiles::LoadDefault();
    auto unknown = *ParseHourlyIntensityCsv("region,utc_hour,gco2e_per_kwh\n" + DayCsv("Atlantis", 50), "u.csv");
    Status st = ApplyHourlyCurves(before, HourlyMode::kDerived, 80, unknown, "u.csv");
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message().find("Atlantis") != std::string::npos);
    CHECK_FALSE((*before.Region("DE"))->utc_hourly_gco2e_per_kwh.has_value());  // unchanged on error
    CHECK_FALSE(ApplyHourlyCurves(before, HourlyMode::kYearly, 0, {}, "").ok());
    REQUIRE(ApplyHourlyCurves(before, HourlyMode::kYearly, 80, {}, "").ok());
    CHECK_FALSE((*before.Region("DE"))->utc_hourly_gco2e_per_kwh.has_value());
  }
}

}  // namespace frugal
