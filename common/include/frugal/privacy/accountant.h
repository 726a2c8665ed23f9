// Rényi-DP accounting for the Gaussian mechanism under Poisson subsampling
// (Mironov, Talwar, Zhang 2019), composed over rounds and converted to (ε, δ);
// and its inverse, the noise multiplier that reaches a target ε. Pure numeric
// code: no state beyond what RdpAccountant holds, thread-compatible.
//
// What the bound assumes, and how Frugal's rounds differ from it:
//  - Adjacency is add/remove one client (user-level DP): a client's whole
//    contribution to a round is one update, clipped to L2 norm C, and the noise
//    added to the sum of clipped updates is Gaussian with std z·C (z is the
//    noise multiplier). The released values are the noisy sums only.
//  - Each client takes part in each round independently with probability q
//    (Poisson sampling), and which clients took part stays hidden. For rounds
//    that select a fixed number m of N eligible clients uniformly without
//    replacement, SamplingScheme::kFixedSize composes the bound of Wang, Balle
//    & Kasiviswanathan 2019 instead, under replace-one adjacency (below).
//    Over-selected clients count in m; a dropped client's
//    update is simply absent, which does not weaken central noise, but in
//    distributed DP its share of the noise is lost and z must be the noise that
//    actually reached the sum (the caller's job).
//  - Eligibility must not depend on the data, and every round is accounted,
//    including rounds whose result is later discarded.
// Numbers match Opacus (analysis/rdp.py) and Google's dp_accounting: integer
// orders by the binomial expansion in log space, fractional orders by the
// series of Mironov et al. §3.3, and ε from the improved conversion
// ε = rdp − (ln δ + ln α)/(α − 1) + ln((α − 1)/α) minimized over the orders.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"

namespace frugal::privacy {

// How a round's clients were sampled, which fixes the bound (and the
// adjacency) the accountant composes:
//  - kPoisson: each client independently with probability q; the Poisson
//    bounds below (Mironov et al. for the Gaussian, Zhu & Wang for any
//    mechanism), add/remove-one-client adjacency.
//  - kFixedSize: exactly m of N clients uniformly without replacement,
//    γ = m/N; Wang, Balle & Kasiviswanathan 2019, Theorem 9, which holds for
//    replace-one-client adjacency: the base mechanism's RDP is for one
//    client's update replaced by another's (the sum moves by up to 2C).
enum class SamplingScheme : uint8_t { kPoisson, kFixedSize };
// "poisson" or "fixed_size".
std::string_view SamplingSchemeName(SamplingScheme s);
// The adjacency an ε under that scheme is for: "add_remove_one" or "replace_one".
std::string_view SamplingAdjacencyName(SamplingScheme s);

// Opacus's default orders: 1.1, 1.2, ..., 10.9, then 12, 13, ..., 63.
std::vector<double> DefaultRdpOrders();

// RDP of order `order` (> 1) of the unsampled Gaussian mechanism with noise
// multiplier z (> 0): order / (2 z²).
double GaussianRdp(double noise_multiplier, double order);

// RDP of one step of the Poisson-subsampled Gaussian mechanism, sampling rate
// q in [0, 1], noise multiplier z >= 0, order > 1. q = 0 gives 0, z = 0 gives
// +inf, q = 1 gives GaussianRdp. Invalid arguments (NaN, out of range) are an
// error.
Result<double> SubsampledGaussianRdp(double sampling_rate, double noise_multiplier, double order);

// An upper bound on the RDP of order `order` (an integer >= 2) of ANY
// mechanism M run on a Poisson sample of rate q in [0, 1], from M's own RDP at
// the integer orders 2..order, `base_rdp(j)` (>= 0, +inf allowed): Zhu & Wang
// 2019, "Poisson subsampled Rényi differential privacy", Theorem 6:
//   1/(α-1) log( (1-q)^(α-1) (αq - q + 1) + C(α,2) q² (1-q)^(α-2) e^{ε(2)}
//                + 3 Σ_{j=3..α} C(α,j) q^j (1-q)^(α-j) e^{(j-1) ε(j)} ),
// summed in log space. Adjacency is add/remove one record, and M's RDP must
// hold in both directions. q = 0 gives 0 and q = 1 gives base_rdp(order) (the
// sample is everything). For the Gaussian it exceeds the exact value
// (SubsampledGaussianRdp) by at most log(3)/(α-1). Invalid arguments (q
// outside [0, 1], order < 2, a NaN or negative base value) are an error.
Result<double> PoissonSubsampledRdpBound(double sampling_rate, uint32_t order,
                                         const std::function<double(uint32_t)>& base_rdp);

// The same bound at each of `orders` (> 1): at an integer order directly; at
// a fractional one a between integers j < a < j + 1, from the log-moment
// K(a) = (a - 1) eps(a), which is convex in a (a Rényi divergence times
// a - 1 is: van Erven & Harremoës 2014), so it lies below the chord of the bounds at j and j + 1
// (K(1) = 0): eps(a) <= ((j + 1 - a) K(j) + (a - j) K(j + 1)) / (a - 1).
// Orders past 2^20 are refused (the sum has one term per integer up to the order).
Result<std::vector<double>> PoissonSubsampledRdpBound(double sampling_rate, std::span<const double> orders,
                                                      const std::function<double(uint32_t)>& base_rdp);

// An upper bound on the RDP of order `order` (an integer >= 2) of ANY
// mechanism M run on a sample of exactly m of N records drawn uniformly
// without replacement, γ = m/N in [0, 1], from M's RDP under replace-one
// adjacency at the integer orders 2..order, `base_rdp(j)` (>= 0, +inf
// allowed), and its RDP of order ∞ (+inf for the Gaussian and the Skellam):
// Wang, Balle & Kasiviswanathan 2019, "Subsampled Rényi differential privacy
// and analytical moments accountant", Theorem 9:
//   1/(α-1) log( 1 + γ² C(α,2) min{4(e^{ε(2)} - 1), e^{ε(2)} min{2, (e^{ε(∞)} - 1)²}}
//                + Σ_{j=3..α} γ^j C(α,j) e^{(j-1) ε(j)} min{2, (e^{ε(∞)} - 1)^j} ),
// summed in log space, and never more than base_rdp(order) (subsampling is
// post-processing of replace-one neighbours coupled to stay neighbours or
// equal, and Rényi divergence is jointly quasi-convex). γ = 0 gives 0, γ = 1
// base_rdp(order). Invalid arguments (γ outside [0, 1], order < 2, a NaN or
// negative base value) are an error.
Result<double> FixedSizeSubsampledRdpBound(double sampling_rate, uint32_t order,
                                           const std::function<double(uint32_t)>& base_rdp,
                                           double base_rdp_infinity = std::numeric_limits<double>::infinity());

// The same at each of `orders` (> 1, at most 2^20), fractional orders by the
// chord of the log-moment as PoissonSubsampledRdpBound's.
Result<std::vector<double>> FixedSizeSubsampledRdpBound(double sampling_rate, std::span<const double> orders,
                                                        const std::function<double(uint32_t)>& base_rdp,
                                                        double base_rdp_infinity =
                                                            std::numeric_limits<double>::infinity());

// RDP of order j of the unsampled Gaussian under replace-one adjacency (L2
// sensitivity 2C against noise z C): 2 j / z².
double GaussianReplaceOneRdp(double noise_multiplier, double order);

// RDP at each order after `steps` identical steps (composition adds RDP).
Result<std::vector<double>> ComputeRdp(double sampling_rate, double noise_multiplier,
                                       uint64_t steps, std::span<const double> orders);

struct PrivacySpent {
  double epsilon = 0;  // +inf when no order gives a finite bound
  double order = 0;    // the order at which epsilon is smallest (NaN when epsilon is +inf)
};

// (ε, δ) from RDP values at the given orders (same length, orders > 1), δ in (0, 1).
Result<PrivacySpent> RdpToEpsilon(std::span<const double> orders, std::span<const double> rdp,
                                  double delta);

// The same for a sampling scheme: kPoisson is ComputeRdp above; kFixedSize
// is FixedSizeSubsampledRdpBound over GaussianReplaceOneRdp.
Result<std::vector<double>> ComputeRdp(SamplingScheme scheme, double sampling_rate, double noise_multiplier,
                                       uint64_t steps, std::span<const double> orders);

// ε after `steps` steps of the subsampled Gaussian over `orders` (Opacus's
// defaults when empty).
Result<PrivacySpent> SubsampledGaussianEpsilon(double sampling_rate, double noise_multiplier,
                                               uint64_t steps, double delta,
                                               std::span<const double> orders = {});

// The same under a sampling scheme (kPoisson: the function above).
Result<PrivacySpent> SubsampledGaussianEpsilon(SamplingScheme scheme, double sampling_rate, double noise_multiplier,
                                               uint64_t steps, double delta, std::span<const double> orders = {});

// The smallest noise multiplier (to a relative 1e-6, rounded up so the result
// meets the target) whose ε after `steps` steps at rate q is at most
// target_epsilon. OutOfRange when even z = 1e4 does not reach it.
Result<double> NoiseMultiplierForEpsilon(double target_epsilon, double sampling_rate,
                                         uint64_t steps, double delta,
                                         std::span<const double> orders = {});

// The same under a sampling scheme (kPoisson: the function above).
Result<double> NoiseMultiplierForEpsilon(SamplingScheme scheme, double target_epsilon, double sampling_rate,
                                         uint64_t steps, double delta, std::span<const double> orders = {});

// The smallest noise multiplier z (to a relative 1e-6, rounded up so the
// result meets the target) with epsilon_at(z) <= target_epsilon, for any
// accounting whose ε falls as z grows (bracketed by doubling from 1, then
// bisected). OutOfRange when even z = 1e4 does not reach it; errors of
// epsilon_at are returned as they are.
Result<double> SmallestNoiseForEpsilon(double target_epsilon,
                                       const std::function<Result<double>(double)>& epsilon_at);

// Running composition of possibly different steps (a round's q or z may
// change over a run). Not thread-safe.
class RdpAccountant {
 public:
  // Opacus's default orders when `orders` is empty.
  explicit RdpAccountant(std::span<const double> orders = {});

  // Adds `steps` steps of the Poisson-subsampled Gaussian; on error nothing is added.
  Status Compose(double sampling_rate, double noise_multiplier, uint64_t steps = 1);
  // The same under a sampling scheme (ComputeRdp(scheme, ...)).
  Status Compose(SamplingScheme scheme, double sampling_rate, double noise_multiplier, uint64_t steps = 1);
  // Adds one step of any mechanism given by its RDP at orders() (e.g. the
  // Skellam mechanism of frugal/privacy/dp.h, or a restored total); values
  // must be >= 0 and not NaN, one per order. On error nothing is added.
  Status ComposeRdp(std::span<const double> rdp);
  // ε at δ for everything composed so far (ε = 0, order NaN, before any step).
  Result<PrivacySpent> Spent(double delta) const;
  const std::vector<double>& orders() const { return orders_; }
  const std::vector<double>& rdp() const { return rdp_; }

 private:
  std::vector<double> orders_;
  std::vector<double> rdp_;
  bool composed_ = false;
};

}  // namespace frugal::privacy
