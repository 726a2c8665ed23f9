#include "frugal/sim/population.h"

#include <algorithm>
#include <cmath>

#include "frugal/core/random.h"
#include "frugal/core/streams.h"
#include "frugal/data/partition.h"

namespace frugal::sim {
namespace {

size_t PickIndex(const std::vector<MixWeight>& mix, double u) {
  double total = 0;
  for (const auto& m : mix) total += m.weight;
  double acc = 0;
  for (size_t i = 0; i < mix.size(); ++i) {
    acc += mix[i].weight / total;
    if (u < acc) return i;
  }
  return mix.size() - 1;
}

AvailabilityPattern MakeAlways() {
  AvailabilityPattern p;
  p.online.fill(1.0);
  p.charging.fill(true);
  return p;
}

// Assumption (stated in docs/simulator.md): a phone is most often idle, online
// and charging at night; the shape follows Bonawitz et al. 2019's observation
// that eligible devices peak at night local time. The figures are ours.
AvailabilityPattern MakeDiurnal() {
  AvailabilityPattern p;
  const double online[24] = {0.9, 0.9, 0.9, 0.9, 0.9, 0.85, 0.7, 0.5, 0.4, 0.35, 0.3, 0.3,
                             0.3, 0.3, 0.3, 0.3, 0.35, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.85};
  for (int h = 0; h < 24; ++h) {
    p.online[h] = online[h];
    p.charging[h] = h >= 22 || h < 7;
  }
  return p;
}

}  // namespace

const AvailabilityPattern& Pattern(uint8_t id) {
  static const AvailabilityPattern kAlways = MakeAlways();
  static const AvailabilityPattern kDiurnal = MakeDiurnal();
  return id == 0 ? kAlways : kDiurnal;
}

Result<Population> Population::Create(const SimConfig& cfg, const Dataset& train, const EnergyProfiles& profiles) {
  Population p;
  p.cfg_ = &cfg;
  p.train_ = &train;
  if (!cfg.roster.empty()) {
    FRUGAL_RETURN_IF_ERROR(p.FromRoster(cfg, train, profiles));
    return p;
  }
  if (cfg.devices.size() > 255 || cfg.radios.size() > 255 || cfg.regions.size() > 255) {
    return InvalidArgumentError("population mixes are limited to 255 entries each");
  }
  for (const auto& m : cfg.devices) {
    FRUGAL_ASSIGN_OR_RETURN(const DeviceProfile* d, profiles.Device(m.id));
    p.devices_.push_back(d);
  }
  for (const auto& m : cfg.radios) {
    FRUGAL_ASSIGN_OR_RETURN(const RadioProfile* r, profiles.Radio(m.id));
    p.radios_.push_back(r);
  }
  for (const auto& m : cfg.regions) {
    FRUGAL_ASSIGN_OR_RETURN(const RegionProfile* r, profiles.Region(m.id));
    p.regions_.push_back(r);
  }
  const size_t n = cfg.clients;
  p.traits_.resize(n);
  p.held_.assign(n, 0);
  p.base_.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    Rng rng(StreamSeed(cfg.seed, SeedStream::kTraits, i));
    ClientTraits& t = p.traits_[i];
    t.device = static_cast<uint8_t>(PickIndex(cfg.devices, rng.Uniform()));
    t.radio = static_cast<uint8_t>(PickIndex(cfg.radios, rng.Uniform()));
    t.region = static_cast<uint8_t>(PickIndex(cfg.regions, rng.Uniform()));
    t.availability = cfg.availability[PickIndex(cfg.availability, rng.Uniform())].id == "always" ? 0 : 1;
  }

  p.sampled_ = n * 10 > train.size();
  if (!p.sampled_) {
    const PartitionSpec spec{.scheme = cfg.partition, .clients = n, .alpha = cfg.alpha,
                             .shards_per_client = cfg.shards_per_client, .seed = cfg.seed, .holdout = cfg.holdout};
    Result<Partition> split = PartitionFleet(train.labels, train.num_classes, spec);
    if (!split.ok()) {
      return split.error().WithContext("partitioning the training set " + cfg.partition + "-wise into " +
                                       std::to_string(n) + " clients");
    }
    p.partition_ = std::move(*split);
    // The held-out examples are dropped: the simulator evaluates on the test set.
    for (size_t i = 0; i < n; ++i) p.partition_[i] = SplitClientHoldout(p.partition_[i], spec, i).train;
  } else {
    if (cfg.samples_per_client == 0) return InvalidArgumentError("data.samples_per_client must be >= 1");
    if (cfg.holdout > 0) {
      return InvalidArgumentError("data.holdout needs partitioned data (at least 10 training examples per client); "
                                  "sampled clients have none to hold out");
    }
    p.by_class_.resize(train.num_classes);
    for (uint32_t i = 0; i < train.size(); ++i) p.by_class_[train.labels[i]].push_back(i);
    for (size_t c = 0; c < p.by_class_.size(); ++c) {
      if (p.by_class_[c].empty()) return InvalidArgumentError("class " + std::to_string(c) + " has no examples");
    }
  }
  return p;
}

Status Population::FromRoster(const SimConfig& cfg, const Dataset& train, const EnergyProfiles& profiles) {
  const std::vector<RosterEntry>& roster = cfg.roster;
  const std::optional<PartitionSpec>& spec = roster.front().partition;
  if (!spec) {
    return InvalidArgumentError("client " + roster.front().name + " trained on its own data, not on a seeded split "
                                "of Fashion-MNIST, so the simulator cannot give it the same examples");
  }
  FRUGAL_ASSIGN_OR_RETURN(Partition all, PartitionFleet(train.labels, train.num_classes, *spec));
  auto index_of = [](auto& list, const std::string& id) {
    auto it = std::find(list.begin(), list.end(), id);
    if (it == list.end()) it = list.insert(list.end(), id);
    return static_cast<uint8_t>(it - list.begin());
  };
  std::vector<std::string> devices, radios, regions;
  for (const RosterEntry& c : roster) {
    const std::string who = "client " + c.name + " (id " + std::to_string(c.id) + ")";
    if (!c.partition || c.partition->scheme != spec->scheme || c.partition->clients != spec->clients ||
        c.partition->alpha != spec->alpha || c.partition->shards_per_client != spec->shards_per_client ||
        c.partition->seed != spec->seed || c.partition->holdout != spec->holdout) {
      return InvalidArgumentError(who + " holds a share of another split than " + roster.front().name);
    }
    if (c.partition_index >= all.size()) return InvalidArgumentError(who + " has no share in its split");
    if (!ids_.empty() && c.id <= ids_.back()) return InvalidArgumentError("clients.csv ids must ascend");
    std::vector<uint32_t> examples = SplitClientHoldout(all[c.partition_index], *spec, c.partition_index).train;
    if (examples.size() != c.examples) {
      return InvalidArgumentError(who + " trained on " + std::to_string(c.examples) + " examples, its share gives " +
                                  std::to_string(examples.size()));
    }
    ids_.push_back(c.id);
    traits_.push_back(ClientTraits{index_of(devices, c.device), index_of(radios, c.radio), index_of(regions, c.region), 0});
    partition_.push_back(std::move(examples));
    if (devices.size() > 255 || radios.size() > 255 || regions.size() > 255) {
      return InvalidArgumentError("a roster is limited to 255 device, radio and region ids each");
    }
  }
  for (const std::string& d : devices) {
    FRUGAL_ASSIGN_OR_RETURN(const DeviceProfile* dp, profiles.Device(d));
    devices_.push_back(dp);
  }
  for (const std::string& r : radios) {
    FRUGAL_ASSIGN_OR_RETURN(const RadioProfile* rp, profiles.Radio(r));
    radios_.push_back(rp);
  }
  for (const std::string& r : regions) {
    FRUGAL_ASSIGN_OR_RETURN(const RegionProfile* rp, profiles.Region(r));
    regions_.push_back(rp);
  }
  held_.assign(roster.size(), 0);
  base_.assign(roster.size(), 0);
  return OkStatus();
}

size_t Population::IndexOf(uint32_t id) const {
  if (ids_.empty()) return id;
  return static_cast<size_t>(std::lower_bound(ids_.begin(), ids_.end(), id) - ids_.begin());
}

size_t Population::NumExamples(size_t i) const {
  return sampled_ ? cfg_->samples_per_client : partition_[i].size();
}

std::span<const uint32_t> Population::Examples(size_t i, std::vector<uint32_t>& buf) const {
  if (!sampled_) return partition_[i];
  // Each client's own class mixture, drawn from its seed every time it is
  // needed: storing nothing per client is what lets a million of them fit.
  Rng rng(StreamSeed(cfg_->seed, SeedStream::kSample, i));
  const size_t k = by_class_.size();
  std::vector<double> mix(k, 1.0);
  if (cfg_->partition == "dirichlet") {
    double total = 0;
    for (double& w : mix) total += (w = rng.Gamma(cfg_->alpha));
    for (double& w : mix) w /= total;
  } else if (cfg_->partition == "shards") {
    std::fill(mix.begin(), mix.end(), 0.0);
    for (uint32_t s = 0; s < cfg_->shards_per_client; ++s) mix[rng.UniformInt(k)] += 1.0;
  }
  double total = 0;
  for (double w : mix) total += w;
  buf.resize(cfg_->samples_per_client);
  for (uint32_t& idx : buf) {
    const double u = rng.Uniform() * total;
    double acc = 0;
    size_t c = k - 1;
    for (size_t j = 0; j < k; ++j) {
      acc += mix[j];
      if (u < acc) {
        c = j;
        break;
      }
    }
    idx = by_class_[c][rng.UniformInt(by_class_[c].size())];
  }
  return buf;
}

std::vector<uint32_t> Population::Available(uint32_t round, double utc_hour) const {
  std::vector<uint32_t> out;
  out.reserve(traits_.size());
  const uint64_t seed = StreamSeed(cfg_->seed, SeedStream::kOnline, round);
  for (size_t i = 0; i < traits_.size(); ++i) {
    const ClientTraits& t = traits_[i];
    if (t.availability == 0) {
      out.push_back(static_cast<uint32_t>(i));
      continue;
    }
    const double local = utc_hour + regions_[t.region]->utc_offset_hours;
    const int hour = static_cast<int>(std::floor(std::fmod(std::fmod(local, 24.0) + 24.0, 24.0))) % 24;
    const AvailabilityPattern& pat = Pattern(t.availability);
    if (cfg_->require_charging && !pat.charging[hour]) continue;
    const double u = static_cast<double>(SplitMix64(seed ^ SplitMix64(i)) >> 11) * 0x1.0p-53;
    if (u < pat.online[hour]) out.push_back(static_cast<uint32_t>(i));
  }
  return out;
}

double Population::BytesPerClient() const {
  size_t bytes = traits_.capacity() * sizeof(ClientTraits) + (held_.capacity() + base_.capacity()) * sizeof(uint32_t);
  for (const auto& v : partition_) bytes += sizeof(v) + v.capacity() * sizeof(uint32_t);
  for (const auto& v : by_class_) bytes += sizeof(v) + v.capacity() * sizeof(uint32_t);
  return traits_.empty() ? 0.0 : static_cast<double>(bytes) / static_cast<double>(traits_.size());
}

}  // namespace frugal::sim
