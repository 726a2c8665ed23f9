#include "frugal/energy/grid_curves.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <numbers>

namespace frugal {
namespace {

constexpr size_t kMaxCsvBytes = 4u << 20;
constexpr size_t kMaxCsvRows = 200'000;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '"')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '"' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= line.size(); ++i) {
    if (i == line.size() || line[i] == ',') {
      out.push_back(Trim(line.substr(start, i - start)));
      start = i + 1;
    }
  }
  return out;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// An hour 0..23 from "17" or from "2024-01-01 17:00:00" / "2024-01-01T17:00Z".
std::optional<int> ParseHour(std::string_view s, bool timestamp) {
  if (!timestamp) {
    if (!AllDigits(s) || s.size() > 2) return std::nullopt;
    const int h = std::stoi(std::string(s));
    return h < 24 ? std::optional<int>(h) : std::nullopt;
  }
  if (s.size() < 13 || (s[10] != ' ' && s[10] != 'T') || s[4] != '-' || s[7] != '-') return std::nullopt;
  if (!AllDigits(s.substr(0, 4)) || !AllDigits(s.substr(5, 2)) || !AllDigits(s.substr(8, 2))) return std::nullopt;
  const std::string_view hh = s.substr(11, 2);
  if (!AllDigits(hh)) return std::nullopt;
  const int h = (hh[0] - '0') * 10 + (hh[1] - '0');
  if (h >= 24) return std::nullopt;
  // Anything after the hour must look like ":MM[:SS][.fff][Z|+00:00]": a
  // non-UTC offset would shift the curve, so only Z / +00:00 are taken.
  std::string_view rest = s.substr(13);
  if (!rest.empty() && rest.back() == 'Z') rest.remove_suffix(1);
  if (rest.size() >= 6 && (rest.substr(rest.size() - 6) == "+00:00")) rest.remove_suffix(6);
  for (char c : rest) {
    if (!(c == ':' || c == '.' || (c >= '0' && c <= '9'))) return std::nullopt;
  }
  return h;
}

std::optional<double> ParseNumber(std::string_view s) {
  if (s.empty() || s.size() > 40) return std::nullopt;
  const std::string str(s);
  char* end = nullptr;
  const double v = std::strtod(str.c_str(), &end);
  if (end != str.c_str() + str.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

Error CsvError(std::string_view source, size_t line, std::string_view what) {
  return InvalidArgumentError("hourly intensity CSV '" + std::string(source) + "' line " + std::to_string(line) +
                              ": " + std::string(what));
}

constexpr double kDeg = std::numbers::pi / 180.0;

// Sites are a population centre of each region; shares of 2024 generation.
// Sources and what is unverified: docs/energy-model.md, "Hourly intensity".
constexpr GridSite kSites[] = {
    {"EU", 50.0, 10.0, 0.11, 0.17},   {"US", 38.0, -95.0, 0.07, 0.10},  {"CN", 32.0, 112.0, 0.083, 0.10},
    {"IN", 22.0, 78.0, 0.07, 0.047},  {"DE", 51.0, 10.0, 0.14, 0.27},   {"FR", 46.5, 2.5, 0.05, 0.09},
    {"UK", 52.5, -1.5, 0.05, 0.29},   {"JP", 36.0, 138.0, 0.11, 0.01},  {"KR", 36.5, 127.8, 0.055, 0.01},
    {"BR", -15.0, -47.9, 0.09, 0.14}, {"CA", 45.0, -76.0, 0.01, 0.065}, {"AU", -33.9, 151.0, 0.18, 0.12},
    {"SE", 59.3, 18.0, 0.02, 0.22},   {"NO", 60.0, 10.0, 0.003, 0.11},  {"PL", 52.0, 19.0, 0.10, 0.14},
    {"ZA", -26.2, 28.0, 0.07, 0.05},
};

}  // namespace

Result<std::vector<HourlyCurve>> ParseHourlyIntensityCsv(std::string_view text, std::string_view source) {
  if (text.size() > kMaxCsvBytes) {
    return InvalidArgumentError("hourly intensity CSV '" + std::string(source) + "' is larger than 4 MiB");
  }
  size_t line_no = 0;
  size_t pos = 0;
  auto next_line = [&](std::string_view& line) {
    while (pos < text.size()) {
      const size_t end = std::min(text.find('\n', pos), text.size());
      line = text.substr(pos, end - pos);
      pos = end + 1;
      ++line_no;
      if (!Trim(line).empty()) return true;
    }
    return false;
  };
  std::string_view line;
  if (!next_line(line)) return CsvError(source, 1, "empty file (expected a header: region,utc_hour,gco2e_per_kwh)");
  const std::vector<std::string_view> header = SplitFields(line);
  int col_region = -1, col_hour = -1, col_value = -1;
  bool timestamp = false;
  for (size_t i = 0; i < header.size(); ++i) {
    const std::string h = Lower(header[i]);
    if (h == "region" || h == "zone" || h == "zone id") col_region = static_cast<int>(i);
    if (h == "utc_hour") col_hour = static_cast<int>(i);
    if (h == "datetime" || h == "datetime_utc" || h == "datetime (utc)") {
      col_hour = static_cast<int>(i);
      timestamp = true;
    }
    if (h == "gco2e_per_kwh" || h.starts_with("carbon intensity")) col_value = static_cast<int>(i);
  }
  if (col_region < 0 || col_hour < 0 || col_value < 0) {
    return CsvError(source, line_no,
                    "header needs a region column (region), an hour column (utc_hour or datetime_utc) and an "
                    "intensity column (gco2e_per_kwh)");
  }
  const auto needed = static_cast<size_t>(std::max({col_region, col_hour, col_value}));
  struct Acc {
    std::array<double, 24> sum{};
    std::array<uint32_t, 24> n{};
  };
  std::map<std::string, Acc> acc;  // by lower-case region
  std::map<std::string, std::string> spelling;
  size_t rows = 0;
  while (next_line(line)) {
    if (++rows > kMaxCsvRows) return CsvError(source, line_no, "more than 200,000 rows");
    const std::vector<std::string_view> f = SplitFields(line);
    if (f.size() <= needed) {
      return CsvError(source, line_no, "has " + std::to_string(f.size()) + " fields, the header names column " +
                                           std::to_string(needed + 1));
    }
    const std::string_view region = f[static_cast<size_t>(col_region)];
    if (region.empty() || region.size() > 64) return CsvError(source, line_no, "column 'region': empty or too long");
    const std::optional<int> hour = ParseHour(f[static_cast<size_t>(col_hour)], timestamp);
    if (!hour) {
      return CsvError(source, line_no,
                      timestamp ? "column 'datetime': not a UTC timestamp YYYY-MM-DD HH:MM[:SS][Z]"
                                : "column 'utc_hour': not an integer hour 0..23");
    }
    const std::optional<double> v = ParseNumber(f[static_cast<size_t>(col_value)]);
    if (!v || *v < 0) return CsvError(source, line_no, "column 'gco2e_per_kwh': not a finite number >= 0");
    const std::string key = Lower(region);
    spelling.emplace(key, std::string(region));
    Acc& a = acc[key];
    a.sum[static_cast<size_t>(*hour)] += *v;
    ++a.n[static_cast<size_t>(*hour)];
  }
  std::vector<HourlyCurve> out;
  for (const auto& [key, a] : acc) {
    HourlyCurve c;
    c.region = spelling.at(key);
    for (size_t h = 0; h < 24; ++h) {
      if (a.n[h] == 0) {
        return InvalidArgumentError("hourly intensity CSV '" + std::string(source) + "': region '" + c.region +
                                    "' has no row for UTC hour " + std::to_string(h));
      }
      c.gco2e_per_kwh[h] = a.sum[h] / a.n[h];
    }
    out.push_back(std::move(c));
  }
  if (out.empty()) return CsvError(source, line_no, "no data rows");
  return out;
}

std::optional<GridSite> ShippedGridSite(std::string_view region) {
  const std::string want = Lower(region);
  for (const GridSite& s : kSites) {
    if (Lower(s.region) == want) return s;
  }
  return std::nullopt;
}

double ClearSkyIrradiance(double latitude_deg, double longitude_deg, int day_of_year, double utc_hour) {
  const double decl = 23.45 * kDeg * std::sin(2.0 * std::numbers::pi * (284.0 + day_of_year) / 365.0);
  const double solar_hour = utc_hour + longitude_deg / 15.0;
  const double hour_angle = 15.0 * kDeg * (solar_hour - 12.0);
  const double lat = latitude_deg * kDeg;
  const double cos_z =
      std::sin(lat) * std::sin(decl) + std::cos(lat) * std::cos(decl) * std::cos(hour_angle);
  if (!(cos_z > 0)) return 0.0;
  return 1098.0 * cos_z * std::exp(-0.057 / cos_z);
}

std::array<double, 24> DerivedHourlyIntensity(double yearly_gco2e_per_kwh, const GridSite& site, int day_of_year) {
  // The hour's mean irradiance from 12 samples (5-minute steps): a sunrise
  // inside an hour counts in part.
  constexpr int kSub = 12;
  std::array<double, 24> g{};
  double total = 0;
  for (int h = 0; h < 24; ++h) {
    for (int k = 0; k < kSub; ++k) {
      g[h] += ClearSkyIrradiance(site.latitude_deg, site.longitude_deg, day_of_year, h + (k + 0.5) / kSub);
    }
    g[h] /= kSub;
    total += g[h];
  }
  std::array<double, 24> out;
  out.fill(yearly_gco2e_per_kwh);
  const double mean = total / 24.0;
  if (!(mean > 0) || !(site.solar_share > 0)) return out;
  std::array<double, 24> s{};
  double s_mean = 0;
  for (int h = 0; h < 24; ++h) {
    s[h] = std::min(1.0, site.solar_share * g[h] / mean);
    s_mean += s[h] / 24.0;
  }
  // Mean over the day of s*Isolar + (1-s)*Irest = yearly  =>  Irest below.
  if (s_mean >= 1.0) return out;
  const double rest = std::max(0.0, (yearly_gco2e_per_kwh - s_mean * kSolarLifecycleGco2e) / (1.0 - s_mean));
  for (int h = 0; h < 24; ++h) out[h] = s[h] * kSolarLifecycleGco2e + (1.0 - s[h]) * rest;
  return out;
}

Result<HourlyMode> ParseHourlyMode(std::string_view name) {
  if (name == "yearly") return HourlyMode::kYearly;
  if (name == "derived") return HourlyMode::kDerived;
  return InvalidArgumentError("unknown carbon.hourly '" + std::string(name) + "' (yearly, derived)");
}

std::string_view HourlyModeName(HourlyMode m) { return m == HourlyMode::kDerived ? "derived" : "yearly"; }

Status ApplyHourlyCurves(EnergyProfiles& profiles, HourlyMode mode, int day_of_year,
                         const std::vector<HourlyCurve>& csv_curves, std::string_view csv_source) {
  if (day_of_year < 1 || day_of_year > 365) {
    return InvalidArgumentError("carbon.day_of_year must be 1..365, got " + std::to_string(day_of_year));
  }
  EnergyProfiles out = profiles;
  if (mode == HourlyMode::kDerived) {
    for (const RegionProfile& r : profiles.regions()) {
      if (r.hourly_gco2e_per_kwh.has_value()) continue;  // a profile's own curve stays
      const std::optional<GridSite> site = ShippedGridSite(r.id);
      if (!site) continue;
      FRUGAL_RETURN_IF_ERROR(
          out.SetUtcHourly(r.id, DerivedHourlyIntensity(r.gco2e_per_kwh, *site, day_of_year), "derived"));
    }
  }
  for (const HourlyCurve& c : csv_curves) {
    Status st = out.SetUtcHourly(c.region, c.gco2e_per_kwh, "csv:" + std::string(csv_source));
    if (!st.ok()) return st.error().WithContext("hourly intensity CSV '" + std::string(csv_source) + "'");
  }
  profiles = std::move(out);
  return OkStatus();
}

}  // namespace frugal
