// Weighted FedAvg over sparse client updates, streamed: each update is folded
// into a dense accumulator as it arrives, so aggregation finishes when the last
// update does. A server optimizer (SGD with learning rate and momentum) turns
// the average into the step applied to the global model.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"

namespace frugal {

// What each coordinate of the mean is divided by.
enum class Averaging : uint8_t {
  // sum_i w_i: plain FedAvg; a coordinate an update does not carry counts as 0.
  kAll,
  // The weights of the updates that carry the coordinate. Sparse updates whose
  // supports barely overlap are otherwise diluted up to K-fold; a coordinate no
  // update carries stays 0. Same as kAll for dense updates.
  kSupport,
};

// Parses "all" or "support".
Result<Averaging> ParseAveraging(std::string_view name);
std::string_view AveragingName(Averaging a);

// Accumulates sum_i w_i * u_i and sum_i w_i (kSupport: also, per coordinate,
// the sum of w_i over the updates carrying it). Not thread-safe: callers serialise Add().
class FedAvgAccumulator {
 public:
  explicit FedAvgAccumulator(size_t dim, Averaging averaging = Averaging::kAll);

  size_t dim() const { return sum_.size(); }
  size_t count() const { return count_; }
  double total_weight() const { return total_weight_; }

  // Adds weight * values at indices. Indices must be < dim (checked), weight > 0 and finite.
  Status AddSparse(std::span<const uint32_t> indices, std::span<const float> values, double weight);
  // Adds weight * values for a dense update of size dim.
  Status AddDense(std::span<const float> values, double weight);
  // Writes the weighted mean into out (size dim), each coordinate divided as
  // the Averaging says; zeros when nothing was added.
  void Mean(std::span<float> out) const;
  void Reset();

 private:
  std::vector<double> sum_;
  std::vector<double> support_weight_;  // kSupport only
  double total_weight_ = 0;
  size_t count_ = 0;
};

struct ServerOptimizerConfig {
  float learning_rate = 1.0f;  // 1.0 with momentum 0 is plain FedAvg
  float momentum = 0.0f;       // server momentum (FedAvgM, Hsu et al. 2019)
};

// Turns an averaged client update into the server step: v = m*v + avg; step = lr * v.
class ServerOptimizer {
 public:
  ServerOptimizer(size_t dim, ServerOptimizerConfig cfg);
  // In place: avg becomes the step to add to the model.
  void Step(std::span<float> avg);
  std::span<const float> velocity() const { return velocity_; }
  // Restores state saved by a previous run (size must equal dim).
  Status SetVelocity(std::span<const float> v);

 private:
  ServerOptimizerConfig cfg_;
  std::vector<float> velocity_;
};

}  // namespace frugal
