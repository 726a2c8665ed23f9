// Helpers shared by the round tests.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "frugal/codec/uplink.h"
#include "frugal/core/random.h"
#include "frugal/round/engine.h"

namespace frugal::round_test {

// n standard normal values times `scale`, from `seed`.
inline std::vector<float> RandomVector(size_t n, uint64_t seed, float scale = 1.0f) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.Normal()) * scale;
  return v;
}

// `u` encoded as a dense fp32 uplink frame, as a dense-pipeline client sends it.
inline std::vector<uint8_t> DenseUpdate(const std::vector<float>& u) {
  UplinkConfig cfg;
  cfg.dense = true;
  auto r = EncodeUplink(u, cfg, {});
  REQUIRE(r.ok());
  return *r;
}

// What a coordinator stores of `e` to restart it (no steps: a dense engine's,
// or a Frugal one's that needs no chain), for RoundEngine::Restore.
inline EngineState Snapshot(const RoundEngine& e) {
  EngineState state;
  state.version = e.version();
  state.model.assign(e.global_model().begin(), e.global_model().end());
  state.server_state = e.ServerState();
  return state;
}

}  // namespace frugal::round_test
