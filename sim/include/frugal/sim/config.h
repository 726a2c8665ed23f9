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

namespace frugal::sim {

struct MixWeight {
  std::string id;
  double weight = 0;
};

struct SimConfig {
  std::string name = "unnamed";
  uint64_t seed = 1;
  uint32_t rounds = 20;
  Pipeline pipeline = Pipeline::kFrugal;
  double target_accuracy = 0.85;
  std::string model = "mlp";

  // [data]
  std::string data_dir;          // Fashion-MNIST directory (default: Debian's)
  std::string partition = "iid"; // iid | dirichlet | shards
  double alpha = 0.5;            // Dirichlet concentration
  uint32_t shards_per_client = 2;
  uint32_t samples_per_client = 32;  // for populations larger than the data set
  double holdout = 0.0;              // fraction of each partition kept out of training (SplitHoldout)
  uint32_t eval_every = 1;
  uint32_t eval_examples = 0;        // 0 = the whole test set

  // [population]
  uint64_t clients = 100;
  std::vector<MixWeight> devices, radios, regions;
  std::vector<MixWeight> availability;  // pattern id -> share: always | diurnal
  bool require_charging = false;
  double dropout = 0.0;                 // probability a selected client vanishes mid-task
  std::string profiles;                 // user energy profile override file (optional)

  // [round], [train], [uplink], [downlink], [server]
  RoundPlan plan;
  TaskConfig task;
  EngineConfig engine;
  // Frugal: clients build version 1 from the shared seed (InitParams) instead of downloading it.
  bool seed_init = true;

  // [run]
  uint32_t threads = 0;        // 0 = all hardware threads
  double start_utc_hour = 12;
  double round_interval_s = 0;  // idle virtual time between rounds
  double residual_memory_mb = 1024;  // error-feedback residuals beyond this spill to disk
  std::string spill_dir;             // default: the --out directory, else the temp directory

  // Every key with its effective value, for the report.
  std::map<std::string, std::string> flat;
};

// Parses TOML text, applies `overrides` ("a.b=value"), validates. Errors name the key.
Result<SimConfig> ParseSimConfig(std::string_view toml_text, std::string_view source,
                                 const std::vector<std::string>& overrides);
Result<SimConfig> LoadSimConfig(const std::string& path, const std::vector<std::string>& overrides);

}  // namespace frugal::sim
