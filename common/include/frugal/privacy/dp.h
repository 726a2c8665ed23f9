// Differential privacy in the round: central DP-FedAvg (McMahan et al. 2018)
// with fixed or adaptive clipping (Andrew et al. 2021) and its per-round
// accounting, and the accountant side of distributed DP (the Skellam mechanism,
// Agarwal, Kairouz, Liu 2021) for noise that clients add under secure
// aggregation. Pure computation, no I/O; the round engine owns one CentralDp.
// What the accounting assumes: docs/privacy.md and frugal/privacy/accountant.h.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/codec/ring_quant.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/status.h"
#include "frugal/privacy/accountant.h"
#include "frugal/privacy/noise.h"

namespace frugal::privacy {

enum class DpMode : uint8_t {
  kNone,         // no clipping, no noise, no accounting
  kCentral,      // the server clips every update and adds Gaussian noise to the sum
  kDistributed,  // clients clip and add Skellam noise in the ring under secure aggregation
};
// Parses "none", "central" or "distributed".
Result<DpMode> ParseDpMode(std::string_view name);
std::string_view DpModeName(DpMode mode);

// The [privacy] table (common/round/settings.cpp reads it).
struct DpConfig {
  DpMode mode = DpMode::kNone;
  double clip = 1.0;                // privacy.clip: the L2 bound C (the first one when adaptive)
  double adaptive_quantile = 0;     // privacy.adaptive_clip_quantile γ in (0, 1); 0: C stays fixed
  double clip_learning_rate = 0.2;  // privacy.clip_learning_rate η: C <- C exp(-η (b̃ - γ))
  double clip_count_stddev = 0;     // privacy.clip_count_stddev σ_b of the noised count; 0: expected_clients / 20
  double noise_multiplier = 0;      // privacy.noise_multiplier z, the one accounted (0: from target_epsilon)
  double target_epsilon = 0;        // privacy.target_epsilon: no round may take ε past it (0: no target)
  double delta = 1e-5;              // privacy.delta
  // How rounds sample clients, which fixes the bound every round is accounted
  // with and its adjacency (accountant.h): settings set it from
  // round.sampling (fixed-size unless "poisson"), the same for both front ends.
  SamplingScheme sampling = SamplingScheme::kFixedSize;
  // The fixed denominator of the noised mean: round.clients_per_round, the
  // updates a round asks for. DP-FedAvg divides by the expected count, not the
  // received one, which would depend on who took part and is not noised.
  uint32_t expected_clients = 0;
  // Where the noise comes from: the AES-256-CTR stream (frugal/privacy/noise.h)
  // under noise_key(round) when a front end supplies it (the service: a fresh
  // RAND_bytes key every round, so nobody who knows the run's seed can
  // subtract the noise), else under SeededNoiseKey(noise_seed, 0, round) (the
  // simulator: reproducible).
  NoiseKeySource noise_key;
  uint64_t noise_seed = 0;

  bool enabled() const { return mode != DpMode::kNone; }
  bool adaptive() const { return adaptive_quantile > 0; }
  double CountStddev() const { return clip_count_stddev > 0 ? clip_count_stddev : expected_clients / 20.0; }
};

// Validates the values (not the pipeline); errors name the privacy.* key.
// A central configuration needs noise_multiplier > 0 by now (a front end that
// derives it from target_epsilon does so first).
Status CheckDpConfig(const DpConfig& cfg);

// Scales `v` in place to L2 norm at most `clip` (> 0); returns its norm before.
double ClipL2(std::span<float> v, double clip);

// Andrew et al. 2021, Theorem 1: with the clipped-count estimate noised at
// σ_b, the update noise multiplier z_Δ = (z^-2 - (2 σ_b)^-2)^(-1/2) makes the
// pair of releases compose to noise multiplier z. OutOfRange when 2 σ_b <= z.
Result<double> UpdateNoiseMultiplier(double z, double count_stddev);

// Andrew et al.'s geometric step: C exp(-η (b̃ - γ)), b̃ the noised fraction
// of updates whose norm was at most C.
double NextClip(double clip, double noisy_fraction, double quantile, double learning_rate);

// What one DP round did, for rounds.csv, summary.json and /status.
struct RoundDp {
  double sampling_rate = 1;   // q accounted
  double clip = 0;            // C used this round
  double next_clip = 0;       // C of the next round (== clip when fixed)
  double noise_stddev = 0;    // per coordinate, on the sum (z_Δ C)
  uint32_t clipped = 0;       // updates whose norm exceeded C (server-side only, not released)
  double epsilon = 0, delta = 0;  // spent after this round
};

struct DistributedRing;

// Central DP-FedAvg: per-update clipping, noise on the sum, a fixed
// denominator, the adaptive clip and the accountant. Not thread-safe.
class CentralDp {
 public:
  explicit CentralDp(const DpConfig& cfg);
  ~CentralDp();

  // Sums the updates each clipped to C, adds N(0, (z_Δ C)²) to every
  // coordinate of the sum, divides by expected_clients and writes the result
  // to `out` (size = dimension, overwritten). Then moves C (adaptive) and
  // accounts one round at sampling rate q in (0, 1]. On error nothing changes
  // but the running sum. BeginRound + Accumulate for each + FinishRound.
  Result<RoundDp> Aggregate(uint32_t round, std::span<const SparseUpdate* const> updates, double sampling_rate,
                            std::span<float> out);

  // The same, streamed, so a round never holds its decoded updates: BeginRound
  // clears the running sum for a model of `dim` parameters; Accumulate clips
  // one update to this round's C and adds it (InvalidArgument, nothing added,
  // for a wrong dimension); FinishRound noises, divides and accounts as above.
  // The running sum is exact fixed point (every clipped value is rounded to a
  // multiple of 2^(e-90), where 2^(e-1) <= C < 2^e), so the order in which
  // updates arrive never changes a bit of the result.
  void BeginRound(size_t dim);
  Status Accumulate(const SparseUpdate& update);
  Result<RoundDp> FinishRound(uint32_t round, double sampling_rate, std::span<float> out);
  // Distributed DP: the ring plan (PlanDistributedRing) every round uses.
  void SetDistributedRing(const DistributedRing& ring);
  // Distributed DP: accounts one secure round whose unmasked sum carried the
  // noise shares of `survivors` clients (a dropped client's share is lost),
  // at sampling rate q. FailedPrecondition without a ring plan; errors leave
  // the state as it was.
  Result<RoundDp> AccountDistributed(uint32_t round, double sampling_rate, uint32_t survivors);

  // Updates added since BeginRound, and coordinate j of their clipped sum
  // (exact, rounded once to double).
  uint32_t accumulated() const { return within_ + clipped_; }
  double RunningSum(size_t j) const;

  // ε spent so far, and what it would be after one more round at q (under
  // distributed DP, with the expected survivors' noise).
  Result<PrivacySpent> Spent() const { return accountant_.Spent(cfg_.delta); }
  Result<PrivacySpent> SpentAfterOneMore(double sampling_rate) const;
  // Error (ResourceExhausted) naming the round, the ε spent and the target
  // when one more round at q would take ε past target_epsilon; Ok otherwise.
  Status CheckBudget(uint32_t round, double sampling_rate) const;

  double clip() const { return clip_; }
  uint32_t rounds() const { return rounds_; }
  const DpConfig& config() const { return cfg_; }

  // The state a restart needs (C, rounds accounted, RDP per order) as bytes;
  // SetState refuses a size that does not fit this configuration's orders.
  std::vector<uint8_t> State() const;
  size_t StateBytes() const;
  Status SetState(std::span<const uint8_t> bytes);

 private:
  DpConfig cfg_;
  double clip_;
  uint32_t rounds_ = 0;
  RdpAccountant accountant_;
  std::unique_ptr<DistributedRing> ring_;  // distributed DP only
  // The open round's running sum of clipped updates, in units of 2^sum_exponent_.
  std::vector<__int128> sum_;
  int sum_exponent_ = 0;
  uint32_t within_ = 0, clipped_ = 0;  // updates whose norm was at most C / above it
};

// --- Distributed DP ----------------------------------------------------------

// How a distributed-DP round quantizes and noises: the ring (with l2_clip,
// noise_mu and noise_margin set) and the sensitivities in levels.
struct DistributedRing {
  RingQuantConfig ring;
  uint32_t expected_survivors = 0;  // whose noise shares make up the target noise
  double l2_levels = 0;             // Δ2: max level + sqrt(k) (stochastic rounding adds < 1 per entry)
  double l1_levels = 0;             // Δ1: min(Δ2², sqrt(k) Δ2)
};

// Plans distributed DP on the secure pipeline's ring for a support of
// `support_size` entries: values clipped to L2 norm C = dp.clip (the ring's
// per-value clip becomes C too), each client's Skellam parameter sized so that
// the expected survivors, ceil(max_summands (1 - dropout)) (the fewest the
// SecAgg+ graph is built to tolerate), together add noise of standard
// deviation z Δ2, and the ring keeps 12 standard deviations of the noise of
// max_summands clients as headroom. FailedPrecondition naming secure.bits when
// the ring leaves fewer levels per client than sqrt(k) (rounding would more
// than double the sensitivity).
Result<DistributedRing> PlanDistributedRing(const DpConfig& dp, const RingQuantConfig& ring, double dropout,
                                            size_t support_size);

// RDP of order α > 1 of the Skellam mechanism: integer-valued queries of L1 and
// L2 sensitivity Δ1, Δ2 plus Sk(μ, μ) = Poisson(μ) - Poisson(μ) per coordinate
// (variance 2μ). Agarwal, Kairouz, Liu 2021, Theorem 3.5:
//   α Δ2² / (4μ) + min(((2α - 1) Δ2² + 6 Δ1) / (16 μ²), 3 Δ1 / (4μ)).
double SkellamRdp(double order, double mu, double l1, double l2);

// The noise that reached a round's sum when each of `survivors` clients added
// Sk(μ_client, μ_client): Sk(n μ_client) (Skellam sums stay Skellam). A dropped
// client's share never reaches the sum, so only survivors count.
struct DistributedNoise {
  double mu = 0;                // of the sum's Skellam
  double noise_multiplier = 0;  // its Gaussian equivalent: sqrt(2 μ) / Δ2
};
Result<DistributedNoise> DistributedSkellamNoise(double mu_per_client, uint32_t survivors, double l2);

// Accounts one round of distributed Skellam noise sampled by `scheme`.
// kPoisson: q = 1 composes the Skellam RDP itself, q < 1 Zhu & Wang's general
// bound for Poisson sampling over it (PoissonSubsampledRdpBound), add/remove
// adjacency. kFixedSize: Wang, Balle & Kasiviswanathan's bound for sampling
// without replacement (FixedSizeSubsampledRdpBound) over the Skellam RDP at
// replace-one sensitivities 2 Δ1, 2 Δ2 (one client's update swapped for
// another's); at q = 1 that RDP itself. Errors on invalid values.
Status ComposeDistributedSkellam(RdpAccountant& accountant, SamplingScheme scheme, double sampling_rate,
                                 double mu_per_client, uint32_t survivors, double l1, double l2);

// Distributed DP's counterpart of NoiseMultiplierForEpsilon: the smallest
// noise multiplier z whose ring plan (PlanDistributedRing(dp with z, ring,
// dropout, support_size)) keeps `rounds` rounds at rate q, each accounted as
// the engine accounts it (under dp.sampling) with the expected survivors' noise
// (ComposeDistributedSkellam), within dp.target_epsilon at dp.delta. Errors
// of the plan (a ring too small for the noise) are returned as they are.
Result<double> DistributedNoiseForEpsilon(const DpConfig& dp, const RingQuantConfig& ring, double dropout,
                                          size_t support_size, double sampling_rate, uint32_t rounds);

}  // namespace frugal::privacy
