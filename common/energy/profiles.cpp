#include "frugal/energy/profiles.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <type_traits>
#include <toml++/toml.h>

#include "frugal/core/config_reader.h"
#include "frugal/energy/default_profiles.h"

namespace frugal {
namespace {

constexpr size_t kMaxProfileFileBytes = 16u << 20;

// Allowed range of one numeric field.
enum class Bound : uint8_t { kPositive, kNonNegative, kAtLeastOne, kUtcOffset };

template <typename T>
struct NumberField {
  const char* name;
  double T::*member;
  Bound bound;
  bool required;
};

constexpr NumberField<DeviceProfile> kDeviceFields[] = {
    {"flops_per_s_fp32", &DeviceProfile::flops_per_s_fp32, Bound::kPositive, true},
    {"joules_per_flop_fp32", &DeviceProfile::joules_per_flop_fp32, Bound::kPositive, true},
    {"joules_per_flop_int8", &DeviceProfile::joules_per_flop_int8, Bound::kPositive, true},
    {"active_watts", &DeviceProfile::active_watts, Bound::kPositive, true},
};
// Device fields of schema 1 files that no code read; named in their error so
// an older override file says what to delete instead of "not a known field".
constexpr std::string_view kRemovedDeviceFields[] = {"flops_per_s_int8", "idle_watts", "battery_wh"};

constexpr NumberField<RadioProfile> kRadioFields[] = {
    {"joules_per_bit_up", &RadioProfile::joules_per_bit_up, Bound::kPositive, true},
    {"joules_per_bit_down", &RadioProfile::joules_per_bit_down, Bound::kPositive, true},
    {"tail_watts", &RadioProfile::tail_watts, Bound::kNonNegative, true},
    {"tail_seconds", &RadioProfile::tail_seconds, Bound::kNonNegative, true},
    {"bandwidth_up_bps", &RadioProfile::bandwidth_up_bps, Bound::kPositive, true},
    {"bandwidth_down_bps", &RadioProfile::bandwidth_down_bps, Bound::kPositive, true},
};

// Region fields: these two numbers, then bit 2 for hourly_gco2e_per_kwh.
constexpr NumberField<RegionProfile> kRegionFields[] = {
    {"gco2e_per_kwh", &RegionProfile::gco2e_per_kwh, Bound::kNonNegative, true},
    {"utc_offset_hours", &RegionProfile::utc_offset_hours, Bound::kUtcOffset, false},
};
constexpr uint32_t kRegionHourlyBit = 1u << 2;
constexpr const char* kHourlyKey = "hourly_gco2e_per_kwh";

// Server fields, by bit.
constexpr uint32_t kServerWattsBit = 1u << 0, kServerPueBit = 1u << 1, kServerRegionBit = 1u << 2;
constexpr uint32_t kServerAll = kServerWattsBit | kServerPueBit | kServerRegionBit;

template <typename T, size_t N>
constexpr uint32_t RequiredMask(const NumberField<T> (&fields)[N]) {
  uint32_t m = 0;
  for (size_t i = 0; i < N; ++i) {
    if (fields[i].required) m |= 1u << i;
  }
  return m;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

template <typename T>
int FindIndex(const std::vector<T>& v, std::string_view id) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (EqualsIgnoreCase(v[i].id, id)) return static_cast<int>(i);
  }
  return -1;
}

template <typename T>
Error UnknownId(const std::vector<T>& v, std::string_view kind, std::string_view id) {
  std::string m = "unknown ";
  m += kind;
  m += " '";
  m += id;
  m += "' (known: ";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) m += ", ";
    m += v[i].id;
  }
  m += ")";
  return NotFoundError(std::move(m));
}

std::string FormatDouble(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Where a field sits, for messages: "<source>: devices.phone-low.active_watts".
std::string Where(std::string_view source, std::string_view section, std::string_view id,
                  std::string_view field) {
  std::string m(source);
  m += ": ";
  m += section;
  if (!id.empty()) {
    m += ".";
    m += id;
  }
  if (!field.empty()) {
    m += ".";
    m += field;
  }
  return m;
}

Result<double> ReadNumber(const toml::node& node, const std::string& where) {
  double v;
  if (const auto* i = node.as_integer()) {
    v = static_cast<double>(i->get());
  } else if (const auto* f = node.as_floating_point()) {
    v = f->get();
  } else {
    return InvalidArgumentError(where + " must be a number");
  }
  if (!std::isfinite(v)) return InvalidArgumentError(where + " must be finite, got " + FormatDouble(v));
  return v;
}

Status CheckBound(double v, Bound bound, const std::string& where) {
  switch (bound) {
    case Bound::kPositive:
      if (!(v > 0)) return InvalidArgumentError(where + " must be > 0, got " + FormatDouble(v));
      break;
    case Bound::kNonNegative:
      if (!(v >= 0)) return InvalidArgumentError(where + " must be >= 0, got " + FormatDouble(v));
      break;
    case Bound::kAtLeastOne:
      if (!(v >= 1)) return InvalidArgumentError(where + " must be >= 1, got " + FormatDouble(v));
      break;
    case Bound::kUtcOffset:
      if (!(v >= -14 && v <= 14)) {
        return InvalidArgumentError(where + " must be within [-14, 14] hours, got " + FormatDouble(v));
      }
      break;
  }
  return OkStatus();
}

// Reads the numeric fields of one entry table into `out`, setting `mask` bits;
// unknown keys other than those in `extra_keys` are errors.
template <typename T, size_t N>
Status ReadFields(const toml::table& tbl, const NumberField<T> (&fields)[N],
                  std::initializer_list<std::string_view> extra_keys, std::string_view source,
                  std::string_view section, std::string_view id, T& out, uint32_t& mask) {
  for (auto&& [key, node] : tbl) {
    std::string_view k = key.str();
    bool known = false;
    for (size_t i = 0; i < N; ++i) {
      if (k != fields[i].name) continue;
      known = true;
      std::string where = Where(source, section, id, k);
      FRUGAL_ASSIGN_OR_RETURN(double v, ReadNumber(node, where));
      FRUGAL_RETURN_IF_ERROR(CheckBound(v, fields[i].bound, where));
      out.*(fields[i].member) = v;
      mask |= 1u << i;
    }
    for (std::string_view e : extra_keys) known = known || k == e;
    if constexpr (std::is_same_v<T, DeviceProfile>) {
      for (std::string_view removed : kRemovedDeviceFields) {
        if (k == removed) {
          return InvalidArgumentError(Where(source, section, id, k) +
                                      " is no longer a profile field (nothing used it): delete the line");
        }
      }
    }
    if (!known) {
      std::string m = Where(source, section, id, k) + " is not a known field (expected one of:";
      for (size_t i = 0; i < N; ++i) {
        m += " ";
        m += fields[i].name;
      }
      for (std::string_view e : extra_keys) {
        m += " ";
        m += e;
      }
      m += ")";
      return InvalidArgumentError(std::move(m));
    }
  }
  return OkStatus();
}

template <typename T, size_t N>
Status RequireFields(const NumberField<T> (&fields)[N], uint32_t mask, std::string_view source,
                     std::string_view section, std::string_view id) {
  for (size_t i = 0; i < N; ++i) {
    if (fields[i].required && !(mask & (1u << i))) {
      return InvalidArgumentError(Where(source, section, id, fields[i].name) + " is missing");
    }
  }
  return OkStatus();
}

Status CheckId(std::string_view id, const std::string& where) {
  if (id.empty()) return InvalidArgumentError(where + ": an entry id must not be empty");
  for (char c : id) {
    if (static_cast<unsigned char>(c) < 0x20 || c == ',' || c == '"') {
      return InvalidArgumentError(where + ": id '" + std::string(id) +
                                  "' has a comma, quote or control character");
    }
  }
  return OkStatus();
}

Result<const toml::table*> SectionTable(const toml::table& root, std::string_view name,
                                        std::string_view source) {
  const toml::node* n = root.get(name);
  if (n == nullptr) return static_cast<const toml::table*>(nullptr);
  const toml::table* t = n->as_table();
  if (t == nullptr) return InvalidArgumentError(Where(source, name, "", "") + " must be a table");
  return t;
}

Result<std::vector<WeightedId>> ReadWeights(const toml::node& node, const std::string& where) {
  const toml::table* t = node.as_table();
  if (t == nullptr) return InvalidArgumentError(where + " must be a table of id = weight");
  std::vector<WeightedId> out;
  for (auto&& [key, value] : *t) {
    std::string w = where + "." + std::string(key.str());
    FRUGAL_RETURN_IF_ERROR(CheckId(key.str(), where));
    FRUGAL_ASSIGN_OR_RETURN(double v, ReadNumber(value, w));
    FRUGAL_RETURN_IF_ERROR(CheckBound(v, Bound::kNonNegative, w));
    out.push_back({std::string(key.str()), v});
  }
  return out;
}

Result<std::string> ReadFileText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open energy profile file '" + path + "'");
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxProfileFileBytes) {
      return ResourceExhaustedError("energy profile file '" + path + "' is larger than 16 MiB");
    }
  }
  if (in.bad()) return UnavailableError("error reading energy profile file '" + path + "'");
  return text;
}

template <typename T>
Status CheckWeightsKnown(const std::vector<WeightedId>& items, const std::vector<T>& known,
                         std::string_view kind, const std::string& where) {
  double sum = 0;
  for (const WeightedId& w : items) {
    if (FindIndex(known, w.id) < 0) {
      return InvalidArgumentError(where + " references " + UnknownId(known, kind, w.id).message());
    }
    sum += w.weight;
  }
  if (!items.empty() && !(sum > 0)) return InvalidArgumentError(where + " weights must not all be 0");
  return OkStatus();
}

}  // namespace

std::string_view PickWeighted(const std::vector<WeightedId>& items, double u) {
  if (items.empty()) return {};
  double total = 0;
  for (const WeightedId& w : items) total += w.weight;
  if (!(u >= 0)) u = 0;  // also catches NaN
  if (u >= 1) u = 1;
  double target = u * total;
  double acc = 0;
  for (const WeightedId& w : items) {
    acc += w.weight;
    if (target < acc) return w.id;
  }
  // u == 1, or rounding: the last entry with a positive weight.
  for (size_t i = items.size(); i-- > 0;) {
    if (items[i].weight > 0) return items[i].id;
  }
  return items.back().id;
}

Result<EnergyProfiles> EnergyProfiles::ParseImpl(std::string_view toml_text, std::string_view source,
                                                 bool complete) {
  FRUGAL_ASSIGN_OR_RETURN(toml::table root, ParseToml(toml_text, source));

  EnergyProfiles p;
  for (auto&& [key, node] : root) {
    std::string_view k = key.str();
    if (k == "schema") {
      const auto* i = node.as_integer();
      if (i == nullptr || i->get() != 1) {
        return InvalidArgumentError(std::string(source) + ": schema must be the integer 1");
      }
    } else if (k != "server" && k != "devices" && k != "radios" && k != "regions" && k != "mixes") {
      return InvalidArgumentError(std::string(source) + ": unknown top-level key '" + std::string(k) +
                                  "' (expected schema, server, devices, radios, regions, mixes)");
    }
  }

  // [server]
  FRUGAL_ASSIGN_OR_RETURN(const toml::table* server, SectionTable(root, "server", source));
  if (server != nullptr) {
    for (auto&& [key, node] : *server) {
      std::string_view k = key.str();
      std::string where = Where(source, "server", "", k);
      if (k == "watts") {
        FRUGAL_ASSIGN_OR_RETURN(p.server_watts_, ReadNumber(node, where));
        FRUGAL_RETURN_IF_ERROR(CheckBound(p.server_watts_, Bound::kNonNegative, where));
        p.masks_.server |= kServerWattsBit;
      } else if (k == "pue") {
        FRUGAL_ASSIGN_OR_RETURN(p.server_pue_, ReadNumber(node, where));
        FRUGAL_RETURN_IF_ERROR(CheckBound(p.server_pue_, Bound::kAtLeastOne, where));
        p.masks_.server |= kServerPueBit;
      } else if (k == "region") {
        const auto* s = node.as_string();
        if (s == nullptr) return InvalidArgumentError(where + " must be a string region id");
        p.server_region_ = s->get();
        p.masks_.server |= kServerRegionBit;
      } else {
        return InvalidArgumentError(where + " is not a known field (expected watts, pue, region)");
      }
    }
  }
  if (complete && (p.masks_.server & kServerAll) != kServerAll) {
    const char* missing = !(p.masks_.server & kServerWattsBit) ? "watts"
                          : !(p.masks_.server & kServerPueBit) ? "pue"
                                                               : "region";
    return InvalidArgumentError(Where(source, "server", "", missing) + " is missing");
  }

  // [devices.<id>]
  FRUGAL_ASSIGN_OR_RETURN(const toml::table* devices, SectionTable(root, "devices", source));
  if (devices != nullptr) {
    for (auto&& [key, node] : *devices) {
      std::string_view id = key.str();
      FRUGAL_RETURN_IF_ERROR(CheckId(id, Where(source, "devices", "", "")));
      const toml::table* t = node.as_table();
      if (t == nullptr) return InvalidArgumentError(Where(source, "devices", id, "") + " must be a table");
      if (FindIndex(p.devices_, id) >= 0) {
        return InvalidArgumentError(Where(source, "devices", id, "") + " is defined twice (ids ignore case)");
      }
      DeviceProfile d;
      d.id = std::string(id);
      uint32_t mask = 0;
      FRUGAL_RETURN_IF_ERROR(ReadFields(*t, kDeviceFields, {}, source, "devices", id, d, mask));
      if (complete) FRUGAL_RETURN_IF_ERROR(RequireFields(kDeviceFields, mask, source, "devices", id));
      p.devices_.push_back(std::move(d));
      p.masks_.devices.push_back(mask);
    }
  }

  // [radios.<id>]
  FRUGAL_ASSIGN_OR_RETURN(const toml::table* radios, SectionTable(root, "radios", source));
  if (radios != nullptr) {
    for (auto&& [key, node] : *radios) {
      std::string_view id = key.str();
      FRUGAL_RETURN_IF_ERROR(CheckId(id, Where(source, "radios", "", "")));
      const toml::table* t = node.as_table();
      if (t == nullptr) return InvalidArgumentError(Where(source, "radios", id, "") + " must be a table");
      if (FindIndex(p.radios_, id) >= 0) {
        return InvalidArgumentError(Where(source, "radios", id, "") + " is defined twice (ids ignore case)");
      }
      RadioProfile r;
      r.id = std::string(id);
      uint32_t mask = 0;
      FRUGAL_RETURN_IF_ERROR(ReadFields(*t, kRadioFields, {}, source, "radios", id, r, mask));
      if (complete) FRUGAL_RETURN_IF_ERROR(RequireFields(kRadioFields, mask, source, "radios", id));
      p.radios_.push_back(std::move(r));
      p.masks_.radios.push_back(mask);
    }
  }

  // [regions.<id>]
  FRUGAL_ASSIGN_OR_RETURN(const toml::table* regions, SectionTable(root, "regions", source));
  if (regions != nullptr) {
    for (auto&& [key, node] : *regions) {
      std::string_view id = key.str();
      FRUGAL_RETURN_IF_ERROR(CheckId(id, Where(source, "regions", "", "")));
      const toml::table* t = node.as_table();
      if (t == nullptr) return InvalidArgumentError(Where(source, "regions", id, "") + " must be a table");
      if (FindIndex(p.regions_, id) >= 0) {
        return InvalidArgumentError(Where(source, "regions", id, "") + " is defined twice (ids ignore case)");
      }
      RegionProfile g;
      g.id = std::string(id);
      uint32_t mask = 0;
      FRUGAL_RETURN_IF_ERROR(ReadFields(*t, kRegionFields, {kHourlyKey}, source, "regions", id, g, mask));
      if (const toml::node* h = t->get(kHourlyKey)) {
        std::string where = Where(source, "regions", id, kHourlyKey);
        const toml::array* a = h->as_array();
        if (a == nullptr || a->size() != 24) {
          return InvalidArgumentError(where + " must be an array of 24 numbers (local hours 0..23)");
        }
        std::array<double, 24> hourly{};
        for (size_t i = 0; i < 24; ++i) {
          std::string w = where + "[" + std::to_string(i) + "]";
          FRUGAL_ASSIGN_OR_RETURN(hourly[i], ReadNumber(*a->get(i), w));
          FRUGAL_RETURN_IF_ERROR(CheckBound(hourly[i], Bound::kNonNegative, w));
        }
        g.hourly_gco2e_per_kwh = hourly;
        mask |= kRegionHourlyBit;
      }
      if (complete) FRUGAL_RETURN_IF_ERROR(RequireFields(kRegionFields, mask, source, "regions", id));
      p.regions_.push_back(std::move(g));
      p.masks_.regions.push_back(mask);
    }
  }

  // [mixes.<id>]
  FRUGAL_ASSIGN_OR_RETURN(const toml::table* mixes, SectionTable(root, "mixes", source));
  if (mixes != nullptr) {
    for (auto&& [key, node] : *mixes) {
      std::string_view id = key.str();
      FRUGAL_RETURN_IF_ERROR(CheckId(id, Where(source, "mixes", "", "")));
      const toml::table* t = node.as_table();
      if (t == nullptr) return InvalidArgumentError(Where(source, "mixes", id, "") + " must be a table");
      if (FindIndex(p.mixes_, id) >= 0) {
        return InvalidArgumentError(Where(source, "mixes", id, "") + " is defined twice (ids ignore case)");
      }
      ClassMix mix;
      mix.id = std::string(id);
      for (auto&& [mkey, mnode] : *t) {
        std::string_view k = mkey.str();
        std::string where = Where(source, "mixes", id, k);
        if (k == "devices") {
          FRUGAL_ASSIGN_OR_RETURN(mix.devices, ReadWeights(mnode, where));
        } else if (k == "radios") {
          FRUGAL_ASSIGN_OR_RETURN(mix.radios, ReadWeights(mnode, where));
        } else if (k == "regions") {
          FRUGAL_ASSIGN_OR_RETURN(mix.regions, ReadWeights(mnode, where));
        } else {
          return InvalidArgumentError(where + " is not a known field (expected devices, radios, regions)");
        }
      }
      p.mixes_.push_back(std::move(mix));
    }
  }

  if (complete) FRUGAL_RETURN_IF_ERROR(p.ValidateReferences(source));
  return p;
}

Status EnergyProfiles::ValidateReferences(std::string_view source) const {
  if (!server_region_.empty() || masks_.server & kServerRegionBit) {
    if (FindIndex(regions_, server_region_) < 0) {
      return InvalidArgumentError(Where(source, "server", "", "region") + " references " +
                                  UnknownId(regions_, "region", server_region_).message());
    }
  }
  for (const ClassMix& m : mixes_) {
    FRUGAL_RETURN_IF_ERROR(CheckWeightsKnown(m.devices, devices_, "device", Where(source, "mixes", m.id, "devices")));
    FRUGAL_RETURN_IF_ERROR(CheckWeightsKnown(m.radios, radios_, "radio", Where(source, "mixes", m.id, "radios")));
    FRUGAL_RETURN_IF_ERROR(CheckWeightsKnown(m.regions, regions_, "region", Where(source, "mixes", m.id, "regions")));
  }
  return OkStatus();
}

Result<EnergyProfiles> EnergyProfiles::Parse(std::string_view toml_text, std::string_view source_name) {
  return ParseImpl(toml_text, source_name, /*complete=*/true);
}

Result<EnergyProfiles> EnergyProfiles::ParseOverride(std::string_view toml_text, std::string_view source_name) {
  return ParseImpl(toml_text, source_name, /*complete=*/false);
}

Result<EnergyProfiles> EnergyProfiles::LoadFile(const std::string& path) {
  FRUGAL_ASSIGN_OR_RETURN(std::string text, ReadFileText(path));
  return Parse(text, path);
}

Result<EnergyProfiles> EnergyProfiles::LoadOverrideFile(const std::string& path) {
  FRUGAL_ASSIGN_OR_RETURN(std::string text, ReadFileText(path));
  return ParseOverride(text, path);
}


Result<EnergyProfiles> EnergyProfiles::LoadDefault() {
  return Parse(energy_assets::kDefaultProfilesToml, "profiles.toml (built in)");
}

Result<EnergyProfiles> EnergyProfiles::LoadDefaultWithOverride(const std::string& user_path) {
  FRUGAL_ASSIGN_OR_RETURN(EnergyProfiles base, LoadDefault());
  FRUGAL_ASSIGN_OR_RETURN(EnergyProfiles user, LoadOverrideFile(user_path));
  FRUGAL_RETURN_IF_ERROR(base.MergeOverride(user));
  return base;
}

namespace {

// Merges one kind of entry: same id -> fields in the user's mask replace ours;
// new id -> appended, and must carry every required field.
template <typename T, size_t N>
Status MergeEntries(std::vector<T>& ours, std::vector<uint32_t>& our_masks, const std::vector<T>& theirs,
                    const std::vector<uint32_t>& their_masks, const NumberField<T> (&fields)[N],
                    std::string_view section) {
  for (size_t j = 0; j < theirs.size(); ++j) {
    const T& u = theirs[j];
    const uint32_t m = j < their_masks.size() ? their_masks[j] : ~0u;
    int i = FindIndex(ours, u.id);
    if (i < 0) {
      for (size_t f = 0; f < N; ++f) {
        if (fields[f].required && !(m & (1u << f))) {
          return InvalidArgumentError("override: new " + std::string(section) + " entry '" + u.id +
                                      "' is missing field " + fields[f].name +
                                      " (a new entry must give every field)");
        }
      }
      ours.push_back(u);
      our_masks.push_back(m);
      continue;
    }
    T& o = ours[static_cast<size_t>(i)];
    for (size_t f = 0; f < N; ++f) {
      if (m & (1u << f)) o.*(fields[f].member) = u.*(fields[f].member);
    }
    our_masks[static_cast<size_t>(i)] |= m;
    if constexpr (std::is_same_v<T, RegionProfile>) {
      if (m & kRegionHourlyBit) o.hourly_gco2e_per_kwh = u.hourly_gco2e_per_kwh;
    }
  }
  return OkStatus();
}

}  // namespace

Status EnergyProfiles::MergeOverride(const EnergyProfiles& user) {
  EnergyProfiles merged = *this;
  // A profile set made by hand (not parsed) has no masks: treat it as complete.
  auto pad = [](std::vector<uint32_t>& masks, size_t n) { masks.resize(n, ~0u); };
  pad(merged.masks_.devices, merged.devices_.size());
  pad(merged.masks_.radios, merged.radios_.size());
  pad(merged.masks_.regions, merged.regions_.size());

  FRUGAL_RETURN_IF_ERROR(MergeEntries(merged.devices_, merged.masks_.devices, user.devices_,
                                      user.masks_.devices, kDeviceFields, "devices"));
  FRUGAL_RETURN_IF_ERROR(MergeEntries(merged.radios_, merged.masks_.radios, user.radios_,
                                      user.masks_.radios, kRadioFields, "radios"));
  FRUGAL_RETURN_IF_ERROR(MergeEntries(merged.regions_, merged.masks_.regions, user.regions_,
                                      user.masks_.regions, kRegionFields, "regions"));
  for (const ClassMix& m : user.mixes_) {
    int i = FindIndex(merged.mixes_, m.id);
    if (i < 0) {
      merged.mixes_.push_back(m);
    } else {
      merged.mixes_[static_cast<size_t>(i)] = m;
    }
  }
  if (user.masks_.server & kServerWattsBit) merged.server_watts_ = user.server_watts_;
  if (user.masks_.server & kServerPueBit) merged.server_pue_ = user.server_pue_;
  if (user.masks_.server & kServerRegionBit) merged.server_region_ = user.server_region_;
  merged.masks_.server |= user.masks_.server;

  FRUGAL_RETURN_IF_ERROR(merged.ValidateReferences("merged profiles"));
  *this = std::move(merged);
  return OkStatus();
}

Result<const DeviceProfile*> EnergyProfiles::Device(std::string_view id) const {
  int i = FindIndex(devices_, id);
  if (i < 0) return UnknownId(devices_, "device", id);
  return &devices_[static_cast<size_t>(i)];
}

Result<const RadioProfile*> EnergyProfiles::Radio(std::string_view id) const {
  int i = FindIndex(radios_, id);
  if (i < 0) return UnknownId(radios_, "radio", id);
  return &radios_[static_cast<size_t>(i)];
}

Result<const RegionProfile*> EnergyProfiles::Region(std::string_view id) const {
  int i = FindIndex(regions_, id);
  if (i < 0) return UnknownId(regions_, "region", id);
  return &regions_[static_cast<size_t>(i)];
}

Status EnergyProfiles::SetUtcHourly(std::string_view region, const std::array<double, 24>& gco2e_per_kwh,
                                    std::string source) {
  int i = FindIndex(regions_, region);
  if (i < 0) return UnknownId(regions_, "region", region);
  for (size_t h = 0; h < 24; ++h) {
    if (!std::isfinite(gco2e_per_kwh[h]) || gco2e_per_kwh[h] < 0) {
      return InvalidArgumentError("hourly intensity of region '" + std::string(region) + "' at UTC hour " +
                                  std::to_string(h) + " must be finite and >= 0");
    }
  }
  RegionProfile& g = regions_[static_cast<size_t>(i)];
  g.utc_hourly_gco2e_per_kwh = gco2e_per_kwh;
  g.hourly_source = std::move(source);
  return OkStatus();
}

Result<const ClassMix*> EnergyProfiles::Mix(std::string_view id) const {
  int i = FindIndex(mixes_, id);
  if (i < 0) return UnknownId(mixes_, "mix", id);
  return &mixes_[static_cast<size_t>(i)];
}

}  // namespace frugal
