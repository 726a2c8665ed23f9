#include "frugal/data/partition.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "frugal/core/random.h"
#include "frugal/core/streams.h"

namespace frugal {
namespace {

void SortEach(Partition& p) {
  for (auto& client : p) std::sort(client.begin(), client.end());
}

}  // namespace

Result<Partition> PartitionIid(size_t num_examples, size_t num_clients, uint64_t seed) {
  if (num_clients == 0) return InvalidArgumentError("cannot partition among 0 clients");
  std::vector<uint32_t> perm(num_examples);
  std::iota(perm.begin(), perm.end(), 0u);
  Rng rng(seed);
  rng.Shuffle(std::span<uint32_t>(perm));
  Partition p(num_clients);
  const size_t base = num_examples / num_clients, extra = num_examples % num_clients;
  size_t at = 0;
  for (size_t c = 0; c < num_clients; ++c) {
    const size_t take = base + (c < extra ? 1 : 0);
    p[c].assign(perm.begin() + static_cast<ptrdiff_t>(at), perm.begin() + static_cast<ptrdiff_t>(at + take));
    at += take;
  }
  SortEach(p);
  return p;
}

Result<Partition> PartitionDirichlet(std::span<const int32_t> labels, size_t num_classes, size_t num_clients,
                                     double alpha, uint64_t seed) {
  if (num_clients == 0) return InvalidArgumentError("cannot partition among 0 clients");
  if (!(alpha > 0.0) || !std::isfinite(alpha)) {
    return InvalidArgumentError("Dirichlet alpha must be positive and finite, got " + std::to_string(alpha));
  }
  std::vector<std::vector<uint32_t>> by_class(num_classes);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || static_cast<size_t>(labels[i]) >= num_classes) {
      return InvalidArgumentError("label " + std::to_string(labels[i]) + " of example " + std::to_string(i) +
                                  " is outside [0, " + std::to_string(num_classes) + ")");
    }
    by_class[static_cast<size_t>(labels[i])].push_back(static_cast<uint32_t>(i));
  }
  const size_t n = labels.size();
  const size_t required = std::min(kDirichletMinSize, n / num_clients);
  // As in NIID-Bench: a client that already holds its fair share takes no more.
  const double cap = static_cast<double>(n) / static_cast<double>(num_clients);

  Partition best;
  size_t best_min = 0;
  std::vector<double> share(num_clients);
  for (int attempt = 0; attempt < kDirichletMaxTries; ++attempt) {
    Rng rng(DeriveSeed(seed, static_cast<uint64_t>(attempt)));
    Partition p(num_clients);
    for (size_t k = 0; k < num_classes; ++k) {
      std::vector<uint32_t> idx = by_class[k];
      rng.Shuffle(std::span<uint32_t>(idx));
      double sum = 0.0;
      for (size_t c = 0; c < num_clients; ++c) {
        share[c] = rng.Gamma(alpha);
        if (static_cast<double>(p[c].size()) >= cap) share[c] = 0.0;
        sum += share[c];
      }
      if (!(sum > 0.0)) {  // every client full, or all draws underflowed: share evenly
        std::fill(share.begin(), share.end(), 1.0);
        sum = static_cast<double>(num_clients);
      }
      double cumulative = 0.0;
      size_t from = 0;
      for (size_t c = 0; c < num_clients; ++c) {
        cumulative += share[c];
        const size_t to = (c + 1 == num_clients)
                              ? idx.size()
                              : std::min(idx.size(), static_cast<size_t>(cumulative / sum * static_cast<double>(idx.size())));
        if (to > from) {
          p[c].insert(p[c].end(), idx.begin() + static_cast<ptrdiff_t>(from), idx.begin() + static_cast<ptrdiff_t>(to));
          from = to;
        }
      }
    }
    size_t smallest = p[0].size();
    for (const auto& client : p) smallest = std::min(smallest, client.size());
    if (best.empty() || smallest > best_min) {
      best = std::move(p);
      best_min = smallest;
    }
    if (best_min >= required) break;
  }
  SortEach(best);
  return best;
}

Result<Partition> PartitionShards(std::span<const int32_t> labels, size_t num_clients, size_t shards_per_client,
                                  uint64_t seed) {
  const size_t n = labels.size();
  const size_t shards = num_clients * shards_per_client;
  if (shards == 0) return InvalidArgumentError("cannot cut 0 shards (num_clients and shards_per_client must be >= 1)");
  if (n < shards) {
    return InvalidArgumentError("cannot cut " + std::to_string(n) + " examples into " + std::to_string(shards) +
                                " shards");
  }
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return labels[a] < labels[b]; });
  const size_t base = n / shards, extra = n % shards;
  std::vector<size_t> start(shards + 1, 0);
  for (size_t s = 0; s < shards; ++s) start[s + 1] = start[s] + base + (s < extra ? 1 : 0);
  std::vector<int32_t> shard_label(shards);
  for (size_t s = 0; s < shards; ++s) shard_label[s] = labels[order[start[s]]];

  Rng rng(seed);
  std::vector<size_t> slot(shards);  // client c holds slot[c*k .. c*k+k)
  std::iota(slot.begin(), slot.end(), size_t{0});
  rng.Shuffle(std::span<size_t>(slot));

  // Re-pair so that no client holds two shards of one label, where a swap
  // with another client fixes it; bounded random probes keep it cheap.
  const size_t k = shards_per_client;
  auto holds = [&](size_t client, int32_t label, size_t except) {
    for (size_t i = client * k; i < client * k + k; ++i) {
      if (i != except && shard_label[slot[i]] == label) return true;
    }
    return false;
  };
  if (k > 1 && num_clients > 1) {
    for (size_t i = 0; i < shards; ++i) {
      const size_t c = i / k;
      if (!holds(c, shard_label[slot[i]], i)) continue;
      for (size_t probe = 0; probe < 64 * shards; ++probe) {
        const size_t j = static_cast<size_t>(rng.UniformInt(shards));
        const size_t d = j / k;
        if (d == c) continue;
        if (!holds(c, shard_label[slot[j]], i) && !holds(d, shard_label[slot[i]], j)) {
          std::swap(slot[i], slot[j]);
          break;
        }
      }
    }
  }

  Partition p(num_clients);
  for (size_t c = 0; c < num_clients; ++c) {
    for (size_t i = c * k; i < c * k + k; ++i) {
      const size_t s = slot[i];
      for (size_t e = start[s]; e < start[s + 1]; ++e) p[c].push_back(order[e]);
    }
  }
  SortEach(p);
  return p;
}

HoldoutSplit SplitHoldout(std::span<const uint32_t> examples, double fraction, uint64_t seed) {
  const size_t n = examples.size();
  size_t held = fraction > 0 ? static_cast<size_t>(std::ceil(fraction * static_cast<double>(n))) : 0;
  held = std::min(held, n > 0 ? n - 1 : 0);
  std::vector<uint32_t> pos(n);
  std::iota(pos.begin(), pos.end(), 0u);
  Rng rng(seed);
  rng.Shuffle(std::span<uint32_t>(pos));
  std::vector<bool> is_held(n, false);
  for (size_t k = 0; k < held; ++k) is_held[pos[k]] = true;
  HoldoutSplit out;
  out.train.reserve(n - held);
  out.holdout.reserve(held);
  for (size_t k = 0; k < n; ++k) (is_held[k] ? out.holdout : out.train).push_back(examples[k]);
  return out;
}

Result<Partition> PartitionFleet(std::span<const int32_t> labels, size_t num_classes, const PartitionSpec& spec) {
  const uint64_t seed = StreamSeed(spec.seed, SeedStream::kPartition);
  if (spec.scheme == "iid") return PartitionIid(labels.size(), spec.clients, seed);
  if (spec.scheme == "dirichlet") return PartitionDirichlet(labels, num_classes, spec.clients, spec.alpha, seed);
  if (spec.scheme == "shards") return PartitionShards(labels, spec.clients, spec.shards_per_client, seed);
  return InvalidArgumentError("unknown partition scheme '" + spec.scheme + "' (iid, dirichlet, shards)");
}

HoldoutSplit SplitClientHoldout(std::span<const uint32_t> examples, const PartitionSpec& spec, size_t index) {
  if (spec.holdout <= 0) return HoldoutSplit{{examples.begin(), examples.end()}, {}};
  return SplitHoldout(examples, spec.holdout, StreamSeed(spec.seed, SeedStream::kHoldout, index));
}

Result<HoldoutSplit> PartitionForClient(std::span<const int32_t> labels, size_t num_classes,
                                        const PartitionSpec& spec, size_t index) {
  if (index >= spec.clients) {
    return InvalidArgumentError("client index " + std::to_string(index) + " is not below the " +
                                std::to_string(spec.clients) + " clients of the partition");
  }
  FRUGAL_ASSIGN_OR_RETURN(Partition all, PartitionFleet(labels, num_classes, spec));
  return SplitClientHoldout(all[index], spec, index);
}

}  // namespace frugal
