#include "frugal/aggregate/fedavg.h"

#include <cmath>
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

ServerOptimizer::ServerOptimizer(size_t dim, ServerOptimizerConfig cfg)
    : cfg_(cfg), velocity_(cfg.momentum != 0.0f ? dim : 0, 0.0f) {}

void ServerOptimizer::Step(std::span<float> avg) {
  if (cfg_.momentum != 0.0f) {
    for (size_t j = 0; j < avg.size(); ++j) {
      velocity_[j] = cfg_.momentum * velocity_[j] + avg[j];
      avg[j] = cfg_.learning_rate * velocity_[j];
    }
  } else if (cfg_.learning_rate != 1.0f) {
    for (float& x : avg) x *= cfg_.learning_rate;
  }
}

Status ServerOptimizer::SetVelocity(std::span<const float> v) {
  if (v.size() != velocity_.size()) {
    return InvalidArgumentError("server momentum state has size " + std::to_string(v.size()) +
                                ", expected " + std::to_string(velocity_.size()));
  }
  std::copy(v.begin(), v.end(), velocity_.begin());
  return OkStatus();
}

}  // namespace frugal
