#include "frugal/privacy/accountant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <string>

namespace frugal::privacy {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log(exp(a) + exp(b)) without overflow.
double LogAdd(double a, double b) {
  const double lo = std::min(a, b), hi = std::max(a, b);
  if (lo == -kInf) return hi;
  return std::log1p(std::exp(lo - hi)) + hi;
}

// log(exp(a) - exp(b)), a >= b; NaN when a < b (the series went wrong).
double LogSub(double a, double b) {
  if (a < b) return std::numeric_limits<double>::quiet_NaN();
  if (b == -kInf) return a;
  if (a == b) return -kInf;
  const double d = a - b;
  // expm1 overflows past ~709, where log(expm1(d)) is d to double precision.
  if (d > 700) return a;
  return std::log(std::expm1(d)) + b;
}

// log(erfc(x)), accurate where erfc(x) underflows (x beyond ~26).
double LogErfc(double x) {
  if (x < 25) return std::log(std::erfc(x));
  // Asymptotic series: erfc(x) = exp(-x²)/(x√π) (1 - 1/(2x²) + 3/(4x⁴) - 15/(8x⁶) + 105/(16x⁸) -
  // ...); at x >= 25 the next term is below 1e-15.
  const double r = 1.0 / (x * x);
  const double series = r * (-0.5 + r * (0.75 + r * (-1.875 + r * 6.5625)));
  return -x * x - std::log(x) - 0.5 * std::log(std::numbers::pi) + std::log1p(series);
}

// log A_α for integer α: the binomial expansion of E[(μ(z)/μ0(z))^α] (Mironov et
// al. 2019, §3.3), summed in log space.
double LogAInteger(double q, double sigma, int alpha) {
  const double log_q = std::log(q), log_1mq = std::log1p(-q);
  double log_a = -kInf;
  double log_binom = 0;  // log C(α, i), built term by term (no lgamma: it writes a global)
  for (int i = 0; i <= alpha; ++i) {
    if (i > 0)
      log_binom += std::log(static_cast<double>(alpha - i + 1)) - std::log(static_cast<double>(i));
    const double di = i;
    const double term =
        log_binom + di * log_q + (alpha - di) * log_1mq + (di * di - di) / (2 * sigma * sigma);
    log_a = LogAdd(log_a, term);
  }
  return log_a;
}

// log A_α for fractional α: the two-sided series split at z0 (Mironov et al.
// 2019, §3.3), run until both terms fall below e^-30.
double LogAFractional(double q, double sigma, double alpha) {
  double log_a0 = -kInf, log_a1 = -kInf;
  const double z0 = sigma * sigma * std::log(1 / q - 1) + 0.5;
  const double log_q = std::log(q), log_1mq = std::log1p(-q);
  const double log_half = std::log(0.5), sqrt2_sigma = std::numbers::sqrt2 * sigma;
  double log_abs_binom = 0;  // log |C(α, i)|
  bool binom_positive = true;
  // The terms decay like a Gaussian tail in i; a cap keeps absurd inputs finite.
  constexpr int kMaxTerms = 1 << 22;
  for (int i = 0; i < kMaxTerms; ++i) {
    if (i > 0) {
      const double factor = (alpha - i + 1) / i;
      log_abs_binom += std::log(std::fabs(factor));
      if (factor < 0) binom_positive = !binom_positive;
    }
    const double di = i, j = alpha - i;
    const double log_t0 = log_abs_binom + di * log_q + j * log_1mq;
    const double log_t1 = log_abs_binom + j * log_q + di * log_1mq;
    const double log_e0 = log_half + LogErfc((di - z0) / sqrt2_sigma);
    const double log_e1 = log_half + LogErfc((z0 - j) / sqrt2_sigma);
    const double log_s0 = log_t0 + (di * di - di) / (2 * sigma * sigma) + log_e0;
    const double log_s1 = log_t1 + (j * j - j) / (2 * sigma * sigma) + log_e1;
    if (binom_positive) {
      log_a0 = LogAdd(log_a0, log_s0);
      log_a1 = LogAdd(log_a1, log_s1);
    } else {
      log_a0 = LogSub(log_a0, log_s0);
      log_a1 = LogSub(log_a1, log_s1);
    }
    if (std::isnan(log_a0) || std::isnan(log_a1))
      return kInf;  // no usable bound: the order drops out
    if (std::max(log_s0, log_s1) < -30) break;
  }
  return LogAdd(log_a0, log_a1);
}

Status CheckRate(double q) {
  if (!(q >= 0 && q <= 1))
    return InvalidArgumentError("sampling rate must be in [0, 1], got " + std::to_string(q));
  return OkStatus();
}

Status CheckNoise(double z) {
  if (!(z >= 0) || std::isinf(z)) {
    return InvalidArgumentError("noise multiplier must be finite and >= 0, got " +
                                std::to_string(z));
  }
  return OkStatus();
}

Status CheckDelta(double delta) {
  if (!(delta > 0 && delta < 1))
    return InvalidArgumentError("delta must be in (0, 1), got " + std::to_string(delta));
  return OkStatus();
}

std::vector<double> OrdersOrDefault(std::span<const double> orders) {
  return orders.empty() ? DefaultRdpOrders() : std::vector<double>(orders.begin(), orders.end());
}

}  // namespace

std::vector<double> DefaultRdpOrders() {
  std::vector<double> orders;
  // 1 + x/10.0 exactly as Opacus writes it, so the integers among them (2.0, 3.0, ...)
  // take the integer expansion there and here alike.
  for (int x = 1; x < 100; ++x) orders.push_back(1.0 + x / 10.0);
  for (int a = 12; a < 64; ++a) orders.push_back(a);
  return orders;
}

double GaussianRdp(double noise_multiplier, double order) {
  return order / (2 * noise_multiplier * noise_multiplier);
}

Result<double> SubsampledGaussianRdp(double sampling_rate, double noise_multiplier, double order) {
  FRUGAL_RETURN_IF_ERROR(CheckRate(sampling_rate));
  FRUGAL_RETURN_IF_ERROR(CheckNoise(noise_multiplier));
  if (!(order > 1))
    return InvalidArgumentError("RDP order must be > 1, got " + std::to_string(order));
  if (sampling_rate == 0) return 0.0;
  if (noise_multiplier == 0 || std::isinf(order)) return kInf;
  if (sampling_rate == 1) return GaussianRdp(noise_multiplier, order);
  double log_a;
  if (order == std::floor(order) && order <= std::numeric_limits<int>::max()) {
    log_a = LogAInteger(sampling_rate, noise_multiplier, static_cast<int>(order));
  } else {
    log_a = LogAFractional(sampling_rate, noise_multiplier, order);
  }
  // RDP is never negative; rounding can leave log A a hair below zero when q is tiny.
  return std::max(log_a / (order - 1), 0.0);
}

Result<std::vector<double>> ComputeRdp(double sampling_rate, double noise_multiplier,
                                       uint64_t steps, std::span<const double> orders) {
  std::vector<double> rdp;
  rdp.reserve(orders.size());
  for (double order : orders) {
    FRUGAL_ASSIGN_OR_RETURN(double one,
                            SubsampledGaussianRdp(sampling_rate, noise_multiplier, order));
    rdp.push_back(steps == 0 ? 0.0 : one * static_cast<double>(steps));
  }
  return rdp;
}

Result<PrivacySpent> RdpToEpsilon(std::span<const double> orders, std::span<const double> rdp,
                                  double delta) {
  FRUGAL_RETURN_IF_ERROR(CheckDelta(delta));
  if (orders.size() != rdp.size() || orders.empty()) {
    return InvalidArgumentError("RDP needs one value per order (" + std::to_string(orders.size()) +
                                " orders, " + std::to_string(rdp.size()) + " values)");
  }
  PrivacySpent best{kInf, std::numeric_limits<double>::quiet_NaN()};
  const double log_delta = std::log(delta);
  for (size_t i = 0; i < orders.size(); ++i) {
    const double a = orders[i];
    if (!(a > 1)) return InvalidArgumentError("RDP order must be > 1, got " + std::to_string(a));
    if (std::isnan(rdp[i]) || rdp[i] < 0) return InvalidArgumentError("RDP values must be >= 0");
    const double eps = rdp[i] - (log_delta + std::log(a)) / (a - 1) + std::log((a - 1) / a);
    if (eps < best.epsilon) best = {eps, a};
  }
  // A negative bound still implies (0, δ)-DP.
  best.epsilon = std::max(best.epsilon, 0.0);
  return best;
}

Result<PrivacySpent> SubsampledGaussianEpsilon(double sampling_rate, double noise_multiplier,
                                               uint64_t steps, double delta,
                                               std::span<const double> orders) {
  const std::vector<double> used = OrdersOrDefault(orders);
  FRUGAL_ASSIGN_OR_RETURN(std::vector<double> rdp,
                          ComputeRdp(sampling_rate, noise_multiplier, steps, used));
  return RdpToEpsilon(used, rdp, delta);
}

Result<double> NoiseMultiplierForEpsilon(double target_epsilon, double sampling_rate,
                                         uint64_t steps, double delta,
                                         std::span<const double> orders) {
  if (!(target_epsilon > 0) || std::isinf(target_epsilon)) {
    return InvalidArgumentError("target epsilon must be finite and > 0, got " +
                                std::to_string(target_epsilon));
  }
  FRUGAL_RETURN_IF_ERROR(CheckRate(sampling_rate));
  FRUGAL_RETURN_IF_ERROR(CheckDelta(delta));
  const std::vector<double> used = OrdersOrDefault(orders);
  return SmallestNoiseForEpsilon(target_epsilon, [&](double z) -> Result<double> {
    FRUGAL_ASSIGN_OR_RETURN(PrivacySpent s,
                            SubsampledGaussianEpsilon(sampling_rate, z, steps, delta, used));
    return s.epsilon;
  });
}

Result<double> SmallestNoiseForEpsilon(double target_epsilon,
                                       const std::function<Result<double>(double)>& epsilon_at) {
  if (!(target_epsilon > 0) || std::isinf(target_epsilon)) {
    return InvalidArgumentError("target epsilon must be finite and > 0, got " +
                                std::to_string(target_epsilon));
  }
  // ε falls as z grows: bracket the target by doubling, then bisect.
  constexpr double kMaxNoise = 1e4;
  double hi = 1;
  for (;;) {
    FRUGAL_ASSIGN_OR_RETURN(double eps, epsilon_at(hi));
    if (eps <= target_epsilon) break;
    if (hi >= kMaxNoise) {
      return OutOfRangeError("no noise multiplier up to 1e4 reaches epsilon " +
                             std::to_string(target_epsilon));
    }
    hi *= 2;
  }
  double lo = hi / 2;
  for (;;) {
    FRUGAL_ASSIGN_OR_RETURN(double eps, epsilon_at(lo));
    if (eps > target_epsilon) break;
    hi = lo;
    if (lo < 1e-6) return hi;  // almost no noise already meets the target (q or steps are tiny)
    lo /= 2;
  }
  while (hi - lo > 1e-6 * hi) {
    const double mid = 0.5 * (lo + hi);
    FRUGAL_ASSIGN_OR_RETURN(double eps, epsilon_at(mid));
    (eps <= target_epsilon ? hi : lo) = mid;
  }
  return hi;
}

namespace {

// The base mechanism's RDP at order j, refused when it is not a number >= 0
// (both subsampling bounds take it from the caller).
Result<double> CheckedBaseRdp(const std::function<double(uint32_t)>& base_rdp, uint32_t j) {
  const double e = base_rdp(j);
  if (!(e >= 0)) {
    return InvalidArgumentError("the base mechanism's RDP at order " + std::to_string(j) + " must be >= 0, got " +
                                std::to_string(e));
  }
  return e;
}

}  // namespace

Result<double> PoissonSubsampledRdpBound(double sampling_rate, uint32_t order,
                                         const std::function<double(uint32_t)>& base_rdp) {
  FRUGAL_RETURN_IF_ERROR(CheckRate(sampling_rate));
  if (order < 2) return InvalidArgumentError("the general subsampling bound needs an integer order >= 2");
  const double q = sampling_rate;
  if (q == 0) return 0.0;
  auto base = [&](uint32_t j) { return CheckedBaseRdp(base_rdp, j); };
  if (q == 1) return base(order);
  const double a = order, log_q = std::log(q), log_1mq = std::log1p(-q);
  // j = 0 and 1 together: (1-q)^(α-1) (1 + (α-1) q).
  double log_sum = (a - 1) * log_1mq + std::log1p((a - 1) * q);
  double log_binom = std::log(a);  // log C(α, j), built term by term (no lgamma: it writes a global)
  for (uint32_t j = 2; j <= order; ++j) {
    log_binom += std::log(a - j + 1) - std::log(static_cast<double>(j));
    FRUGAL_ASSIGN_OR_RETURN(const double eps_j, base(j));
    if (std::isinf(eps_j)) return kInf;
    const double dj = j;
    const double weight = j == 2 ? eps_j : std::log(3.0) + (dj - 1) * eps_j;
    log_sum = LogAdd(log_sum, log_binom + dj * log_q + (a - dj) * log_1mq + weight);
  }
  // The j = 0, 1 terms alone sum to at most 1; rounding can leave the log a hair below 0.
  return std::max(log_sum / (a - 1), 0.0);
}

namespace {

// A bound given at integer orders >= 2, extended to `orders` (> 1, at most
// 2^20): the chord of the log-moment K(a) = (a - 1) eps(a) between integers
// (K is convex, K(1) = 0), so any bound at the integers bounds the orders between.
Result<std::vector<double>> AtOrdersByChord(std::span<const double> orders,
                                            const std::function<Result<double>(uint32_t)>& bound_at) {
  constexpr double kMaxOrder = 1 << 20;
  // The bound at each integer order needed, once: index j holds order j.
  std::vector<double> at_integer;
  auto integer_bound = [&](uint32_t j) -> Result<double> {
    if (at_integer.size() <= j) at_integer.resize(j + 1, -1.0);
    if (at_integer[j] < 0) {
      FRUGAL_ASSIGN_OR_RETURN(at_integer[j], bound_at(j));
    }
    return at_integer[j];
  };
  std::vector<double> out;
  out.reserve(orders.size());
  for (double order : orders) {
    if (!(order > 1) || order > kMaxOrder) {
      return InvalidArgumentError("RDP order must be in (1, 2^20] for the general subsampling bound, got " +
                                  std::to_string(order));
    }
    const double lo = std::floor(order), hi = std::ceil(order);
    FRUGAL_ASSIGN_OR_RETURN(const double at_hi, integer_bound(static_cast<uint32_t>(hi)));
    if (lo == hi) {
      out.push_back(at_hi);
      continue;
    }
    // Between integers, the chord of the bounded log-moment K(a) = (a - 1) eps(a) (K(1) = 0).
    double at_lo = 0;
    if (lo >= 2) {
      FRUGAL_ASSIGN_OR_RETURN(at_lo, integer_bound(static_cast<uint32_t>(lo)));
    }
    if (std::isinf(at_hi)) {
      out.push_back(at_hi);
      continue;
    }
    const double k_lo = (lo - 1) * at_lo, k_hi = (hi - 1) * at_hi;
    out.push_back(std::max(((hi - order) * k_lo + (order - lo) * k_hi) / (order - 1), 0.0));
  }
  return out;
}

// log(e^x - 1) for x > 0, without overflow past ~709.
double LogExpm1(double x) { return x > 30 ? x + std::log1p(-std::exp(-x)) : std::log(std::expm1(x)); }

}  // namespace

Result<std::vector<double>> PoissonSubsampledRdpBound(double sampling_rate, std::span<const double> orders,
                                                      const std::function<double(uint32_t)>& base_rdp) {
  return AtOrdersByChord(orders, [&](uint32_t j) { return PoissonSubsampledRdpBound(sampling_rate, j, base_rdp); });
}

Result<double> FixedSizeSubsampledRdpBound(double sampling_rate, uint32_t order,
                                           const std::function<double(uint32_t)>& base_rdp,
                                           double base_rdp_infinity) {
  FRUGAL_RETURN_IF_ERROR(CheckRate(sampling_rate));
  if (order < 2) return InvalidArgumentError("the fixed-size subsampling bound needs an integer order >= 2");
  if (!(base_rdp_infinity >= 0)) {
    return InvalidArgumentError("the base mechanism's RDP of order infinity must be >= 0, got " +
                                std::to_string(base_rdp_infinity));
  }
  const double g = sampling_rate;
  if (g == 0) return 0.0;
  auto base = [&](uint32_t j) { return CheckedBaseRdp(base_rdp, j); };
  FRUGAL_ASSIGN_OR_RETURN(const double at_order, base(order));
  if (g == 1) return at_order;
  const double a = order, log_g = std::log(g);
  // log min{2, (e^{ε(∞)} - 1)^j}: j log(e^{ε(∞)} - 1), capped at log 2.
  const double log_em1_inf = base_rdp_infinity == 0 ? -kInf
                             : std::isinf(base_rdp_infinity) ? kInf
                                                             : LogExpm1(base_rdp_infinity);
  auto log_cap = [&](double j) { return std::min(std::log(2.0), j * log_em1_inf); };
  // Σ_{j>=2} of the theorem's terms (the leading 1 is added at the end with log1p).
  double log_sum = -kInf;
  double log_binom = std::log(a);  // log C(α, j), built term by term (no lgamma: it writes a global)
  for (uint32_t j = 2; j <= order; ++j) {
    log_binom += std::log(a - j + 1) - std::log(static_cast<double>(j));
    FRUGAL_ASSIGN_OR_RETURN(const double eps_j, base(j));
    if (std::isinf(eps_j)) return at_order;  // the series is unbounded; the base mechanism's own RDP still holds
    const double dj = j;
    double log_weight;
    if (j == 2) {
      // min{4 (e^{ε(2)} - 1), e^{ε(2)} min{2, (e^{ε(∞)} - 1)²}}; ε(2) = 0 makes the first 0.
      const double first = eps_j == 0 ? -kInf : std::log(4.0) + LogExpm1(eps_j);
      log_weight = std::min(first, eps_j + log_cap(2));
    } else {
      log_weight = (dj - 1) * eps_j + log_cap(dj);
    }
    log_sum = LogAdd(log_sum, log_binom + dj * log_g + log_weight);
  }
  // log(1 + e^{log_sum}) without overflow.
  const double log_total = log_sum > 30 ? log_sum + std::log1p(std::exp(-log_sum)) : std::log1p(std::exp(log_sum));
  return std::min(std::max(log_total / (a - 1), 0.0), at_order);
}

Result<std::vector<double>> FixedSizeSubsampledRdpBound(double sampling_rate, std::span<const double> orders,
                                                        const std::function<double(uint32_t)>& base_rdp,
                                                        double base_rdp_infinity) {
  return AtOrdersByChord(orders, [&](uint32_t j) {
    return FixedSizeSubsampledRdpBound(sampling_rate, j, base_rdp, base_rdp_infinity);
  });
}

double GaussianReplaceOneRdp(double noise_multiplier, double order) {
  return 2 * order / (noise_multiplier * noise_multiplier);
}

std::string_view SamplingSchemeName(SamplingScheme s) {
  return s == SamplingScheme::kPoisson ? "poisson" : "fixed_size";
}

std::string_view SamplingAdjacencyName(SamplingScheme s) {
  return s == SamplingScheme::kPoisson ? "add_remove_one" : "replace_one";
}

Result<std::vector<double>> ComputeRdp(SamplingScheme scheme, double sampling_rate, double noise_multiplier,
                                       uint64_t steps, std::span<const double> orders) {
  if (scheme == SamplingScheme::kPoisson) return ComputeRdp(sampling_rate, noise_multiplier, steps, orders);
  FRUGAL_RETURN_IF_ERROR(CheckNoise(noise_multiplier));
  const double z = noise_multiplier;
  FRUGAL_ASSIGN_OR_RETURN(std::vector<double> rdp,
                          FixedSizeSubsampledRdpBound(sampling_rate, orders, [z](uint32_t j) {
                            return z == 0 ? kInf : GaussianReplaceOneRdp(z, static_cast<double>(j));
                          }));
  for (double& v : rdp) v = steps == 0 ? 0.0 : v * static_cast<double>(steps);
  return rdp;
}

Result<PrivacySpent> SubsampledGaussianEpsilon(SamplingScheme scheme, double sampling_rate, double noise_multiplier,
                                               uint64_t steps, double delta, std::span<const double> orders) {
  const std::vector<double> used = OrdersOrDefault(orders);
  FRUGAL_ASSIGN_OR_RETURN(std::vector<double> rdp, ComputeRdp(scheme, sampling_rate, noise_multiplier, steps, used));
  return RdpToEpsilon(used, rdp, delta);
}

Result<double> NoiseMultiplierForEpsilon(SamplingScheme scheme, double target_epsilon, double sampling_rate,
                                         uint64_t steps, double delta, std::span<const double> orders) {
  if (scheme == SamplingScheme::kPoisson) {
    return NoiseMultiplierForEpsilon(target_epsilon, sampling_rate, steps, delta, orders);
  }
  FRUGAL_RETURN_IF_ERROR(CheckRate(sampling_rate));
  FRUGAL_RETURN_IF_ERROR(CheckDelta(delta));
  const std::vector<double> used = OrdersOrDefault(orders);
  return SmallestNoiseForEpsilon(target_epsilon, [&](double z) -> Result<double> {
    FRUGAL_ASSIGN_OR_RETURN(PrivacySpent s, SubsampledGaussianEpsilon(scheme, sampling_rate, z, steps, delta, used));
    return s.epsilon;
  });
}

RdpAccountant::RdpAccountant(std::span<const double> orders)
    : orders_(OrdersOrDefault(orders)), rdp_(orders_.size(), 0.0) {}

Status RdpAccountant::Compose(double sampling_rate, double noise_multiplier, uint64_t steps) {
  FRUGAL_ASSIGN_OR_RETURN(std::vector<double> add,
                          ComputeRdp(sampling_rate, noise_multiplier, steps, orders_));
  for (size_t i = 0; i < rdp_.size(); ++i) rdp_[i] += add[i];
  composed_ = composed_ || steps > 0;
  return OkStatus();
}

Status RdpAccountant::Compose(SamplingScheme scheme, double sampling_rate, double noise_multiplier, uint64_t steps) {
  FRUGAL_ASSIGN_OR_RETURN(std::vector<double> add,
                          ComputeRdp(scheme, sampling_rate, noise_multiplier, steps, orders_));
  for (size_t i = 0; i < rdp_.size(); ++i) rdp_[i] += add[i];
  composed_ = composed_ || steps > 0;
  return OkStatus();
}

Status RdpAccountant::ComposeRdp(std::span<const double> rdp) {
  if (rdp.size() != rdp_.size()) {
    return InvalidArgumentError("RDP has " + std::to_string(rdp.size()) + " values, the accountant has " +
                                std::to_string(rdp_.size()) + " orders");
  }
  for (double v : rdp) {
    if (!(v >= 0)) return InvalidArgumentError("RDP values must be >= 0 (got " + std::to_string(v) + ")");
  }
  for (size_t i = 0; i < rdp_.size(); ++i) rdp_[i] += rdp[i];
  composed_ = true;
  return OkStatus();
}

Result<PrivacySpent> RdpAccountant::Spent(double delta) const {
  FRUGAL_RETURN_IF_ERROR(CheckDelta(delta));
  // The conversion's slack terms would report a small ε for nothing released.
  if (!composed_) return PrivacySpent{0.0, std::numeric_limits<double>::quiet_NaN()};
  return RdpToEpsilon(orders_, rdp_, delta);
}

}  // namespace frugal::privacy
