// The device agent: holds the local data, connects to the coordinator over
// mutual TLS 1.3, and runs the task loop (frugal/client/task_loop.h) on what
// the coordinator sends: it applies each model payload, trains and encodes
// with RunClientTask, and sends the Update with its ledger figures.
// Reconnects with exponential backoff and jitter; keeps its error-feedback
// residual in a file so it survives restarts (frugal/client/local_state.h).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "frugal/client/config.h"
#include "frugal/client/embed.h"
#include "frugal/client/local_state.h"
#include "frugal/client/task_loop.h"
#include "frugal/core/random.h"
#include "frugal/core/status.h"
#include "frugal/data/dataset.h"

namespace frugal::client {

// Seconds to wait before reconnect attempt `attempt` (0-based): an exponential
// min(max, initial * 2^attempt) scaled by a uniform factor in [0.5, 1) so a
// fleet that lost its coordinator does not reconnect in lockstep.
double BackoffSeconds(double initial_s, double max_s, uint32_t attempt, Rng& rng);

// Loads the configured data source (a Fashion-MNIST partition, IDX or CSV files).
Result<LocalData> LoadLocalData(const DataConfig& cfg);

// frugal-client's process exit codes (listed by `frugal-client --help`).
enum ExitCode : int {
  kExitOk = 0,               // the coordinator said the run is complete
  kExitPermissionDenied = 1, // PERMISSION_DENIED: this identity is revoked
  kExitSetup = 2,            // bad configuration, data, profiles or TLS files
  kExitProtocolVersion = 3,  // PROTOCOL_VERSION: the coordinator speaks another protocol
  kExitUnauthenticated = 4,  // UNAUTHENTICATED: certificate refused, or its name is not the client's
  kExitGaveUp = 5,           // connection.max_attempts consecutive attempts failed
};
// The exit code for what Agent::Run returned.
int ExitCodeFor(const Status& run_result);

class Agent {
 public:
  // Loads data, energy profiles, the RAPL meter (if any) and the TLS files. Not thread-safe.
  // With an embedding app (borrowed, outlives the agent), the app's data and
  // trainer replace the data.* keys and the core's trainer.
  static Result<std::unique_ptr<Agent>> Create(const ClientConfig& config, embed::Trainer* app = nullptr);
  ~Agent();

  // Serves the coordinator until it says the run is complete (ok), or until
  // max_attempts consecutive connection attempts failed (kUnavailable), or
  // the coordinator refuses this client for good: kPermissionDenied (revoked),
  // kUnauthenticated (certificate or name), kFailedPrecondition (protocol
  // version); the message names the wire code.
  Status Run();

  struct Impl;

 private:
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace frugal::client
