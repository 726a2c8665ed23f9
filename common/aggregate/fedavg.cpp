#include "frugal/aggregate/fedavg.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>

namespace frugal {

Result<Averaging> ParseAveraging(std::string_view name) {
  if (name == "all") return Averaging::kAll;
  if (name == "support") return Averaging::kSupport;
  return InvalidArgumentError("unknown averaging '" + std::string(name) + "' (known: all, support)");
}

std::string_view AveragingName(Averaging a) { return a == Averaging::kSupport ? "support" : "all"; }

FedAvgAccumulator::FedAvgAccumulator(size_t dim, Averaging averaging)
    : sum_(dim, 0.0), support_weight_(averaging == Averaging::kSupport ? dim : 0, 0.0) {}

Status FedAvgAccumulator::AddSparse(std::span<const uint32_t> indices, std::span<const float> values,
                                    double weight) {
  if (indices.size() != values.size()) {
    return InvalidArgumentError("sparse update has " + std::to_string(indices.size()) +
                                " indices but " + std::to_string(values.size()) + " values");
  }
  if (!(weight > 0.0) || !std::isfinite(weight)) {
    return InvalidArgumentError("update weight must be positive and finite, got " + std::to_string(weight));
  }
  for (uint32_t i : indices) {
    if (i >= sum_.size()) {
      return OutOfRangeError("update index " + std::to_string(i) + " >= model dimension " +
                             std::to_string(sum_.size()));
    }
  }
  for (size_t j = 0; j < indices.size(); ++j) sum_[indices[j]] += weight * values[j];
  if (!support_weight_.empty()) {
    for (uint32_t i : indices) support_weight_[i] += weight;
  }
  total_weight_ += weight;
  ++count_;
  return OkStatus();
}

Status FedAvgAccumulator::AddDense(std::span<const float> values, double weight) {
  if (values.size() != sum_.size()) {
    return InvalidArgumentError("dense update has dimension " + std::to_string(values.size()) +
                                ", model has " + std::to_string(sum_.size()));
  }
  if (!(weight > 0.0) || !std::isfinite(weight)) {
    return InvalidArgumentError("update weight must be positive and finite, got " + std::to_string(weight));
  }
  for (size_t j = 0; j < values.size(); ++j) sum_[j] += weight * values[j];
  for (double& w : support_weight_) w += weight;
  total_weight_ += weight;
  ++count_;
  return OkStatus();
}

void FedAvgAccumulator::Mean(std::span<float> out) const {
  if (!support_weight_.empty()) {
    for (size_t j = 0; j < sum_.size(); ++j) {
      out[j] = support_weight_[j] > 0 ? static_cast<float>(sum_[j] / support_weight_[j]) : 0.0f;
    }
    return;
  }
  const double inv = total_weight_ > 0 ? 1.0 / total_weight_ : 0.0;
  for (size_t j = 0; j < sum_.size(); ++j) out[j] = static_cast<float>(sum_[j] * inv);
}

void FedAvgAccumulator::Reset() {
  std::fill(sum_.begin(), sum_.end(), 0.0);
  std::fill(support_weight_.begin(), support_weight_.end(), 0.0);
  total_weight_ = 0;
  count_ = 0;
}

Result<ServerOptimizerKind> ParseServerOptimizer(std::string_view name) {
  if (name == "sgd") return ServerOptimizerKind::kSgd;
  if (name == "adam") return ServerOptimizerKind::kAdam;
  if (name == "yogi") return ServerOptimizerKind::kYogi;
  if (name == "adagrad") return ServerOptimizerKind::kAdagrad;
  return InvalidArgumentError("unknown server optimizer '" + std::string(name) +
                              "' (known: sgd, adam, yogi, adagrad)");
}

std::string_view ServerOptimizerName(ServerOptimizerKind kind) {
  switch (kind) {
    case ServerOptimizerKind::kSgd:
      return "sgd";
    case ServerOptimizerKind::kAdam:
      return "adam";
    case ServerOptimizerKind::kYogi:
      return "yogi";
    case ServerOptimizerKind::kAdagrad:
      return "adagrad";
  }
  return "unknown";
}

Status CheckServerOptimizerConfig(const ServerOptimizerConfig& cfg) {
  if (!(cfg.learning_rate > 0) || !std::isfinite(cfg.learning_rate)) {
    return InvalidArgumentError("server learning rate must be positive and finite, got " +
                                std::to_string(cfg.learning_rate));
  }
  if (cfg.kind == ServerOptimizerKind::kSgd) {
    if (!(cfg.momentum >= 0 && cfg.momentum < 1)) {
      return InvalidArgumentError("server momentum must be in [0, 1), got " +
                                  std::to_string(cfg.momentum));
    }
    return OkStatus();
  }
  if (!(cfg.beta1 >= 0 && cfg.beta1 < 1) || !(cfg.beta2 >= 0 && cfg.beta2 < 1)) {
    return InvalidArgumentError("server beta1 and beta2 must be in [0, 1), got " +
                                std::to_string(cfg.beta1) + " and " + std::to_string(cfg.beta2));
  }
  if (!(cfg.tau > 0) || !std::isfinite(cfg.tau)) {
    return InvalidArgumentError("server tau must be positive and finite, got " +
                                std::to_string(cfg.tau));
  }
  return OkStatus();
}

namespace {

bool IsAdaptive(ServerOptimizerKind kind) { return kind != ServerOptimizerKind::kSgd; }

size_t StateSize(size_t dim, const ServerOptimizerConfig& cfg) {
  if (IsAdaptive(cfg.kind)) return 2 * dim;
  return cfg.momentum != 0.0f ? dim : 0;
}

Status NotFinite(size_t j, float avg) {
  return InvalidArgumentError("server step is not finite at coordinate " + std::to_string(j) +
                              " (averaged update " + std::to_string(avg) + ")");
}

// One coordinate of Algorithm 2 of Reddi et al.: the new moments and the step.
// Step() runs it twice per coordinate (check, then commit), so both passes
// compute the same numbers.
struct AdaptiveCoordinate {
  float m, v, step;
};

class AdaptiveRule {
 public:
  explicit AdaptiveRule(const ServerOptimizerConfig& cfg)
      : kind_(cfg.kind),
        lr_(cfg.learning_rate),
        beta1_(cfg.beta1),
        one_minus_beta1_(1.0f - cfg.beta1),
        beta2_(cfg.beta2),
        one_minus_beta2_(1.0f - cfg.beta2),
        tau_(cfg.tau) {}

  AdaptiveCoordinate operator()(float m, float v, float delta) const {
    AdaptiveCoordinate c;
    c.m = beta1_ * m + one_minus_beta1_ * delta;
    const float delta2 = delta * delta;
    switch (kind_) {
      case ServerOptimizerKind::kAdagrad:
        c.v = v + delta2;
        break;
      case ServerOptimizerKind::kAdam:
        c.v = beta2_ * v + one_minus_beta2_ * delta2;
        break;
      default: {
        // kYogi: v moves towards delta^2 by (1 - beta2) * delta^2; Adam by (1 - beta2) * (delta^2 -
        // v).
        const float diff = v - delta2;
        const float sign = static_cast<float>((diff > 0) - (diff < 0));
        c.v = v - one_minus_beta2_ * delta2 * sign;
        break;
      }
    }
    c.step = lr_ * c.m / (std::sqrt(c.v) + tau_);
    return c;
  }

 private:
  ServerOptimizerKind kind_;
  float lr_, beta1_, one_minus_beta1_, beta2_, one_minus_beta2_, tau_;
};

}  // namespace

ServerOptimizer::ServerOptimizer(size_t dim, ServerOptimizerConfig cfg)
    : cfg_(cfg), dim_(dim), state_(StateSize(dim, cfg), 0.0f) {
  // v starts at tau^2, the smallest v_{-1} the paper allows; m at 0.
  if (IsAdaptive(cfg_.kind)) {
    std::fill(state_.begin() + static_cast<std::ptrdiff_t>(dim_), state_.end(),
              cfg_.tau * cfg_.tau);
  }
}

Status ServerOptimizer::Step(std::span<float> avg) {
  if (avg.size() != dim_) {
    return InvalidArgumentError("server step has dimension " + std::to_string(avg.size()) +
                                ", model has " + std::to_string(dim_));
  }
  if (IsAdaptive(cfg_.kind)) {
    const AdaptiveRule rule(cfg_);
    float* m = state_.data();
    float* v = state_.data() + dim_;
    for (size_t j = 0; j < dim_; ++j) {
      const AdaptiveCoordinate c = rule(m[j], v[j], avg[j]);
      if (!std::isfinite(c.m) || !std::isfinite(c.v) || !std::isfinite(c.step))
        return NotFinite(j, avg[j]);
    }
    for (size_t j = 0; j < dim_; ++j) {
      const AdaptiveCoordinate c = rule(m[j], v[j], avg[j]);
      m[j] = c.m;
      v[j] = c.v;
      avg[j] = c.step;
    }
    return OkStatus();
  }
  // kSgd: the arithmetic below is FedAvg / FedAvgM exactly as before the
  // adaptive kinds existed, so earlier runs reproduce bit for bit.
  if (cfg_.momentum != 0.0f) {
    for (size_t j = 0; j < dim_; ++j) {
      const float v = cfg_.momentum * state_[j] + avg[j];
      if (!std::isfinite(v) || !std::isfinite(cfg_.learning_rate * v)) return NotFinite(j, avg[j]);
    }
    for (size_t j = 0; j < dim_; ++j) {
      state_[j] = cfg_.momentum * state_[j] + avg[j];
      avg[j] = cfg_.learning_rate * state_[j];
    }
    return OkStatus();
  }
  for (size_t j = 0; j < dim_; ++j) {
    if (!std::isfinite(avg[j]) || !std::isfinite(cfg_.learning_rate * avg[j]))
      return NotFinite(j, avg[j]);
  }
  if (cfg_.learning_rate != 1.0f) {
    for (float& x : avg) x *= cfg_.learning_rate;
  }
  return OkStatus();
}

Status ServerOptimizer::SetState(std::span<const float> state) {
  if (state.size() != state_.size()) {
    return InvalidArgumentError("server optimizer state has size " + std::to_string(state.size()) +
                                ", expected " + std::to_string(state_.size()) + " (" +
                                std::string(ServerOptimizerName(cfg_.kind)) + ", dimension " +
                                std::to_string(dim_) + ")");
  }
  for (size_t j = 0; j < state.size(); ++j) {
    if (!std::isfinite(state[j])) {
      return InvalidArgumentError("server optimizer state value " + std::to_string(j) +
                                  " is not finite");
    }
    if (IsAdaptive(cfg_.kind) && j >= dim_ && state[j] < 0) {
      return InvalidArgumentError("server optimizer second moment " + std::to_string(j - dim_) +
                                  " is negative: " + std::to_string(state[j]));
    }
  }
  std::copy(state.begin(), state.end(), state_.begin());
  return OkStatus();
}

}  // namespace frugal
