#include "frugal/privacy/dp.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>


namespace frugal::privacy {

Result<DpMode> ParseDpMode(std::string_view name) {
  if (name == "none") return DpMode::kNone;
  if (name == "central") return DpMode::kCentral;
  if (name == "distributed") return DpMode::kDistributed;
  return InvalidArgumentError("unknown privacy.mode '" + std::string(name) + "' (none, central, distributed)");
}

std::string_view DpModeName(DpMode mode) {
  switch (mode) {
    case DpMode::kNone: return "none";
    case DpMode::kCentral: return "central";
    case DpMode::kDistributed: return "distributed";
  }
  return "none";
}

Status CheckDpConfig(const DpConfig& cfg) {
  if (!cfg.enabled()) return OkStatus();
  if (!(cfg.clip > 0) || !std::isfinite(cfg.clip)) return InvalidArgumentError("privacy.clip must be a finite number > 0");
  if (!(cfg.adaptive_quantile >= 0 && cfg.adaptive_quantile < 1)) {
    return InvalidArgumentError("privacy.adaptive_clip_quantile must be in [0, 1) (0: a fixed clip)");
  }
  if (!(cfg.clip_learning_rate > 0) || !std::isfinite(cfg.clip_learning_rate)) {
    return InvalidArgumentError("privacy.clip_learning_rate must be a finite number > 0");
  }
  if (!(cfg.clip_count_stddev >= 0) || !std::isfinite(cfg.clip_count_stddev)) {
    return InvalidArgumentError("privacy.clip_count_stddev must be a finite number >= 0 (0: clients per round / 20)");
  }
  if (!(cfg.delta > 0 && cfg.delta < 1)) return InvalidArgumentError("privacy.delta must be in (0, 1)");
  if (!(cfg.target_epsilon >= 0) || !std::isfinite(cfg.target_epsilon)) {
    return InvalidArgumentError("privacy.target_epsilon must be a finite number >= 0 (0: no target)");
  }
  if (!(cfg.noise_multiplier >= 0) || !std::isfinite(cfg.noise_multiplier)) {
    return InvalidArgumentError("privacy.noise_multiplier must be a finite number >= 0");
  }
  if (cfg.noise_multiplier == 0) {
    return InvalidArgumentError("privacy.mode = \"" + std::string(DpModeName(cfg.mode)) +
                                "\" needs privacy.noise_multiplier > 0 (or privacy.target_epsilon, where the front end "
                                "can derive the noise from it)");
  }
  if (cfg.expected_clients == 0) return InvalidArgumentError("privacy: round.clients_per_round must be at least 1");
  if (cfg.mode == DpMode::kDistributed && cfg.adaptive()) {
    return InvalidArgumentError("privacy.mode = \"distributed\" clips on the clients to a fixed privacy.clip: "
                                "privacy.adaptive_clip_quantile must be 0");
  }
  if (cfg.adaptive()) {
    FRUGAL_RETURN_IF_ERROR(UpdateNoiseMultiplier(cfg.noise_multiplier, cfg.CountStddev()).status());
  }
  return OkStatus();
}

double ClipL2(std::span<float> v, double clip) {
  double sq = 0;
  for (float x : v) sq += static_cast<double>(x) * x;
  const double norm = std::sqrt(sq);
  if (norm > clip) {
    const double scale = clip / norm;
    for (float& x : v) x = static_cast<float>(x * scale);
  }
  return norm;
}

Result<double> UpdateNoiseMultiplier(double z, double count_stddev) {
  if (!(z > 0) || !(count_stddev > 0)) {
    return InvalidArgumentError("adaptive clipping needs privacy.noise_multiplier > 0 and privacy.clip_count_stddev > 0");
  }
  const double inv = 1.0 / (z * z) - 1.0 / (4.0 * count_stddev * count_stddev);
  if (!(inv > 0)) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "adaptive clipping: the count noise 2*sigma_b = %g must exceed the noise multiplier %g "
                  "(raise privacy.clip_count_stddev or round.clients_per_round)",
                  2 * count_stddev, z);
    return OutOfRangeError(buf);
  }
  return 1.0 / std::sqrt(inv);
}

double NextClip(double clip, double noisy_fraction, double quantile, double learning_rate) {
  return clip * std::exp(-learning_rate * (noisy_fraction - quantile));
}

CentralDp::CentralDp(const DpConfig& cfg) : cfg_(cfg), clip_(cfg.clip) {}
CentralDp::~CentralDp() = default;

void CentralDp::SetDistributedRing(const DistributedRing& ring) { ring_ = std::make_unique<DistributedRing>(ring); }

namespace {

Result<NoiseStream> RoundNoise(const DpConfig& cfg, uint32_t round) {
  NoiseKey key{};
  if (cfg.noise_key) {
    // Never fall back to a guessable key: the round fails instead.
    auto k = cfg.noise_key(round);
    if (!k.ok()) return k.error().WithContext("DP round " + std::to_string(round) + ": no noise key");
    key = *k;
  } else {
    key = SeededNoiseKey(cfg.noise_seed, 0, round);
  }
  return NoiseStream::Create(key);
}

}  // namespace

void CentralDp::BeginRound(size_t dim) {
  sum_.assign(dim, 0);
  within_ = clipped_ = 0;
  int e = 0;
  std::frexp(clip_, &e);  // 2^(e-1) <= C < 2^e
  // A clipped value is at most C < 2^e: in units of 2^(e-90) a sum of up to
  // 2^36 of them stays below 2^127.
  sum_exponent_ = e - 90;
}

namespace {

// x (finite, |x| <= 2^(unit+90)) in units of 2^unit, rounded to nearest (ties
// away from zero): integer arithmetic on the float's bits, so it is exact
// wherever x is a multiple of the unit and never depends on a rounding mode.
__int128 FixedPoint(float x, int unit) {
  uint32_t bits = 0;
  std::memcpy(&bits, &x, 4);
  const int biased = static_cast<int>((bits >> 23) & 0xff);
  if (biased == 0 && (bits & 0x7fffff) == 0) return 0;
  // x = mantissa * 2^(exponent), mantissa a 24-bit integer (subnormals: 23).
  const int64_t mantissa = biased == 0 ? (bits & 0x7fffff) : ((bits & 0x7fffff) | 0x800000);
  const int exponent = (biased == 0 ? 1 : biased) - 150;
  const int shift = exponent - unit;
  __int128 magnitude;
  if (shift >= 0) {
    magnitude = static_cast<__int128>(mantissa) << std::min(shift, 100);
  } else if (shift > -40) {
    magnitude = (mantissa + (int64_t{1} << (-shift - 1))) >> -shift;
  } else {
    magnitude = 0;
  }
  return (bits >> 31) ? -magnitude : magnitude;
}

}  // namespace

Status CentralDp::Accumulate(const SparseUpdate& u) {
  if (u.dim != sum_.size() || u.indices.size() != u.values.size()) {
    return InvalidArgumentError("DP: an update of dimension " + std::to_string(u.dim) + " for a model of " +
                                std::to_string(sum_.size()));
  }
  for (uint32_t i : u.indices) {
    if (i >= sum_.size()) return InvalidArgumentError("DP: an update index " + std::to_string(i) + " past the model");
  }
  // ClipL2's arithmetic (norm in double, each value scaled then rounded to
  // float), without copying the update.
  double sq = 0;
  for (float x : u.values) sq += static_cast<double>(x) * x;
  const double norm = std::sqrt(sq);
  const double scale = norm > clip_ ? clip_ / norm : 1.0;
  if (norm > clip_) {
    ++clipped_;
    for (size_t k = 0; k < u.values.size(); ++k) {
      sum_[u.indices[k]] += FixedPoint(static_cast<float>(u.values[k] * scale), sum_exponent_);
    }
  } else {
    ++within_;
    for (size_t k = 0; k < u.values.size(); ++k) sum_[u.indices[k]] += FixedPoint(u.values[k], sum_exponent_);
  }
  return OkStatus();
}

double CentralDp::RunningSum(size_t j) const { return std::ldexp(static_cast<double>(sum_.at(j)), sum_exponent_); }

Result<RoundDp> CentralDp::Aggregate(uint32_t round, std::span<const SparseUpdate* const> updates,
                                     double sampling_rate, std::span<float> out) {
  BeginRound(out.size());
  for (const SparseUpdate* u : updates) {
    if (Status st = Accumulate(*u); !st.ok()) return st.error().WithContext("DP round " + std::to_string(round));
  }
  return FinishRound(round, sampling_rate, out);
}

Result<RoundDp> CentralDp::FinishRound(uint32_t round, double sampling_rate, std::span<float> out) {
  if (!(sampling_rate > 0 && sampling_rate <= 1)) {
    return InvalidArgumentError("DP round " + std::to_string(round) + ": sampling rate " +
                                std::to_string(sampling_rate) + " is outside (0, 1]");
  }
  if (out.size() != sum_.size()) {
    return InvalidArgumentError("DP round " + std::to_string(round) + ": a model of " + std::to_string(out.size()) +
                                " parameters, the round's sum has " + std::to_string(sum_.size()));
  }
  RoundDp r;
  r.sampling_rate = sampling_rate;
  r.clip = clip_;
  r.clipped = clipped_;
  double z_update = cfg_.noise_multiplier;
  if (cfg_.adaptive()) {
    FRUGAL_ASSIGN_OR_RETURN(z_update, UpdateNoiseMultiplier(cfg_.noise_multiplier, cfg_.CountStddev()));
  }
  r.noise_stddev = z_update * clip_;
  RdpAccountant next = accountant_;
  FRUGAL_RETURN_IF_ERROR(next.Compose(cfg_.sampling, sampling_rate, cfg_.noise_multiplier));
  FRUGAL_ASSIGN_OR_RETURN(PrivacySpent spent, next.Spent(cfg_.delta));

  FRUGAL_ASSIGN_OR_RETURN(NoiseStream rng, RoundNoise(cfg_, round));
  const double denominator = cfg_.expected_clients;
  for (size_t j = 0; j < out.size(); ++j) {
    // The exact sum, rounded once to double.
    out[j] = static_cast<float>((RunningSum(j) + r.noise_stddev * rng.Normal()) / denominator);
  }
  r.next_clip = clip_;
  if (cfg_.adaptive()) {
    // The count is noised after the model's noise, from the same stream.
    const double noisy_fraction = (within_ + cfg_.CountStddev() * rng.Normal()) / denominator;
    r.next_clip = NextClip(clip_, noisy_fraction, cfg_.adaptive_quantile, cfg_.clip_learning_rate);
  }
  clip_ = r.next_clip;
  accountant_ = std::move(next);
  ++rounds_;
  r.epsilon = spent.epsilon;
  r.delta = cfg_.delta;
  return r;
}

Result<PrivacySpent> CentralDp::SpentAfterOneMore(double sampling_rate) const {
  RdpAccountant next = accountant_;
  if (ring_) {
    FRUGAL_RETURN_IF_ERROR(ComposeDistributedSkellam(next, cfg_.sampling, sampling_rate, ring_->ring.noise_mu,
                                                     ring_->expected_survivors, ring_->l1_levels, ring_->l2_levels));
    return next.Spent(cfg_.delta);
  }
  FRUGAL_RETURN_IF_ERROR(next.Compose(cfg_.sampling, sampling_rate, cfg_.noise_multiplier));
  return next.Spent(cfg_.delta);
}

Status CentralDp::CheckBudget(uint32_t round, double sampling_rate) const {
  if (cfg_.target_epsilon <= 0) return OkStatus();
  FRUGAL_ASSIGN_OR_RETURN(PrivacySpent after, SpentAfterOneMore(sampling_rate));
  if (after.epsilon <= cfg_.target_epsilon) return OkStatus();
  FRUGAL_ASSIGN_OR_RETURN(PrivacySpent now, Spent());
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "privacy budget: round %u would take epsilon from %.4g to %.4g, past privacy.target_epsilon = %g "
                "(delta %g, sampling rate %.4g, noise multiplier %g); the run stops after %u DP rounds",
                round, now.epsilon, after.epsilon, cfg_.target_epsilon, cfg_.delta, sampling_rate,
                cfg_.noise_multiplier, rounds_);
  return ResourceExhaustedError(buf);
}

size_t CentralDp::StateBytes() const { return 8 * (2 + accountant_.orders().size()); }

std::vector<uint8_t> CentralDp::State() const {
  std::vector<double> all;
  all.push_back(clip_);
  all.push_back(static_cast<double>(rounds_));
  all.insert(all.end(), accountant_.rdp().begin(), accountant_.rdp().end());
  std::vector<uint8_t> out(8 * all.size());
  std::memcpy(out.data(), all.data(), out.size());
  return out;
}

Status CentralDp::SetState(std::span<const uint8_t> bytes) {
  if (bytes.size() != StateBytes()) {
    return DataLossError("DP state has " + std::to_string(bytes.size()) + " bytes, expected " +
                         std::to_string(StateBytes()) + " (clip, rounds, RDP at " +
                         std::to_string(accountant_.orders().size()) + " orders)");
  }
  std::vector<double> all(bytes.size() / 8);
  std::memcpy(all.data(), bytes.data(), bytes.size());
  const double clip = all[0], rounds = all[1];
  if (!(clip > 0) || !std::isfinite(clip) || !(rounds >= 0) || rounds > 4e9 || rounds != std::floor(rounds)) {
    return DataLossError("DP state holds an invalid clip or round count");
  }
  RdpAccountant restored(accountant_.orders());
  if (rounds > 0) {
    if (Status st = restored.ComposeRdp(std::span<const double>(all).subspan(2)); !st.ok()) {
      return DataLossError("DP state: " + st.error().message());
    }
  }
  clip_ = clip;
  rounds_ = static_cast<uint32_t>(rounds);
  accountant_ = std::move(restored);
  return OkStatus();
}

Result<DistributedRing> PlanDistributedRing(const DpConfig& dp, const RingQuantConfig& ring, double dropout,
                                            size_t support_size) {
  if (dp.mode != DpMode::kDistributed) return FailedPreconditionError("PlanDistributedRing: not distributed DP");
  if (!(dp.noise_multiplier > 0) || !(dp.clip > 0)) {
    return InvalidArgumentError("distributed DP needs privacy.clip > 0 and privacy.noise_multiplier > 0");
  }
  if (support_size == 0) return InvalidArgumentError("distributed DP: an empty support");
  if (!(dropout >= 0 && dropout < 1)) return InvalidArgumentError("distributed DP: secure.dropout outside [0, 1)");
  DistributedRing p;
  p.ring = ring;
  p.ring.clip = static_cast<float>(dp.clip);
  p.ring.l2_clip = dp.clip;
  const double n = ring.max_summands;
  p.expected_survivors = static_cast<uint32_t>(std::max(1.0, std::ceil(n * (1 - dropout) - 1e-9)));
  const double root_k = std::sqrt(static_cast<double>(support_size));
  const double z = dp.noise_multiplier;
  // Noise of max_summands clients' shares, in units of Δ2: z sqrt(n / n_exp).
  const double spread = z * std::sqrt(n / p.expected_survivors);
  // Largest L with n L + 12 spread (L + sqrt k) <= 2^(bits-1) - 1.
  const double top = std::ldexp(1.0, ring.bits - 1) - 1;
  const double level = std::floor((top - 12 * spread * root_k) / (n + 12 * spread));
  if (!(level >= root_k)) {
    return FailedPreconditionError(
        "distributed DP: a " + std::to_string(ring.bits) + "-bit ring leaves " + std::to_string(level) +
        " levels per client for " + std::to_string(ring.max_summands) + " clients and the noise, fewer than sqrt(" +
        std::to_string(support_size) + ") of the support; raise secure.bits");
  }
  p.l2_levels = level + root_k;
  p.l1_levels = std::min(p.l2_levels * p.l2_levels, root_k * p.l2_levels);
  const double sigma = z * p.l2_levels;  // of the expected survivors' summed noise
  p.ring.noise_mu = sigma * sigma / (2.0 * p.expected_survivors);
  if (!(p.ring.noise_mu <= kMaxPoissonMean)) {
    return FailedPreconditionError("distributed DP: a " + std::to_string(ring.bits) + "-bit ring for " +
                                   std::to_string(ring.max_summands) + " clients gives each client a Skellam mean of " +
                                   std::to_string(p.ring.noise_mu) +
                                   ", above the noise sampler's largest (2^52); lower secure.bits");
  }
  // All the ring above n L is the noise's (at least 12 of its standard
  // deviations at max_summands clients, by the choice of L), so that
  // RingMaxLevel is exactly L, the level the sensitivity counts.
  const int64_t top_levels = static_cast<int64_t>((uint64_t{1} << (ring.bits - 1)) - 1);
  p.ring.noise_margin = top_levels - static_cast<int64_t>(ring.max_summands) * static_cast<int64_t>(level);
  FRUGAL_RETURN_IF_ERROR(ValidateRingQuantConfig(p.ring));
  if (RingMaxLevel(p.ring) != static_cast<int64_t>(level) ||
      p.ring.noise_margin < 12 * std::sqrt(2 * n * p.ring.noise_mu)) {
    return InternalError("distributed DP: the ring plan does not hold its level or its noise headroom");
  }
  return p;
}

Result<RoundDp> CentralDp::AccountDistributed(uint32_t round, double sampling_rate, uint32_t survivors) {
  if (!ring_) return FailedPreconditionError("DP round " + std::to_string(round) + ": no distributed ring plan");
  const DistributedRing& ring = *ring_;
  if (!(sampling_rate > 0 && sampling_rate <= 1)) {
    return InvalidArgumentError("DP round " + std::to_string(round) + ": sampling rate outside (0, 1]");
  }
  RdpAccountant next = accountant_;
  FRUGAL_RETURN_IF_ERROR(ComposeDistributedSkellam(next, cfg_.sampling, sampling_rate, ring.ring.noise_mu, survivors,
                                                   ring.l1_levels, ring.l2_levels));
  FRUGAL_ASSIGN_OR_RETURN(PrivacySpent spent, next.Spent(cfg_.delta));
  RoundDp r;
  r.sampling_rate = sampling_rate;
  r.clip = r.next_clip = clip_;
  // In value units on the sum: sqrt(2 n mu) levels over the levels per unit.
  r.noise_stddev = std::sqrt(2.0 * survivors * ring.ring.noise_mu) / RingScale(ring.ring);
  r.epsilon = spent.epsilon;
  r.delta = cfg_.delta;
  accountant_ = std::move(next);
  ++rounds_;
  return r;
}

double SkellamRdp(double order, double mu, double l1, double l2) {
  const double a = order;
  return a * l2 * l2 / (4 * mu) + std::min(((2 * a - 1) * l2 * l2 + 6 * l1) / (16 * mu * mu), 3 * l1 / (4 * mu));
}

Result<DistributedNoise> DistributedSkellamNoise(double mu_per_client, uint32_t survivors, double l2) {
  if (!(mu_per_client > 0) || !std::isfinite(mu_per_client)) {
    return InvalidArgumentError("distributed DP: each client's Skellam parameter must be a finite number > 0");
  }
  if (survivors == 0) return InvalidArgumentError("distributed DP: no client's noise reached the sum");
  if (!(l2 > 0) || !std::isfinite(l2)) return InvalidArgumentError("distributed DP: the L2 sensitivity must be > 0");
  DistributedNoise n;
  n.mu = mu_per_client * survivors;
  n.noise_multiplier = std::sqrt(2 * n.mu) / l2;
  return n;
}

Status ComposeDistributedSkellam(RdpAccountant& accountant, SamplingScheme scheme, double sampling_rate,
                                 double mu_per_client, uint32_t survivors, double l1, double l2) {
  FRUGAL_ASSIGN_OR_RETURN(DistributedNoise noise, DistributedSkellamNoise(mu_per_client, survivors, l2));
  if (!(l1 > 0) || !std::isfinite(l1)) return InvalidArgumentError("distributed DP: the L1 sensitivity must be > 0");
  if (!(sampling_rate > 0 && sampling_rate <= 1)) {
    return InvalidArgumentError("distributed DP: the sampling rate must be in (0, 1]");
  }
  const double mu = noise.mu;
  if (scheme == SamplingScheme::kFixedSize) {
    // Replace-one adjacency: the sum moves by x - x', at most twice each norm.
    FRUGAL_ASSIGN_OR_RETURN(std::vector<double> rdp,
                            FixedSizeSubsampledRdpBound(sampling_rate, accountant.orders(), [&](uint32_t j) {
                              return SkellamRdp(static_cast<double>(j), mu, 2 * l1, 2 * l2);
                            }));
    if (sampling_rate == 1) {
      // Every client takes part: the Skellam RDP itself at every order, fractional ones included.
      for (size_t i = 0; i < rdp.size(); ++i) rdp[i] = SkellamRdp(accountant.orders()[i], mu, 2 * l1, 2 * l2);
    }
    return accountant.ComposeRdp(rdp);
  }
  if (sampling_rate == 1) {
    std::vector<double> rdp;
    for (double a : accountant.orders()) rdp.push_back(SkellamRdp(a, noise.mu, l1, l2));
    return accountant.ComposeRdp(rdp);
  }
  // Poisson sampling at q < 1: Zhu & Wang's general bound over the Skellam's
  // own RDP (a proven bound, unlike the subsampled Gaussian at the equivalent z).
  FRUGAL_ASSIGN_OR_RETURN(std::vector<double> rdp,
                          PoissonSubsampledRdpBound(sampling_rate, accountant.orders(), [&](uint32_t j) {
                            return SkellamRdp(static_cast<double>(j), mu, l1, l2);
                          }));
  return accountant.ComposeRdp(rdp);
}

Result<double> DistributedNoiseForEpsilon(const DpConfig& dp, const RingQuantConfig& ring, double dropout,
                                          size_t support_size, double sampling_rate, uint32_t rounds) {
  if (rounds == 0) return InvalidArgumentError("distributed DP: deriving the noise needs at least one round");
  return SmallestNoiseForEpsilon(dp.target_epsilon, [&](double z) -> Result<double> {
    DpConfig probe = dp;
    probe.noise_multiplier = z;
    FRUGAL_ASSIGN_OR_RETURN(DistributedRing plan, PlanDistributedRing(probe, ring, dropout, support_size));
    // Identical rounds: one round's RDP times their number.
    RdpAccountant one;
    FRUGAL_RETURN_IF_ERROR(ComposeDistributedSkellam(one, dp.sampling, sampling_rate, plan.ring.noise_mu, plan.expected_survivors,
                                                     plan.l1_levels, plan.l2_levels));
    std::vector<double> rdp = one.rdp();
    for (double& v : rdp) v *= rounds;
    FRUGAL_ASSIGN_OR_RETURN(PrivacySpent spent, RdpToEpsilon(one.orders(), rdp, dp.delta));
    return spent.epsilon;
  });
}

}  // namespace frugal::privacy
