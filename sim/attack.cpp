#include "frugal/sim/attack.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "frugal/core/random.h"

namespace frugal::sim {
namespace {

constexpr size_t kTriggerSide = 4;

struct KindName {
  AttackKind kind;
  std::string_view name;
};
constexpr KindName kKinds[] = {{AttackKind::kNone, "none"},           {AttackKind::kSignFlip, "sign_flip"},
                               {AttackKind::kScaling, "scaling"},     {AttackKind::kGaussian, "gaussian"},
                               {AttackKind::kAlie, "alie"},           {AttackKind::kAlieFlanders, "alie_flanders"},
                               {AttackKind::kIpm, "ipm"},
                               {AttackKind::kLabelFlip, "label_flip"}, {AttackKind::kBackdoor, "backdoor"}};

// Copies data[rows] into a new data set of the same form.
Dataset CopyRows(const Dataset& data, std::span<const uint32_t> rows) {
  Dataset out;
  out.num_features = data.num_features;
  out.num_classes = data.num_classes;
  out.code_divisor = data.code_divisor;
  const size_t f = data.num_features;
  if (data.coded()) {
    out.codes.resize(rows.size() * f);
    for (size_t k = 0; k < rows.size(); ++k) std::memcpy(&out.codes[k * f], &data.codes[rows[k] * f], f);
  } else {
    out.features.resize(rows.size() * f);
    for (size_t k = 0; k < rows.size(); ++k) std::memcpy(&out.features[k * f], data.row(rows[k]), f * sizeof(float));
  }
  out.labels.resize(rows.size());
  for (size_t k = 0; k < rows.size(); ++k) out.labels[k] = data.labels[rows[k]];
  return out;
}

Status CheckRows(const Dataset& data, std::span<const uint32_t> rows) {
  for (uint32_t r : rows) {
    if (r >= data.size()) {
      return InvalidArgumentError("row " + std::to_string(r) + " is outside a data set of " +
                                  std::to_string(data.size()));
    }
  }
  return OkStatus();
}

}  // namespace

std::string_view AttackKindName(AttackKind kind) {
  for (const auto& k : kKinds) {
    if (k.kind == kind) return k.name;
  }
  return "?";
}

Result<AttackKind> ParseAttackKind(std::string_view name) {
  for (const auto& k : kKinds) {
    if (k.name == name) return k.kind;
  }
  return InvalidArgumentError("attack.kind must be none, sign_flip, scaling, gaussian, alie, alie_flanders, ipm, "
                              "label_flip or backdoor, got '" + std::string(name) + "'");
}

std::vector<bool> ChooseAttackers(size_t population, double fraction, uint64_t seed) {
  const auto wanted = static_cast<size_t>(std::llround(fraction * static_cast<double>(population)));
  const size_t count = std::min(population, wanted);
  std::vector<uint32_t> order(population);
  std::iota(order.begin(), order.end(), 0u);
  // The first `count` places of a Fisher-Yates shuffle: a uniform subset.
  Rng rng(seed);
  for (size_t i = 0; i < count; ++i) {
    const size_t j = i + static_cast<size_t>(rng.UniformInt(population - i));
    std::swap(order[i], order[j]);
  }
  std::vector<bool> mask(population, false);
  for (size_t i = 0; i < count; ++i) mask[order[i]] = true;
  return mask;
}

double PhiInverse(double p) {
  // Acklam's rational approximation (relative error 1.15e-9), refined by one
  // Halley step on erfc, which is accurate to double precision.
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                 1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                 6.680131188771972e+01, -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                 -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                 3.754408661907416e+00};
  constexpr double kLow = 0.02425;
  double x;
  if (p < kLow) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - kLow) {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const double q = std::sqrt(-2 * std::log1p(-p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
  const double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

double AlieZ(size_t n, size_t m) {
  if (m == 0 || m >= n) return 0;
  const auto s = static_cast<double>(n / 2 + 1) - static_cast<double>(m);
  const double honest = static_cast<double>(n - m);
  const double p = std::clamp((honest - s) / honest, 1e-6, 1 - 1e-6);
  return PhiInverse(p);
}

double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

double FlandersZ(size_t n, size_t m) {
  if (m == 0 || m >= n) return 0;
  const auto s = static_cast<double>(n / 2 + 1) - static_cast<double>(m);
  const double honest = static_cast<double>(n - m);
  return Phi((honest - s) / honest);
}

DeltaMoments Moments(std::span<const std::span<const float>> deltas) {
  DeltaMoments out;
  out.count = deltas.size();
  const size_t dim = deltas.front().size();
  out.mean.assign(dim, 0.0);
  out.std.assign(dim, 0.0);
  for (const auto& d : deltas) {
    for (size_t j = 0; j < dim; ++j) out.mean[j] += d[j];
  }
  const double inv = 1.0 / static_cast<double>(out.count);
  for (double& v : out.mean) v *= inv;
  // Two passes: the variance of nearly equal updates stays exact.
  for (const auto& d : deltas) {
    for (size_t j = 0; j < dim; ++j) {
      const double dev = d[j] - out.mean[j];
      out.std[j] += dev * dev;
    }
  }
  for (double& v : out.std) v = std::sqrt(v * inv);
  return out;
}

void SignFlip(std::span<float> delta, double scale) { ScaleDelta(delta, -scale); }

void ScaleDelta(std::span<float> delta, double scale) {
  const auto s = static_cast<float>(scale);
  for (float& v : delta) v *= s;
}

void GaussianDelta(std::span<float> delta, double sigma, uint64_t seed) {
  Rng rng(seed);
  for (float& v : delta) v = static_cast<float>(sigma * rng.Normal());
}

void AlieDelta(const DeltaMoments& honest, double z, std::span<float> delta) {
  for (size_t j = 0; j < delta.size(); ++j) delta[j] = static_cast<float>(honest.mean[j] - z * honest.std[j]);
}

void FlandersAlieDelta(const DeltaMoments& senders, double z, std::span<float> delta) {
  for (size_t j = 0; j < delta.size(); ++j) {
    delta[j] = static_cast<float>(senders.mean[j] - z * std::sqrt(senders.std[j]));
  }
}

void IpmDelta(const DeltaMoments& honest, double epsilon, std::span<float> delta) {
  for (size_t j = 0; j < delta.size(); ++j) delta[j] = static_cast<float>(-epsilon * honest.mean[j]);
}

Status CheckTriggerFits(size_t num_features) {
  const auto side = static_cast<size_t>(std::llround(std::sqrt(static_cast<double>(num_features))));
  if (side * side != num_features || side < kTriggerSide) {
    return InvalidArgumentError("the backdoor trigger needs square images of side >= 4; examples have " +
                                std::to_string(num_features) + " features");
  }
  return OkStatus();
}

void StampTrigger(Dataset& data, size_t row) {
  const auto side = static_cast<size_t>(std::llround(std::sqrt(static_cast<double>(data.num_features))));
  for (size_t r = side - kTriggerSide; r < side; ++r) {
    for (size_t c = side - kTriggerSide; c < side; ++c) {
      const size_t at = row * data.num_features + r * side + c;
      if (data.coded()) data.codes[at] = 255; else data.features[at] = 1.0f;
    }
  }
}

Result<Dataset> PoisonedCopy(const Dataset& data, std::span<const uint32_t> rows, const AttackConfig& attack,
                             uint64_t seed, std::vector<uint32_t>* poisoned) {
  FRUGAL_RETURN_IF_ERROR(CheckRows(data, rows));
  Dataset out = CopyRows(data, rows);
  std::vector<uint32_t> changed;
  if (attack.kind == AttackKind::kLabelFlip) {
    const auto top = static_cast<int32_t>(data.num_classes) - 1;
    for (size_t k = 0; k < out.size(); ++k) {
      out.labels[k] = top - out.labels[k];
      changed.push_back(static_cast<uint32_t>(k));
    }
  } else if (attack.kind == AttackKind::kBackdoor) {
    FRUGAL_RETURN_IF_ERROR(CheckTriggerFits(data.num_features));
    if (attack.target_label < 0 || static_cast<size_t>(attack.target_label) >= data.num_classes) {
      return InvalidArgumentError("attack.target_label " + std::to_string(attack.target_label) +
                                  " is not a class of the data set");
    }
    std::vector<uint32_t> order(out.size());
    std::iota(order.begin(), order.end(), 0u);
    Rng rng(seed);
    rng.Shuffle(std::span(order));
    const auto count = std::min(out.size(), static_cast<size_t>(std::llround(attack.poison_fraction *
                                                                             static_cast<double>(out.size()))));
    changed.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count));
    std::sort(changed.begin(), changed.end());
    for (uint32_t k : changed) {
      StampTrigger(out, k);
      out.labels[k] = attack.target_label;
    }
  }
  if (poisoned != nullptr) *poisoned = std::move(changed);
  return out;
}

Result<Dataset> TriggeredTestSet(const Dataset& data, std::span<const uint32_t> rows, int32_t target) {
  FRUGAL_RETURN_IF_ERROR(CheckRows(data, rows));
  FRUGAL_RETURN_IF_ERROR(CheckTriggerFits(data.num_features));
  std::vector<uint32_t> kept;
  for (uint32_t r : rows) {
    if (data.labels[r] != target) kept.push_back(r);
  }
  Dataset out = CopyRows(data, kept);
  for (size_t k = 0; k < out.size(); ++k) {
    StampTrigger(out, k);
    out.labels[k] = target;
  }
  return out;
}

}  // namespace frugal::sim
