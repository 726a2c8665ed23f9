// Local training of one client: mini-batch SGD with optional momentum, weight
// decay and FedProx proximal term over a subset of a data set, and evaluation.
// Deterministic for a seed; allocates nothing per step once a workspace is warm.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "frugal/core/status.h"
#include "frugal/data/dataset.h"
#include "frugal/model/model.h"

namespace frugal {

struct TrainConfig {
  int epochs = 1;
  int batch_size = 32;
  float learning_rate = 0.1f;
  float momentum = 0.0f;      // heavy ball: v = momentum*v + g; w -= lr*v (v starts at 0 each call)
  float prox_mu = 0.0f;       // FedProx: adds mu/2 * ||w - w0||^2, w0 = params on entry
  float weight_decay = 0.0f;  // adds weight_decay/2 * ||w||^2
  uint64_t seed = 0;
};

struct TrainStats {
  double mean_loss = 0;  // mean over all examples seen of the batch loss before each step
  size_t examples = 0;   // epochs * indices.size()
  size_t steps = 0;
  double flops = 0;      // (forward + backward FLOPs per example) * examples, see FlopCount
};

// Mini-batch SGD over the rows `indices` of data, reshuffled each epoch with
// Rng(DeriveSeed(seed, epoch)); the last batch of an epoch may be short.
// Trains params in place and is bit-for-bit deterministic given the seed.
// Errors (kInvalidArgument): empty indices, index out of range, label out of
// range, dimension mismatch, bad config, non-finite loss; on a non-finite loss
// params hold the weights after the last good step. Thread-safe with one ws per thread.
Result<TrainStats> Train(const Model& model, std::span<float> params, const Dataset& data,
                         std::span<const uint32_t> indices, const TrainConfig& cfg, ModelWorkspace& ws);

struct EvalResult {
  double accuracy = 0;
  double loss = 0;  // mean cross-entropy
  size_t examples = 0;
  double flops = 0;  // forward FLOPs per example * examples
};

// Accuracy and mean loss of params over the rows `indices` of data (empty =
// all rows), in batches of batch_size. Errors as for Train.
Result<EvalResult> Evaluate(const Model& model, std::span<const float> params, const Dataset& data,
                            std::span<const uint32_t> indices, ModelWorkspace& ws, size_t batch_size = 1000);

}  // namespace frugal
