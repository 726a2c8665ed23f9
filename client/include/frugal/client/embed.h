// Embedding the agent in an application, C++ API version 1 (stable: new
// members come in a new inline namespace v2, v1 keeps compiling). The app
// supplies training and evaluation on a flat parameter buffer over its own
// data; Frugal does the connection (mutual TLS), the protocol, the update's
// compression with error feedback, the device policy, the battery or RAPL
// meter and the ledger figures. The C ABI over it is frugal/client/frugal_embed.h.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "frugal/core/status.h"

#define FRUGAL_EMBED_API_VERSION 1

namespace frugal::embed {
inline namespace v1 {

// What the coordinator asks of one round's training (the run's settings).
struct TrainRequest {
  uint32_t round = 0;
  uint64_t seed = 0;  // the round's seed for this client (shuffling, dropout)
  uint32_t epochs = 1;
  uint32_t batch_size = 32;
  float learning_rate = 0.01f;
};

struct TrainReport {
  uint64_t examples = 0;  // examples processed (epochs x local examples)
  double mean_loss = 0;
  double flops = 0;       // executed, for the energy ledger (0: unknown)
};

struct EvalReport {
  uint64_t examples = 0;
  double accuracy = 0;
  double loss = 0;
};

// The app's side. Called from the thread that runs Run(), one call at a time.
class Trainer {
 public:
  virtual ~Trainer() = default;
  virtual uint32_t input_dim() const = 0;    // features per example
  virtual uint32_t num_classes() const = 0;
  virtual uint64_t num_examples() const = 0;  // local examples (the FedAvg weight)
  // Trains `params` in place (the layout of the coordinator's model, e.g.
  // "logreg": a column-major input_dim x num_classes weight matrix, then the
  // biases). An error declines the round; params must stay finite.
  virtual Status Train(std::span<float> params, const TrainRequest& request, TrainReport* report) = 0;
  virtual Status Evaluate(std::span<const float> params, EvalReport* report) = 0;
};

// FRUGAL_EMBED_API_VERSION of the library linked.
int ApiVersion();

// Runs the agent with the client configuration file `config_path` ("" for
// defaults) and `overrides` ("key=value"), training with `trainer`; the data.*
// keys are not used. Blocks until the coordinator says the run is complete
// (ok) or refuses this client, or the connection gives up (the agent's Run).
Status Run(const std::string& config_path, const std::vector<std::string>& overrides, Trainer& trainer);

}  // namespace v1
}  // namespace frugal::embed
