// frugal-client's configuration: one TOML file (docs/examples/client.toml)
// with `--set key=value` overrides; unknown keys are errors.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "frugal/core/status.h"

namespace frugal::client {

struct DataConfig {
  // "fmnist-partition": partition `index` of Fashion-MNIST's training set,
  // split among `clients` with the coordinator's seed; "idx" or "csv": local files.
  std::string source = "fmnist-partition";
  std::string fmnist_dir;            // default: Debian's dataset-fashion-mnist
  std::string partition = "dirichlet";  // iid | dirichlet | shards (PartitionForClient, as frugal-sim)
  uint32_t clients = 10;
  uint32_t index = 0;
  double alpha = 0.5;
  uint32_t shards_per_client = 2;
  uint64_t seed = 1;                 // must equal the coordinator's seed for a consistent split
  // Fraction of the local examples kept out of training and used for federated
  // evaluation (SplitHoldout). 0: train and evaluate on all.
  double holdout = 0.0;
  std::string idx_images, idx_labels;
  std::string csv;
  std::string table;                 // source "table": a dataset manifest (frugal/data/table.h)
  uint32_t csv_num_classes = 10;
  double csv_feature_scale = 255;
  bool csv_header = false;
};

struct PolicyConfig {
  std::string power_supply_root = "/sys/class/power_supply";
  double min_battery_percent = 20;   // below this (and not charging): decline
  bool require_charging = false;
  bool allow_metered = true;
  std::string network = "auto";      // auto | metered | unmetered (auto: metered if the radio is cellular)
};

struct ClientConfig {
  std::string name;                  // identity; must equal the certificate's CN
  std::string host = "127.0.0.1";
  uint32_t port = 7443;
  std::string port_file;             // if set, the port is read from this file at each connect
  std::string ca_cert, cert, key;
  std::string device = "phone-mid";
  std::string radio = "wifi";
  std::string region = "world";
  std::string state_dir = "client-state";  // error-feedback residual lives here
  std::string profiles;              // energy profile override file (optional)
  std::string rapl_root = "/sys/class/powercap";
  // Measure phases with the battery's fuel gauge under policy.power_supply_root
  // when it has one (docs/operations.md, "Measured energy"), read at this rate
  // while a task runs.
  bool battery_meter = true;
  double battery_sample_hz = 5;
  double backoff_initial_s = 0.5;
  double backoff_max_s = 30;
  uint32_t max_attempts = 0;         // consecutive failed connects before giving up; 0 = never
  double read_timeout_s = 120;       // nothing from the coordinator for this long: reconnect
  uint32_t max_frame_mb = 64;
  bool exit_on_run_complete = true;  // exit 0 when the coordinator says the run is complete
  // debug.secagg_hold_round (tests only): in this secure round the client
  // stops after sharing its keys, writes secagg_hold_r<round> to its state
  // directory and sends no masked input (a drop-out for the protocol). 0: never.
  uint32_t secagg_hold_round = 0;
  // The identity credential the fleet's CA issued with the certificate
  // (tls.identity; default: tls.cert with .crt replaced by .idc), used in a
  // secure round that binds keys to identities (docs/privacy.md).
  std::string identity;
  // secure.require_identity: load and check tls.identity at start-up (Agent::Create
  // fails without it), and check every neighbour's identity in every secure
  // round, even when the coordinator's plan does not ask for it (a server
  // that turned the check off could pose as clients of its own making).
  bool require_identity = false;
  // secure.history_steps: keep the last N broadcast steps applied (in memory),
  // so that a coordinator with secure.derive_guide can leave the guide out of
  // its tasks (docs/privacy.md, "Guided support"); 0 (default): keep none.
  uint32_t history_steps = 0;
  DataConfig data;
  PolicyConfig policy;
  std::map<std::string, std::string> flat;
};

// Parses TOML text, applies overrides, validates. Errors name the key.
Result<ClientConfig> ParseClientConfig(std::string_view toml_text, std::string_view source,
                                       const std::vector<std::string>& overrides);
// ParseClientConfig of a file; an empty path means defaults plus overrides.
Result<ClientConfig> LoadClientConfig(const std::string& path, const std::vector<std::string>& overrides);

}  // namespace frugal::client
