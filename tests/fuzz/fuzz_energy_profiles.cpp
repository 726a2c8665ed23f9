// libFuzzer target for the energy profile parser and the override merge (a
// user's override file over the shipped profiles): any bytes give an Error or
// profiles that keep every documented value rule (profiles.h,
// docs/energy-model.md), and a failed merge leaves the profiles unchanged.
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "frugal/energy/profiles.h"
#include "fuzz_common.h"

namespace {

using frugal::fuzz::Require;

bool Finite(double v) { return std::isfinite(v); }

// The rules on one entry's values; a partial override entry has only some
// fields, and the ones it does not give keep the default 0.
bool DeviceOk(const frugal::DeviceProfile& d, bool complete) {
  auto positive = [&](double v) { return Finite(v) && (v > 0 || (!complete && v == 0)); };
  return positive(d.flops_per_s_fp32) && positive(d.joules_per_flop_fp32) && positive(d.joules_per_flop_int8) &&
         positive(d.active_watts);
}

bool RadioOk(const frugal::RadioProfile& r, bool complete) {
  auto positive = [&](double v) { return Finite(v) && (v > 0 || (!complete && v == 0)); };
  return positive(r.joules_per_bit_up) && positive(r.joules_per_bit_down) && positive(r.bandwidth_up_bps) &&
         positive(r.bandwidth_down_bps) && Finite(r.tail_watts) && r.tail_watts >= 0 && Finite(r.tail_seconds) &&
         r.tail_seconds >= 0;
}

bool RegionOk(const frugal::RegionProfile& g) {
  if (!Finite(g.gco2e_per_kwh) || g.gco2e_per_kwh < 0) return false;
  if (!Finite(g.utc_offset_hours) || g.utc_offset_hours < -14 || g.utc_offset_hours > 14) return false;
  if (g.hourly_gco2e_per_kwh) {
    for (double h : *g.hourly_gco2e_per_kwh) {
      if (!Finite(h) || h < 0) return false;
    }
  }
  return true;
}

// Ids are non-empty, free of commas, quotes and control characters.
bool IdOk(std::string_view id) {
  if (id.empty()) return false;
  for (char c : id) {
    if (static_cast<unsigned char>(c) < 0x20 || c == ',' || c == '"') return false;
  }
  return true;
}

// No two entries of a kind share an id, ignoring ASCII case; Device() etc. find each one.
template <typename T, typename Lookup>
bool UniqueAndFound(const std::vector<T>& v, Lookup lookup) {
  for (const T& e : v) {
    if (!IdOk(e.id)) return false;
    auto found = lookup(e.id);
    if (!found.ok() || *found != &e) return false;
  }
  return true;
}

bool WeightsOk(const std::vector<frugal::WeightedId>& w, bool resolve, auto lookup) {
  double sum = 0;
  for (const auto& x : w) {
    if (!IdOk(x.id) || !Finite(x.weight) || x.weight < 0) return false;
    if (resolve && !lookup(x.id).ok()) return false;
    sum += x.weight;
  }
  // A complete set's non-empty list does not weigh all zero, and PickWeighted picks a member.
  if (resolve && !w.empty()) {
    if (!(sum > 0)) return false;
    for (double u : {0.0, 0.5, 0.999}) {
      if (!lookup(frugal::PickWeighted(w, u)).ok()) return false;
    }
  }
  return true;
}

// Every documented rule. `complete`: a Parse() result or a merge, where every
// entry has every required field and every reference resolves.
void CheckRules(const frugal::EnergyProfiles& p, bool complete) {
  for (const auto& d : p.devices()) Require(DeviceOk(d, complete));
  for (const auto& r : p.radios()) Require(RadioOk(r, complete));
  for (const auto& g : p.regions()) Require(RegionOk(g));
  Require(UniqueAndFound(p.devices(), [&](std::string_view id) { return p.Device(id); }));
  Require(UniqueAndFound(p.radios(), [&](std::string_view id) { return p.Radio(id); }));
  Require(UniqueAndFound(p.regions(), [&](std::string_view id) { return p.Region(id); }));
  Require(UniqueAndFound(p.mixes(), [&](std::string_view id) { return p.Mix(id); }));
  for (const auto& m : p.mixes()) {
    Require(WeightsOk(m.devices, complete, [&](std::string_view id) { return p.Device(id); }));
    Require(WeightsOk(m.radios, complete, [&](std::string_view id) { return p.Radio(id); }));
    Require(WeightsOk(m.regions, complete, [&](std::string_view id) { return p.Region(id); }));
  }
  Require(Finite(p.server_watts()) && p.server_watts() >= 0);
  Require(Finite(p.server_pue()) && p.server_pue() >= 1);
  if (complete) Require(p.Region(p.server_region()).ok());
}

// Enough of a profile set to tell whether a failed merge changed it.
struct Fingerprint {
  size_t devices, radios, regions, mixes;
  double sum;
  double server_watts, server_pue;
  bool operator==(const Fingerprint&) const = default;
};

Fingerprint Of(const frugal::EnergyProfiles& p) {
  double sum = 0;
  for (const auto& d : p.devices()) sum += d.flops_per_s_fp32 + d.joules_per_flop_int8 + d.active_watts;
  for (const auto& r : p.radios()) sum += r.tail_seconds + r.joules_per_bit_up;
  for (const auto& g : p.regions()) sum += g.gco2e_per_kwh + g.utc_offset_hours;
  for (const auto& m : p.mixes()) sum += static_cast<double>(m.devices.size() + m.radios.size() + m.regions.size());
  return {p.devices().size(), p.radios().size(), p.regions().size(), p.mixes().size(), sum, p.server_watts(),
          p.server_pue()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const frugal::EnergyProfiles kShipped = [] {
    auto p = frugal::EnergyProfiles::LoadDefault();
    Require(p.ok());
    return *p;
  }();
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  // The same bytes as a complete file.
  if (auto full = frugal::EnergyProfiles::Parse(text, "fuzz.toml"); full.ok()) CheckRules(*full, true);

  // As a user override, merged over the shipped profiles.
  auto user = frugal::EnergyProfiles::ParseOverride(text, "fuzz.toml");
  if (!user.ok()) return 0;
  CheckRules(*user, false);
  frugal::EnergyProfiles merged = kShipped;
  const frugal::Status s = merged.MergeOverride(*user);
  if (!s.ok()) {
    Require(!s.error().message().empty());
    Require(Of(merged) == Of(kShipped));  // a failed merge changes nothing
    return 0;
  }
  CheckRules(merged, true);
  // Shipped entries survive (an override replaces fields, never removes entries).
  Require(merged.devices().size() >= kShipped.devices().size());
  Require(merged.radios().size() >= kShipped.radios().size());
  Require(merged.regions().size() >= kShipped.regions().size());
  return 0;
}
