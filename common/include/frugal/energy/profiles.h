// Energy profiles: device classes (compute throughput, joules per FLOP, power),
// radios (joules per bit, tail, bandwidth), grid regions (carbon
// intensity, optional hourly profile) and the coordinator's server figures.
// Loaded from common/energy/profiles.toml, optionally overridden by a user TOML;
// every shipped number is sourced in docs/energy-model.md.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

// One device class. The throughput is sustained (not peak) fp32 FLOP/s while
// training; joules per FLOP are whole-device energy while computing (see the
// docs). Frugal trains in fp32; joules_per_flop_int8 prices only FLOPs that a
// client reports as int8 (LedgerFigures.int8): today only federated evaluation
// that ran the int8 kernels (eval.int8; training is always fp32).
struct DeviceProfile {
  std::string id;
  double flops_per_s_fp32 = 0;
  double joules_per_flop_fp32 = 0;
  double joules_per_flop_int8 = 0;
  double active_watts = 0;
};

// One radio technology. Energy per bit includes the radio's base power while a
// transfer is on the air; the tail is the high-power state held after a burst.
struct RadioProfile {
  std::string id;
  double joules_per_bit_up = 0;
  double joules_per_bit_down = 0;
  double tail_watts = 0;
  double tail_seconds = 0;
  double bandwidth_up_bps = 0;
  double bandwidth_down_bps = 0;
};

// A grid region. hourly_gco2e_per_kwh[h] is the intensity during local hour
// [h, h+1); local time = UTC + utc_offset_hours (no daylight saving).
// utc_hourly_gco2e_per_kwh[h], set by ApplyHourlyCurves (a user's CSV or a
// derived curve, frugal/energy/grid_curves.h), is the intensity during UTC hour
// [h, h+1) and wins over both; hourly_source says where it came from.
struct RegionProfile {
  std::string id;
  double gco2e_per_kwh = 0;
  std::optional<std::array<double, 24>> hourly_gco2e_per_kwh;
  double utc_offset_hours = 0;
  std::optional<std::array<double, 24>> utc_hourly_gco2e_per_kwh;
  std::string hourly_source;  // "" (none), "derived" or "csv:<source>"
};

// One id with a relative weight, an entry of a ClassMix.
struct WeightedId {
  std::string id;
  double weight = 0;
};

// A population composition: how often each device class, radio and region
// occurs. Weights are relative (need not sum to 1); every id names a known entry.
struct ClassMix {
  std::string id;
  std::vector<WeightedId> devices;
  std::vector<WeightedId> radios;
  std::vector<WeightedId> regions;
};

// Returns the id whose cumulative-weight interval holds u * total weight, u in
// [0, 1) (e.g. Rng::Uniform()); u outside is clamped. Empty list -> "".
std::string_view PickWeighted(const std::vector<WeightedId>& items, double u);

// The profile set. Lookups are ASCII case-insensitive ("us" finds "US").
// Value type; copies are independent. Not mutated concurrently with reads.
class EnergyProfiles {
 public:
  // Parses a complete profile file: every entry must have every field, values
  // finite and in range, references (mixes, server region) to known ids.
  // Errors are kInvalidArgument naming source, entry and field.
  static Result<EnergyProfiles> Parse(std::string_view toml_text, std::string_view source_name);
  // Parse() of a file's contents; kNotFound if the file cannot be opened.
  static Result<EnergyProfiles> LoadFile(const std::string& path);
  // The shipped profiles: common/energy/profiles.toml as compiled into the
  // library, so no source tree is needed at run time.
  static Result<EnergyProfiles> LoadDefault();
  // Parses a user override file: an entry may give only some fields (they will
  // replace those fields of the same-named shipped entry); values present are
  // validated as in Parse(); completeness and references are checked by MergeOverride().
  static Result<EnergyProfiles> ParseOverride(std::string_view toml_text, std::string_view source_name);
  static Result<EnergyProfiles> LoadOverrideFile(const std::string& path);
  // LoadDefault() merged with LoadOverrideFile(user_path).
  static Result<EnergyProfiles> LoadDefaultWithOverride(const std::string& user_path);

  // Merges `user` over this set: a same-named entry has the fields `user` gives
  // replaced, a new name is added (and must then be complete), mixes are
  // replaced whole, server fields given replace ours. On error this set is unchanged.
  Status MergeOverride(const EnergyProfiles& user);

  // NotFound errors name the id and list the known ids.
  Result<const DeviceProfile*> Device(std::string_view id) const;
  Result<const RadioProfile*> Radio(std::string_view id) const;
  Result<const RegionProfile*> Region(std::string_view id) const;
  Result<const ClassMix*> Mix(std::string_view id) const;
  // Sets a region's UTC-hour curve (see RegionProfile); kNotFound for an
  // unknown id, kInvalidArgument for a negative or non-finite value.
  Status SetUtcHourly(std::string_view region, const std::array<double, 24>& gco2e_per_kwh, std::string source);

  const std::vector<DeviceProfile>& devices() const { return devices_; }
  const std::vector<RadioProfile>& radios() const { return radios_; }
  const std::vector<RegionProfile>& regions() const { return regions_; }
  const std::vector<ClassMix>& mixes() const { return mixes_; }

  // Watts attributed to one fully busy coordinator CPU (core-second -> joules).
  double server_watts() const { return server_watts_; }
  // Power usage effectiveness of the coordinator's data centre (devices: 1.0).
  double server_pue() const { return server_pue_; }
  // Region id of the coordinator's grid.
  const std::string& server_region() const { return server_region_; }

 private:
  // Bit i set: field i of that entry was given (complete entries have all bits).
  struct FieldMasks {
    std::vector<uint32_t> devices, radios, regions;
    uint32_t server = 0;
  };

  static Result<EnergyProfiles> ParseImpl(std::string_view toml_text, std::string_view source_name,
                                          bool complete);
  // Cross-entry checks: references to known ids, mix weights.
  Status ValidateReferences(std::string_view source_name) const;

  std::vector<DeviceProfile> devices_;
  std::vector<RadioProfile> radios_;
  std::vector<RegionProfile> regions_;
  std::vector<ClassMix> mixes_;
  double server_watts_ = 0;
  double server_pue_ = 1.0;
  std::string server_region_;
  FieldMasks masks_;
};

}  // namespace frugal
