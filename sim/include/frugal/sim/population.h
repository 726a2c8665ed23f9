// The simulated fleet: N virtual clients, each with its data, a device class,
// a radio, a region and an availability pattern, drawn from the configured
// mix. A client costs memory only for state it really has: 12 bytes of traits
// and versions, plus its share of a partition when the population is small
// enough to partition the data set; large populations draw each client's
// examples on demand from its own seeded class mixture.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/data/dataset.h"
#include "frugal/data/partition.h"
#include "frugal/energy/profiles.h"
#include "frugal/sim/config.h"

namespace frugal::sim {

struct ClientTraits {
  uint8_t device = 0;        // index into Population::devices()
  uint8_t radio = 0;         // index into Population::radios()
  uint8_t region = 0;        // index into Population::regions()
  uint8_t availability = 0;  // 0 = always, 1 = diurnal
};

// Online probability and charging state by local hour for the built-in patterns.
struct AvailabilityPattern {
  std::array<double, 24> online;
  std::array<bool, 24> charging;
};
const AvailabilityPattern& Pattern(uint8_t id);

class Population {
 public:
  // Draws every client's traits; partitions `train` when it has at least 10
  // examples per client, else switches to per-client sampling. With a roster
  // (cfg.roster, a replay) the clients are exactly the roster's: its ids,
  // profiles and partition shares, always available.
  static Result<Population> Create(const SimConfig& cfg, const Dataset& train, const EnergyProfiles& profiles);

  size_t size() const { return traits_.size(); }
  // Client i's id: what seeds, selection, the engine and the ledger see (i itself unless a roster says otherwise).
  uint32_t id(size_t i) const { return ids_.empty() ? static_cast<uint32_t>(i) : ids_[i]; }
  // The index of the client with this id.
  size_t IndexOf(uint32_t id) const;
  bool sampled() const { return sampled_; }
  const ClientTraits& traits(size_t i) const { return traits_[i]; }
  const DeviceProfile& device(size_t i) const { return *devices_[traits_[i].device]; }
  const RadioProfile& radio(size_t i) const { return *radios_[traits_[i].radio]; }
  const RegionProfile& region(size_t i) const { return *regions_[traits_[i].region]; }

  // Client i's example indices into the training set; `buf` backs sampled clients.
  std::span<const uint32_t> Examples(size_t i, std::vector<uint32_t>& buf) const;
  // Number of examples client i holds (FedAvg weight).
  size_t NumExamples(size_t i) const;

  // Ids of clients online (and charging, if required) at `utc_hour` in `round`, seeded.
  std::vector<uint32_t> Available(uint32_t round, double utc_hour) const;

  // Version of the global model the client holds (0 = none), and the version
  // of its last full download (its copy = that download plus later steps).
  uint32_t held_version(size_t i) const { return held_[i]; }
  uint32_t base_version(size_t i) const { return base_[i]; }
  void SetHeld(size_t i, uint32_t held, uint32_t base) {
    held_[i] = held;
    base_[i] = base;
  }

  // Bytes this object holds for client state (traits, versions, partitions),
  // divided by the population size: the figure the memory test watches.
  double BytesPerClient() const;

 private:
  Status FromRoster(const SimConfig& cfg, const Dataset& train, const EnergyProfiles& profiles);

  const SimConfig* cfg_ = nullptr;
  std::vector<uint32_t> ids_;  // roster ids, ascending; empty: ids are indices
  const Dataset* train_ = nullptr;
  std::vector<const DeviceProfile*> devices_;
  std::vector<const RadioProfile*> radios_;
  std::vector<const RegionProfile*> regions_;
  std::vector<ClientTraits> traits_;
  std::vector<uint32_t> held_, base_;
  bool sampled_ = false;
  Partition partition_;
  std::vector<std::vector<uint32_t>> by_class_;  // sampled mode: train indices per label
};

}  // namespace frugal::sim
