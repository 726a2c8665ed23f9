// The device agent: holds the local data, connects to the coordinator over
// mutual TLS 1.3, registers, and for each Task applies the model payload
// (ApplyModelPayload), trains and encodes with RunClientTask, and sends the
// Update with its ledger figures. Reconnects with exponential backoff and
// jitter; keeps its error-feedback residual in a file so it survives restarts.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "frugal/client/config.h"
#include "frugal/core/random.h"
#include "frugal/core/status.h"
#include "frugal/data/dataset.h"

namespace frugal::client {

// Seconds to wait before reconnect attempt `attempt` (0-based): an exponential
// min(max, initial * 2^attempt) scaled by a uniform factor in [0.5, 1) so a
// fleet that lost its coordinator does not reconnect in lockstep.
double BackoffSeconds(double initial_s, double max_s, uint32_t attempt, Rng& rng);

// The residual file: magic, dimension, CRC32, floats. Written to a temporary
// file and renamed, so a crash leaves the old or the new one, never a mix.
Status SaveResidual(const std::string& path, std::span<const float> residual);
// Loads a residual of `dim` floats; NotFound if absent, DataLoss if corrupt or
// of another dimension (the caller then starts from zeros).
Result<std::vector<float>> LoadResidual(const std::string& path, size_t dim);

// The local data and the example indices this client trains on.
struct LocalData {
  Dataset data;
  std::vector<uint32_t> indices;  // the examples trained on
  std::vector<uint32_t> holdout;  // data.holdout's share, evaluated instead of `indices` when not empty
};
// Loads the configured data source (a Fashion-MNIST partition, IDX or CSV files).
Result<LocalData> LoadLocalData(const DataConfig& cfg);

class Agent {
 public:
  // Loads data, energy profiles and the RAPL meter (if any). Not thread-safe.
  static Result<std::unique_ptr<Agent>> Create(const ClientConfig& config);
  ~Agent();

  // Serves the coordinator until it says the run is complete (returns ok), or
  // until max_attempts consecutive connection attempts failed (kUnavailable),
  // or the coordinator refuses this identity (kPermissionDenied).
  Status Run();

  struct Impl;

 private:
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace frugal::client
