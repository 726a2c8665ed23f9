// Weighted FedAvg over sparse client updates, streamed: each update is folded
// into a dense accumulator as it arrives, so aggregation finishes when the last
// update does. A server optimizer (SGD with momentum, or FedAdam, FedYogi,
// FedAdagrad) turns the average into the step applied to the global model.
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

// The server's optimizer, ServerOpt in FedOpt (Reddi et al., "Adaptive
// Federated Optimization", ICLR 2021, Algorithm 2).
enum class ServerOptimizerKind : uint8_t { kSgd, kAdam, kYogi, kAdagrad };

// Parses "sgd", "adam", "yogi" or "adagrad"; the error names the value and the known ones.
Result<ServerOptimizerKind> ParseServerOptimizer(std::string_view name);
std::string_view ServerOptimizerName(ServerOptimizerKind kind);

struct ServerOptimizerConfig {
  ServerOptimizerKind kind = ServerOptimizerKind::kSgd;
  float learning_rate = 1.0f;  // eta; 1.0 with kSgd and momentum 0 is plain FedAvg
  float momentum = 0.0f;       // kSgd only: server momentum (FedAvgM, Hsu et al. 2019)
  // kAdam, kYogi, kAdagrad only; the paper's defaults. beta1 is the first
  // moment's decay (also Adagrad's), beta2 the second's (Adam, Yogi), tau the
  // adaptivity: the smaller, the more adaptive.
  float beta1 = 0.9f;
  float beta2 = 0.99f;
  float tau = 1e-3f;
};

// Rejects what would make the optimizer meaningless: a learning rate or tau
// that is not positive and finite, momentum, beta1 or beta2 outside [0, 1)
// (the fields a kind ignores are not checked).
Status CheckServerOptimizerConfig(const ServerOptimizerConfig& cfg);

// Turns the averaged client update into the server step, in place. Here avg is
// the mean model delta Delta = mean_i (x_i - x), i.e. the paper's Delta_t, the
// negative of a pseudo-gradient, so every step is *added* to the model:
//   kSgd:     momentum 0: step = lr * Delta (lr 1: plain FedAvg);
//             else v = momentum * v + Delta; step = lr * v.
//   adaptive: m = beta1 * m + (1 - beta1) * Delta              (m starts at 0)
//             kAdagrad: v = v + Delta^2
//             kAdam:    v = beta2 * v + (1 - beta2) * Delta^2
//             kYogi:    v = v - (1 - beta2) * Delta^2 * sign(v - Delta^2)   (sign(0) = 0)
//             step = lr * m / (sqrt(v) + tau)
// all per coordinate, as the paper: no bias correction, and v starts at tau^2
// (the paper requires v_{-1} >= tau^2; tau^2 is its smallest choice). v stays
// positive: Yogi only shrinks v by (1 - beta2) * Delta^2 when Delta^2 < v.
// Not thread-safe.
class ServerOptimizer {
 public:
  // cfg is taken as given; callers validate it with CheckServerOptimizerConfig.
  ServerOptimizer(size_t dim, ServerOptimizerConfig cfg);

  const ServerOptimizerConfig& config() const { return cfg_; }
  size_t dim() const { return dim_; }

  // In place: avg (size dim) becomes the step to add to the model. All or
  // nothing: if avg has the wrong size, or the step or the new state would not
  // be finite (a non-finite average, or Delta^2 overflowing float), returns
  // invalid argument and leaves avg and the state unchanged.
  Status Step(std::span<float> avg);

  // The optimizer's state, to persist across restarts: kSgd with momentum: v;
  // kAdam, kYogi, kAdagrad: m then v (2 * dim floats); empty for plain kSgd.
  std::span<const float> state() const { return state_; }
  size_t state_size() const { return state_.size(); }
  // Restores state() saved by an optimizer of the same kind and dimension. Its
  // size must equal state_size(), every value be finite and v >= 0 (adaptive
  // kinds); otherwise returns invalid argument and keeps the current state.
  Status SetState(std::span<const float> state);

 private:
  ServerOptimizerConfig cfg_;
  size_t dim_;
  std::vector<float> state_;  // see state()
};

}  // namespace frugal
