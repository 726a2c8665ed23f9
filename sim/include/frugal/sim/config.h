// frugal-sim's configuration: one TOML file with every knob, overridable with
// `--set key=value` (dotted keys, TOML values). Unknown keys are errors, so a
// typo never silently runs the default.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/round/engine.h"
#include "frugal/report/run_dir.h"
#include "frugal/round/settings.h"
#include "frugal/sim/attack.h"

namespace frugal::sim {

struct MixWeight {
  std::string id;
  double weight = 0;
};

// The run keys every front end shares (RunSettings: seed, rounds, model,
// pipeline, [round], [train], [uplink], [downlink], [server], [eval]) plus the
// simulated population and how the simulator runs.
struct SimConfig : RunSettings {
  std::string name = "unnamed";      // scenario name; run_id defaults to name-seed

  // [data]
  std::string partition = "iid"; // iid | dirichlet | shards
  double alpha = 0.5;            // Dirichlet concentration
  uint32_t shards_per_client = 2;
  uint32_t samples_per_client = 32;  // for populations larger than the data set
  double holdout = 0.0;              // fraction of each partition kept out of training (SplitHoldout)

  // [population]
  uint64_t clients = 100;
  std::vector<MixWeight> devices, radios, regions;
  std::vector<MixWeight> availability;  // pattern id -> share: always | diurnal
  bool require_charging = false;
  double dropout = 0.0;                 // probability a selected client vanishes mid-task
  std::string profiles;                 // user energy profile override file (optional)

  // [run]
  uint32_t threads = 0;        // 0 = all hardware threads
  double start_utc_hour = 12;
  double residual_memory_mb = 1024;  // error-feedback residuals beyond this spill to disk
  std::string spill_dir;             // default: the --out directory, else the temp directory

  // [attack]: malicious clients (frugal-sim only; see attack.h)
  AttackConfig attack;

  // A replay (frugal-sim --replay): the recorded run's clients replace the
  // population, and each round runs at the UTC hour the recorded one did.
  std::vector<RosterEntry> roster;
  std::vector<double> replay_utc_hours;

  // Every key with its effective value, for the report, and as TOML (run.toml).
  std::map<std::string, std::string> flat;
  toml::table effective;
  std::vector<std::string> warnings;  // deprecated keys used
};

// Parses TOML text, applies `overrides` ("a.b=value"), validates. Errors name the key.
Result<SimConfig> ParseSimConfig(std::string_view toml_text, std::string_view source,
                                 const std::vector<std::string>& overrides);
Result<SimConfig> LoadSimConfig(const std::string& path, const std::vector<std::string>& overrides);

// The configuration that re-runs a finished run directory (frugal-sim --replay):
// its run.toml, its clients (clients.csv) as the population, and as many
// rounds as its rounds.csv holds, each at the UTC hour it ran. Errors name the
// missing or malformed file.
Result<SimConfig> LoadReplayConfig(const std::string& run_dir, const std::vector<std::string>& overrides);

}  // namespace frugal::sim
