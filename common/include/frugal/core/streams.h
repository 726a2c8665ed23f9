// Every seed stream of a run in one place: each draw is Rng(DeriveSeed(seed,
// stream, ...)), so the simulator, the coordinator and the client agent derive
// the same seed for the same purpose. Numbers are part of the results: never
// renumber a stream (every recorded run would change).
#pragma once

#include <cstdint>

#include "frugal/core/random.h"

namespace frugal {

enum class SeedStream : uint64_t {
  kTraits = 1,     // a simulated client's device, radio, region, availability (by client)
  kPartition = 2,  // how the training set is split among clients
  kSample = 3,     // a sampled (fleet-scale) client's examples (by client)
  kOnline = 4,     // diurnal availability (by round)
  kHoldout = 5,    // a client's local holdout (by client index)
  kSelect = 11,    // the clients of a round (by round)
  kTrain = 12,     // a client's training in a round (by round and client)
  kDropout = 13,   // whether a simulated client vanishes mid-round (by round and client)
  kInit = 14,      // the initial model, version 1
  kAttack = 15,    // frugal-sim's attackers (no index), an attacker's poisoned examples (by client),
                   // its Gaussian update (by round and client)
  kTrusted = 21,   // the server's trusted set (server.trusted_examples, FLTrust)
  kTrustedTrain = 22,  // the server's training on its trusted set (by round)
  kDpNoise = 31,   // the simulator's central DP noise (by round; the service draws RAND_bytes instead)
  kRobustNoise = 32,  // server.robust's own noise (FLAME's, by round), in both front ends
};

inline uint64_t StreamSeed(uint64_t seed, SeedStream s) { return DeriveSeed(seed, static_cast<uint64_t>(s)); }
inline uint64_t StreamSeed(uint64_t seed, SeedStream s, uint64_t index) {
  return DeriveSeed(StreamSeed(seed, s), index);
}
// Seed of `client`'s work in `round` (training, drop-out).
inline uint64_t RoundClientSeed(uint64_t seed, SeedStream s, uint32_t round, uint64_t client) {
  return StreamSeed(seed, s, (static_cast<uint64_t>(round) << 32) | client);
}

}  // namespace frugal
