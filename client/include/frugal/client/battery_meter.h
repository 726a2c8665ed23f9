// The device's battery fuel gauge (Linux /sys/class/power_supply/<battery>/),
// read by the agent: ReadGauge turns one battery's files into a GaugeReading,
// and BatteryMeter samples it while phases are being measured and measures
// them with the core's GaugeTrace (frugal/energy/battery.h).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "frugal/core/status.h"
#include "frugal/energy/battery.h"

namespace frugal::client {

// One reading of the gauge in `battery_dir` at time t_s (absent files are
// absent fields). kNotFound if the directory lacks every gauge file,
// kDataLoss naming a file that does not hold an integer. Values are not
// checked here: GaugeTrace::Add validates them.
Result<GaugeReading> ReadGauge(const std::string& battery_dir, double t_s);

// The first battery (a directory whose "type" says Battery, by name) under
// `root` whose gauge exposes energy, charge x voltage or current x voltage.
// kNotFound naming what was looked at otherwise.
Result<std::string> FindBattery(const std::string& root);

// Seconds on the steady clock.
double SteadySeconds();

// Samples one battery's gauge at rate_hz while held (PhaseMeter::Hold), on a
// thread of its own; not at all otherwise. Thread-safe.
class BatteryMeter final : public PhaseMeter {
 public:
  using Clock = std::function<double()>;
  // Opens the battery at `battery_dir` (one reading decides the gauge kind).
  // A thread samples only after StartSampling(); tests call SampleOnce().
  static Result<std::unique_ptr<BatteryMeter>> Open(const std::string& battery_dir, double rate_hz,
                                                    Clock clock = SteadySeconds);
  ~BatteryMeter() override;

  // Starts the sampling thread (idle until held).
  void StartSampling();
  // Reads the gauge once into the trace. An unreadable file or an absurd value
  // is returned (and counted) and leaves the trace as it was.
  Status SampleOnce();

  double NowSeconds() override { return clock_(); }
  PhaseEnergy Measure(std::string_view phase, double t0_s, double t1_s) override;
  std::string Describe() const override;
  void Hold(bool active) override;

  size_t failed_reads() const;
  size_t readings() const;  // in the trace now
  GaugeKind kind() const { return kind_; }

 private:
  BatteryMeter(std::string dir, GaugeKind kind, double rate_hz, Clock clock);
  void Loop();

  const std::string dir_;
  const GaugeKind kind_;
  const double rate_hz_;
  const Clock clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  GaugeTrace trace_;
  bool held_ = false;
  bool stop_ = false;
  size_t failed_reads_ = 0;
  std::thread thread_;
};

}  // namespace frugal::client
