// The simulator's attacks (attack.kind): which clients are malicious, what
// each does to its update (model poisoning) or to its data (data poisoning),
// and the backdoor's success rate. An attacker's update still goes through
// the uplink codec with error feedback, so what the server gets is a
// well-formed compressed update; only the simulator attacks, the core never
// knows who is malicious.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/data/dataset.h"

namespace frugal::sim {

// kAlieFlanders: ALIE as Flower's FLANDERS baseline computes it (FlandersZ,
// FlandersAlieDelta); kAlie is Baruch et al.'s published attack.
enum class AttackKind { kNone, kSignFlip, kScaling, kGaussian, kAlie, kAlieFlanders, kIpm, kLabelFlip, kBackdoor };

std::string_view AttackKindName(AttackKind kind);
// kInvalidArgument naming the accepted kinds for anything else.
Result<AttackKind> ParseAttackKind(std::string_view name);

// The [attack] table; docs/simulator.md says where each default comes from.
struct AttackConfig {
  AttackKind kind = AttackKind::kNone;
  double fraction = 0.2;          // of the population, malicious for the whole run
  double scale = 1.0;             // sign_flip, scaling (default: clients_per_round), backdoor
  double sigma = 1.0;             // gaussian: std of each coordinate
  std::optional<double> z;        // alie: fixed z; unset: AlieZ(n, m) each round
  double epsilon = 0.1;           // ipm
  double poison_fraction = 0.5;   // backdoor: share of an attacker's examples stamped and relabelled
  int32_t target_label = 0;       // backdoor
  uint32_t start_round = 1;       // attackers behave honestly before this round (a warm-up)

  bool active() const { return kind != AttackKind::kNone; }
  // Attackers change their trained delta: every model attack, and a backdoor
  // boosted by a scale other than 1 (model replacement).
  bool poisons_model() const {
    return active() && (!poisons_data() || (kind == AttackKind::kBackdoor && scale != 1));
  }
  bool poisons_data() const { return kind == AttackKind::kLabelFlip || kind == AttackKind::kBackdoor; }
  // ALIE (both forms) and IPM are omniscient: they need the round's other deltas.
  bool needs_honest_deltas() const {
    return kind == AttackKind::kAlie || kind == AttackKind::kAlieFlanders || kind == AttackKind::kIpm;
  }
};

// The malicious clients among `population`: a mask by population index with
// exactly round(fraction * population) set, chosen by a Fisher-Yates shuffle
// seeded with `seed`. Same seed, same attackers.
std::vector<bool> ChooseAttackers(size_t population, double fraction, uint64_t seed);

// Baruch et al. (2019): z = PhiInverse((n - m - s) / (n - m)), s = floor(n/2 + 1) - m,
// for m attackers among n clients. The probability is clamped into
// [1e-6, 1 - 1e-6]; 0 when n == m (no honest client to hide among) or m == 0.
double AlieZ(size_t n, size_t m);
// The standard normal quantile, p in (0, 1); |error| < 1e-12 after a Newton step.
double PhiInverse(double p);
// The standard normal CDF.
double Phi(double x);

// ALIE as Flower's FLANDERS baseline computes it (baselines/flanders,
// attacks.py, lie_attack; docs/robustness.md): the same s and the same
// ratio as AlieZ, but z = Phi(ratio), the CDF where Baruch et al. take the
// quantile; no clamp. 0 when m == 0 or m >= n (Flower's code divides by zero
// there).
double FlandersZ(size_t n, size_t m);

// Per-coordinate mean and population standard deviation of equal-size
// vectors, summed in the given order (so the result does not depend on
// threads or ranks). `deltas` must not be empty.
struct DeltaMoments {
  std::vector<double> mean, std;
  size_t count = 0;
};
DeltaMoments Moments(std::span<const std::span<const float>> deltas);

// The model-poisoning transforms, each in place on a dense delta.
// sign_flip: delta = -scale * delta.
void SignFlip(std::span<float> delta, double scale);
// scaling (model replacement, Bagdasaryan et al. 2020): delta = scale * delta.
void ScaleDelta(std::span<float> delta, double scale);
// gaussian: delta = N(0, sigma^2) per coordinate from Rng(seed).
void GaussianDelta(std::span<float> delta, double sigma, uint64_t seed);
// ALIE: delta = mean - z * std.
void AlieDelta(const DeltaMoments& honest, double z, std::span<float> delta);
// ALIE as Flower's baseline computes it: delta = mean - z * sqrt(std), the
// square root of the standard deviation where Baruch et al. take the
// standard deviation; the moments are over every sender of the round,
// attackers' own honest deltas included (Flower's are).
void FlandersAlieDelta(const DeltaMoments& senders, double z, std::span<float> delta);
// IPM (Xie et al. 2019): delta = -epsilon * mean.
void IpmDelta(const DeltaMoments& honest, double epsilon, std::span<float> delta);

// The backdoor trigger: a 4x4 square at full intensity (code 255, or 1.0f in
// a float data set) in the bottom-right corner of a square image. Fails
// unless num_features is a perfect square of side >= 4.
Status CheckTriggerFits(size_t num_features);
void StampTrigger(Dataset& data, size_t row);

// A copy of data[rows] (row k of the copy is data row rows[k]) with the
// attacker's poison applied: label_flip relabels every example y -> C-1-y
// (9 - y on Fashion-MNIST); backdoor stamps the trigger on, and relabels to
// target_label, the first round(poison_fraction * n) positions of a
// Rng(seed) shuffle. `poisoned`, if given, receives the positions changed,
// ascending. Other kinds: a plain copy.
Result<Dataset> PoisonedCopy(const Dataset& data, std::span<const uint32_t> rows, const AttackConfig& attack,
                             uint64_t seed, std::vector<uint32_t>* poisoned = nullptr);

// The backdoor test set: data[rows] whose true label is not `target`, each
// with the trigger stamped and relabelled to `target`, so a model's accuracy
// on it is the backdoor's success rate.
Result<Dataset> TriggeredTestSet(const Dataset& data, std::span<const uint32_t> rows, int32_t target);

}  // namespace frugal::sim
