// Whether this device should take a training task now: battery level and
// charging state read from a Linux power_supply tree (the root is injected so
// tests lay one out in a temporary directory), and metered versus unmetered
// network (configured; "auto" treats cellular radios as metered).
#pragma once

#include <optional>
#include <string>

#include "frugal/client/config.h"
#include "frugal/core/status.h"

namespace frugal::client {

// What the power_supply tree says; fields are empty when not present.
struct PowerState {
  std::optional<double> battery_percent;  // lowest capacity among batteries
  bool has_battery = false;
  bool charging = false;                  // a battery charging or full, or a mains supply online
};

// Reads <root>/*/type, capacity, status and online. A missing root means a
// mains-powered machine with no battery (e.g. a server or a VM); unreadable or
// malformed files are skipped, never fatal.
PowerState ReadPowerState(const std::string& root);

struct PolicyDecision {
  bool accept = true;
  std::string reason;  // why it declines, for the coordinator and the log
};

// Accepts a task unless the battery is below the threshold while not charging,
// charging is required and absent, or the network is metered and metered use
// is not allowed. `radio` is the radio profile id ("wifi", "lte", "5g", ...).
PolicyDecision DecideTask(const PolicyConfig& policy, const PowerState& power, const std::string& radio);

}  // namespace frugal::client
