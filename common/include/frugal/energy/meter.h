// Measured energy: a small EnergyMeter interface (injected, so tests and the
// simulator can supply their own) and RaplMeter, which sums the Linux powercap
// RAPL package domains under a root like /sys/class/powercap.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

// A cumulative energy counter. Not thread-safe.
class EnergyMeter {
 public:
  virtual ~EnergyMeter();
  // Joules consumed since the meter was opened (monotone non-decreasing).
  // kUnavailable / kDataLoss if a reading fails; the meter stays usable.
  virtual Result<double> ReadJoules() = 0;
};

// Measures one window (e.g. a client's local training) on a meter it borrows.
class EnergyWindow {
 public:
  explicit EnergyWindow(EnergyMeter* meter) : meter_(meter) {}
  // Records the start reading.
  Status Start();
  // Joules since Start(); kFailedPrecondition if Start() did not succeed.
  Result<double> Stop();

 private:
  EnergyMeter* meter_;
  std::optional<double> start_j_;
};

// Sums the package domains `<root>/intel-rapl:N/energy_uj` (top-level only: the
// `intel-rapl:N:M` sub-domains are inside them; a domain named "psys" is
// skipped because it contains the packages). Handles one wrap-around at
// max_energy_range_uj between reads, so read at least every few minutes.
class RaplMeter final : public EnergyMeter {
 public:
  struct Domain {
    std::string dir;       // full path of the intel-rapl:N directory
    std::string name;      // contents of its "name" file, if any
    uint64_t max_range_uj;  // counter wraps to 0 after this value
    uint64_t last_uj;
  };

  Result<double> ReadJoules() override;
  const std::vector<Domain>& domains() const { return domains_; }

 private:
  friend Result<std::unique_ptr<RaplMeter>> OpenRapl(const std::string& root);
  explicit RaplMeter(std::vector<Domain> domains) : domains_(std::move(domains)) {}

  std::vector<Domain> domains_;
  double total_uj_ = 0;
};

// Opens the RAPL package domains under `root`. kNotFound if the root or any
// package domain is absent; kUnavailable if energy_uj cannot be read (usually
// root-only); kDataLoss if a counter file does not hold a number.
Result<std::unique_ptr<RaplMeter>> OpenRapl(const std::string& root = "/sys/class/powercap");

}  // namespace frugal
