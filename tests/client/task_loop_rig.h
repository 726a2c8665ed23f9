// One agent's world for the task loop's tests (task_loop_test,
// battery_meter_test, embed_test): config, data, profiles and state, with the
// loop built by each test from rig.env and rig.state.
#pragma once

#include <cstdint>

#include "data/temp_dir.h"
#include "frugal/client/task_loop.h"
#include "frugal/energy/profiles.h"
#include "frugal/model/model.h"

namespace frugal::client {

// Synthetic on purpose: the loop's decisions, not learning, are under test,
// and a 4-feature, 3-class set keeps the model at 15 parameters.
inline LocalData TinyData() {
  LocalData d;
  d.data.num_features = 4;
  d.data.num_classes = 3;
  for (int i = 0; i < 24; ++i) {
    for (int f = 0; f < 4; ++f) d.data.features.push_back(static_cast<float>((i * 7 + f * 3) % 11) / 11.0f);
    d.data.labels.push_back(i % 3);
    d.indices.push_back(static_cast<uint32_t>(i));
  }
  return d;
}

// One agent's world: config, data, profiles, state, and a loop per session.
struct Rig {
  testing::TempDir dir;
  ClientConfig cfg;
  LocalData local = TinyData();
  EnergyProfiles profiles = *EnergyProfiles::LoadDefault();
  TaskLoopEnv env;
  LocalState state{dir.Path("residual.bin")};
  bool accept = true;

  Rig() {
    cfg.name = "dev-1";
    env.config = &cfg;
    env.local = &local;
    env.device = *profiles.Device("phone-mid");
    env.radio = *profiles.Radio("wifi");
    env.decide = [this] { return PolicyDecision{accept, accept ? "" : "battery low"}; };
  }
  uint32_t Dim() const { return static_cast<uint32_t>((*MakeModel("logreg", 4, 3))->num_params()); }
};

}  // namespace frugal::client
