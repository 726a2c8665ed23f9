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
#include "frugal/round/settings.h"

namespace frugal::coordinator {

struct ServiceConfig {
  std::string listen_address = "127.0.0.1";
  uint32_t port = 7443;              // 0: pick a free port (written to port_file)
  std::string port_file;             // if set, the bound port is written here
  std::string status_address = "127.0.0.1";
  uint32_t status_port = 0;          // loopback HTTP /metrics and /status; 0: pick a free port
  std::string status_port_file;
  // A file holding the bearer token the status port then requires of every
  // request (the dashboard, /api/state, /metrics, /status). Required when
  // status_address is not a loopback address. A file, not the token itself,
  // so that the token never reaches run.toml, summary.json or report.html.
  std::string status_token_file;
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
  // Tests only: the close work of this round waits, before it starts, while
  // the file close_hold_r<round> it writes to out_dir exists (the test
  // deletes it to release the close, or kills the coordinator). 0: never.
  uint32_t debug_hold_close_round = 0;
};

// The run keys every front end shares (RunSettings) plus the service's own [service] table.
struct CoordinatorConfig : RunSettings {
  ServiceConfig service;

  std::map<std::string, std::string> flat;  // every key with its effective value
  toml::table effective;                     // the same, typed (run.toml holds its run keys)
  std::vector<std::string> warnings;         // deprecated keys used
  // Canonical text of the keys that define the run (not the service keys).
  std::string RunFingerprint() const;
  // The run keys as TOML (everything but [service]): the run.toml of the run directory.
  std::string RunToml() const;
};

// Parses TOML text, applies overrides ("a.b=value"), validates. Errors name the key.
Result<CoordinatorConfig> ParseCoordinatorConfig(std::string_view toml_text, std::string_view source,
                                                 const std::vector<std::string>& overrides);
// ParseCoordinatorConfig of a file; an empty path means defaults plus overrides.
Result<CoordinatorConfig> LoadCoordinatorConfig(const std::string& path, const std::vector<std::string>& overrides);

}  // namespace frugal::coordinator
