// Measured energy from a battery fuel gauge, the I/O-free part: readings of a
// Linux power_supply battery (energy_now, or charge_now x voltage_now, or
// current_now x voltage_now) checked for absurd values, a time series of them,
// and the joules of a phase (training, a transfer) measured from the series, or
// left to the energy model with the reason when the gauge cannot resolve it.
// The agent reads sysfs and keeps the clock (client/battery_meter.*).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "frugal/core/status.h"
#include "frugal/energy/ledger.h"

namespace frugal {

// One reading of a battery gauge in the power_supply class's units (µWh, µAh,
// µV, µA); a field the driver does not expose is absent.
struct GaugeReading {
  double t_s = 0;  // monotonic seconds, the reader's clock
  std::optional<int64_t> energy_now_uwh, charge_now_uah, voltage_now_uv, current_now_ua;
  std::string status;  // "Discharging", "Charging", "Full", "Not charging", "Unknown" or ""
};

// How joules are obtained, in order of preference: a remaining-energy counter,
// a remaining-charge counter times the voltage, or instantaneous power.
enum class GaugeKind : uint8_t { kEnergy, kChargeVoltage, kCurrentVoltage };
// "energy_now", "charge_now*voltage_now", "current_now*voltage_now".
std::string_view GaugeKindName(GaugeKind k);

// Plausibility limits: beyond them a reading is a driver fault, not a device.
inline constexpr int64_t kGaugeMaxEnergyUwh = 2'000'000'000;  // 2 kWh: no phone, Pi or laptop holds more
inline constexpr int64_t kGaugeMaxChargeUah = 200'000'000;    // 200 Ah
inline constexpr int64_t kGaugeMinVoltageUv = 500'000;        // 0.5 V: a cell below this is not running a device
inline constexpr int64_t kGaugeMaxVoltageUv = 60'000'000;     // 60 V
inline constexpr int64_t kGaugeMaxCurrentUa = 50'000'000;     // 50 A
inline constexpr double kGaugeMaxPowerW = 1000;               // a measured phase above this is rejected

// kDataLoss naming the field and value when a present field is absurd
// (negative energy or charge, a voltage outside 0.5..60 V, |current| > 50 A,
// energy above 2 kWh, charge above 200 Ah).
Status ValidateGaugeReading(const GaugeReading& r);

// The best kind a reading supports; kNotFound naming the files that are
// missing when it supports none.
Result<GaugeKind> ChooseGaugeKind(const GaugeReading& r);

// The energy of one phase: measured, or modelled with the reason.
struct PhaseEnergy {
  std::string phase;  // "train", "download", ...
  double seconds = 0;
  EnergySource source = EnergySource::kModelled;
  double joules = 0;  // measured joules; 0 when modelled (the ledger models it)
  std::string note;   // how it was measured, or why the model attributes it
};

// A time series of one gauge's readings, oldest first, at most max_samples of
// them (the oldest are dropped). Not thread-safe.
class GaugeTrace {
 public:
  // current_now x voltage_now must be sampled at least at min_rate_hz (the
  // issue's 5 Hz): integrating slower samples would miss the load's changes.
  explicit GaugeTrace(GaugeKind kind, double min_rate_hz = 5.0, size_t max_samples = 36000);

  // Appends a reading. kInvalidArgument if it is older than the last one or
  // lacks the kind's fields, kDataLoss if ValidateGaugeReading fails; the
  // trace is unchanged on error.
  Status Add(const GaugeReading& r);
  // The reader paused: the next reading starts a new segment, and a change
  // between segments is not counted as a gauge update (its time is unknown).
  void Break() { break_pending_ = true; }

  // The joules drawn from the battery in [t0_s, t1_s]. Measured only when the
  // battery was discharging throughout and the gauge resolved the phase:
  // a counter (energy, charge) must update at least twice inside the phase,
  // and the result is the mean power between its first and last update there
  // times the phase's length; current x voltage is integrated (trapezoids)
  // when the samples inside come at >= min_rate_hz and the current changed
  // at least twice. Otherwise the result is modelled and its note says why:
  // shorter than the gauge's update interval, the gauge never updated, the
  // device was charging, the counter rose, samples too sparse, or an
  // implausible power.
  PhaseEnergy Measure(std::string_view phase, double t0_s, double t1_s) const;

  // Median time between changes of the gauge's value over the whole trace;
  // nullopt until it has changed twice.
  std::optional<double> UpdateIntervalS() const;

  GaugeKind kind() const { return kind_; }
  size_t size() const { return samples_.size(); }

 private:
  struct Sample {
    double t_s;
    int64_t value;       // energy µWh, charge µAh or current µA, by kind
    int64_t voltage_uv;  // 0 for kEnergy
    bool charging;       // on external power: the gauge does not see the device's draw
    bool segment_start;  // first reading after a Break()
  };
  // True when reading i changed the value and its predecessor is in the same segment.
  bool IsUpdate(size_t i) const;
  PhaseEnergy MeasureCounter(PhaseEnergy out, double t0_s, double t1_s) const;
  PhaseEnergy MeasurePower(PhaseEnergy out, double t0_s, double t1_s) const;
  std::string TooShortNote(double seconds) const;

  GaugeKind kind_;
  double min_rate_hz_;
  size_t max_samples_;
  std::deque<Sample> samples_;
  bool break_pending_ = false;
};

// Measures phases on the device's clock. The agent's BatteryMeter samples a
// gauge in the background; tests supply their own. Thread-safety: the
// implementation's.
class PhaseMeter {
 public:
  virtual ~PhaseMeter();
  // Seconds on the meter's clock, for phase boundaries.
  virtual double NowSeconds() = 0;
  // The energy of [t0_s, t1_s] (times from NowSeconds()).
  virtual PhaseEnergy Measure(std::string_view phase, double t0_s, double t1_s) = 0;
  // What it measures, e.g. "battery BAT0 (energy_now)".
  virtual std::string Describe() const = 0;
  // Phases are about to be measured (true) or none is in progress (false):
  // a sampling meter reads only while held, so an idle agent causes no wake-ups.
  virtual void Hold(bool active) { (void)active; }
};

}  // namespace frugal
