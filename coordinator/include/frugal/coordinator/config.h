// frugal-coordinator's configuration: one TOML file (docs/examples/coordinator.toml)
// with command-line `--set key=value` overrides; unknown keys are errors.
// The run keys (model, data, round, train, codecs) are fingerprinted so a
// restart against the same store resumes only the same run.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/round/engine.h"

namespace frugal::coordinator {

struct ServiceConfig {
  std::string listen_address = "127.0.0.1";
  uint32_t port = 7443;              // 0: pick a free port (written to port_file)
  std::string port_file;             // if set, the bound port is written here
  std::string status_address = "127.0.0.1";
  uint32_t status_port = 0;          // loopback HTTP /metrics and /status; 0: pick a free port
  std::string status_port_file;
  std::string ca_cert, server_cert, server_key;  // PEM paths
  std::vector<std::string> revoked;  // client identities (cert CN) refused
  uint32_t max_connections = 1024;
  double handshake_timeout_s = 10;   // TLS handshake plus Hello
  double idle_timeout_s = 60;        // no bytes from a registered client for this long: closed
  double heartbeat_s = 10;
  uint32_t max_frame_mb = 64;
  uint32_t write_queue_limit = 64;   // queued outgoing messages per session before it is closed
  std::string store = "coordinator.db";
  std::string out_dir = "runs/coordinator";
  std::string profiles;              // energy profile override file (optional)
};

struct CoordinatorConfig {
  std::string run_id = "frugal-run";
  uint64_t seed = 1;
  uint32_t rounds = 20;
  Pipeline pipeline = Pipeline::kFrugal;
  std::string model = "logreg";
  double target_accuracy = 0.8;
  std::string data_dir;              // Fashion-MNIST for evaluation (default: Debian's)
  uint32_t eval_examples = 0;        // 0: the whole test set
  uint32_t min_clients = 1;          // connected clients needed before a round opens
  double round_interval_s = 0;       // pause between rounds
  // Federated evaluation: after every eval_every-th committed round, each
  // connected client evaluates the new global model on its local data
  // (EvalTask + ModelPayload -> EvalResult). 0: off.
  uint32_t eval_every = 0;
  RoundPlan plan;
  TaskConfig task;
  EngineConfig engine;
  bool error_feedback = true;        // clients keep a residual (frugal pipeline)
  ServiceConfig service;

  std::map<std::string, std::string> flat;  // every key with its effective value
  // Canonical text of the keys that define the run (not the service keys).
  std::string RunFingerprint() const;
};

// Parses TOML text, applies overrides ("a.b=value"), validates. Errors name the key.
Result<CoordinatorConfig> ParseCoordinatorConfig(std::string_view toml_text, std::string_view source,
                                                 const std::vector<std::string>& overrides);
// ParseCoordinatorConfig of a file; an empty path means defaults plus overrides.
Result<CoordinatorConfig> LoadCoordinatorConfig(const std::string& path, const std::vector<std::string>& overrides);

}  // namespace frugal::coordinator
