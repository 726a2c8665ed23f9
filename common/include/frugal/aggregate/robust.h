// Byzantine-robust aggregation of sparse client updates. A RobustAggregator
// takes a round's accepted updates (decoded, in client-id order) and writes
// the step before the server optimizer, saying for each update whether it was
// kept, clipped, down-weighted or rejected, and why. Each rule's assumptions
// and its cost on 1-2% sparse updates are in docs/robustness.md.
//
// Rules work on the values an update carries: a coordinate an update does not
// carry is "absent", not zero, for the coordinate-wise rules (median and
// trimmed mean over the values present), since on sparse updates a median
// over all clients is zero almost everywhere.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/aggregate/fedavg.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/status.h"

namespace frugal {

enum class RobustRule : uint8_t {
  kNone,          // weighted FedAvg as the Averaging says
  kNormBound,     // clip each update's L2 norm to a bound (fixed or a running quantile)
  kCenteredClip,  // Karimireddy et al. 2021: clip each update's distance to a centre
  kMedian,        // coordinate-wise median over the values present
  kTrimmedMean,   // coordinate-wise trimmed mean over the values present
  kMultiKrum,     // Blanchard et al. 2017 / El Mhamdi et al. 2018, distances on sparse supports
  kFlTrust,       // Cao et al. 2021: trust from cosine similarity with a server update on a trusted set
  kFoolsGold,     // Fung et al. 2020: down-weights clients whose update histories are alike (sybils)
  kBulyan,        // El Mhamdi et al. 2018: Krum applied n - 2f times, then the values nearest the median
  kFlame,         // Nguyen et al. 2022: a majority cluster on cosine distances, clipping at the median norm, noise
};

// Parses none | norm_bound | centered_clip | median | trimmed_mean | multi_krum | fltrust | foolsgold | bulyan | flame.
Result<RobustRule> ParseRobustRule(std::string_view name);
std::string_view RobustRuleName(RobustRule r);

struct RobustConfig {
  RobustRule rule = RobustRule::kNone;
  // norm_bound and centered_clip: the L2 bound. 0: a running quantile of the
  // updates' norms (clip_quantile), see docs/robustness.md.
  double clip_bound = 0;
  double clip_quantile = 0.5;
  uint32_t cc_iterations = 1;  // centered clipping's fixed-point iterations per round
  // trimmed_mean: the fraction of the values present at a coordinate cut at each end.
  double trim_fraction = 0.2;
  // multi_krum: updates assumed Byzantine (f) and updates averaged (m); 0 picks
  // f = floor(0.2 n) and m = n - f for the n updates of the round. bulyan
  // uses the same f (krum_select does not apply).
  uint32_t krum_byzantine = 0;
  uint32_t krum_select = 0;
  // foolsgold: the similarity of two clients is the cosine of their summed
  // updates over the last foolsgold_tail coordinates of the parameter vector
  // (the output layer, as the paper suggests), 0: over all of them.
  uint32_t foolsgold_tail = 0;
  // flame: the noise added to the aggregate is Gaussian with standard
  // deviation flame_noise times the round's clip bound (the paper's lambda,
  // 0.001 for image classification), drawn from DeriveSeed(seed, round).
  double flame_noise = 0.001;
  // flame: HDBSCAN's min_samples (core distances); 0: the min cluster size n/2 + 1.
  uint32_t flame_min_samples = 0;
  // The robust learning rate (Ozdayi et al. 2021), on top of any rule: a
  // coordinate keeps the rule's step only where the signs of the updates
  // carrying it (and not rejected) agree by at least rlr_threshold votes
  // (|sum of signs| >= theta; an update that does not carry it does not vote);
  // elsewhere the step is negated (their rule) or, with rlr_zero, zeroed.
  bool rlr = false;
  uint32_t rlr_threshold = 4;
  bool rlr_zero = false;
  // The rule's noise stream: ReadRunSettings sets it from the run's seed
  // (SeedStream::kRobustNoise), for the simulator and the coordinator alike.
  uint64_t seed = 0;
};

// Verdict on one update.
enum class RobustAction : uint8_t { kKept, kClipped, kDownweighted, kRejected };
std::string_view RobustActionName(RobustAction a);

struct RobustVerdict {
  uint64_t client = 0;
  RobustAction action = RobustAction::kKept;
  double factor = 1.0;  // scale (clipped) or weight multiplier (down-weighted) applied; 0 when rejected
  // Empty when kept, else e.g. "norm 4.21 > bound 1.30". In a round where the
  // rule ran without its guarantee (RobustBoundShortfall), every verdict,
  // kept ones included, carries that sentence too (after "; " if not alone).
  std::string reason;
};

// The f that multi_krum and bulyan assume for a round of n updates:
// krum_byzantine, or floor(0.2 n) when it is 0.
size_t KrumByzantine(const RobustConfig& cfg, size_t n);

// Krum's guarantee needs n >= 2f + 3 updates (Blanchard et al. 2017) and
// Bulyan's n >= 4f + 3 (El Mhamdi et al. 2018); at fewer, multi_krum and bulyan still run as
// configured, without it (docs/robustness.md says why). For a round
// of n updates under cfg: one sentence naming the rule, n, f and the bound
// when it does not hold, or when f = floor(0.2 n) is 0 (n < 5 with
// krum_byzantine = 0: the rule assumes no Byzantine update); empty otherwise
// and for every other rule. RobustAggregator adds it to the round's verdicts.
std::string RobustBoundShortfall(const RobustConfig& cfg, size_t n);

// One accepted update of the round. The pointer stays valid during Aggregate().
struct RobustInput {
  uint64_t client = 0;
  const SparseUpdate* update = nullptr;
  double weight = 0;
};

namespace robust_internal {
// Scratch of the per-coordinate passes (median, trimmed mean, Krum's
// distances), which a RobustAggregator keeps across rounds.
struct ColumnScratch {
  struct Entry {
    float value;
    uint32_t owner;  // the update's position in the round
  };
  std::vector<Entry> entries;
  std::vector<size_t> start, cursor, pos, end, carried;
  std::vector<float> row;
};
}  // namespace robust_internal

// Squared L2 distances between every pair of updates (all of dimension dim,
// validated), row-major n x n, as ||a||^2 + ||b||^2 - 2<a,b>. The dot products
// cost O(n^2 k) pair by pair (O(k) each, by a gather against a dense row), or
// O(n k + d + sum_j c_j^2) coordinate by coordinate over the c_j values present
// at j, whichever is less: about (n k)^2 / d on spread sparse supports.
// Multi-Krum's distances; public so tests can check them.
std::vector<double> PairwiseSquaredDistances(std::span<const SparseUpdate* const> updates, size_t dim);

// Not thread-safe: one aggregator per round engine, Aggregate() calls serialised.
class RobustAggregator {
 public:
  RobustAggregator(size_t dim, Averaging averaging, RobustConfig cfg);

  const RobustConfig& config() const { return cfg_; }

  // Writes the robust aggregate of `updates` into out (size dim) and one
  // verdict per update, in the order given. `reference` is the server's own
  // update on its trusted set, required by fltrust and ignored otherwise.
  // Errors name what does not fit (dimension, missing reference, no updates);
  // every input is checked first, so on error neither out nor the state moved.
  // Scratch is kept for the next round: O(d), plus up to 8 MB of columns
  // (median, trimmed mean, multi_krum) and n^2 doubles (multi_krum).
  Status Aggregate(std::span<const RobustInput> updates, const SparseUpdate* reference, std::span<float> out,
                   std::vector<RobustVerdict>& verdicts);

  // State carried across rounds (the running clip bound, centered clipping's
  // centre, FoolsGold's per-client histories) for a coordinator restart; empty
  // when the rule keeps none. StateSize() is the size State() has now:
  // foolsgold's grows with the clients seen, so SetState takes any multiple
  // of its record size.
  std::vector<float> State() const;
  Status SetState(std::span<const float> state);
  size_t StateSize() const;
  // True when StateSize() varies (foolsgold): a restart gives SetState the rest of the stored state.
  bool VariableState() const { return cfg_.rule == RobustRule::kFoolsGold; }

 private:
  Status Validate(std::span<const RobustInput> updates, const SparseUpdate* reference,
                  std::span<float> out) const;
  // The bound for this round: clip_bound, or the running quantile after folding
  // in `norms` (this round's norms or distances to the centre).
  double RoundBound(std::span<const double> norms);
  Status AggregateRule(std::span<const RobustInput> updates, const SparseUpdate* reference, std::span<float> out,
                       std::vector<RobustVerdict>& verdicts);
  Status Mean(std::span<const RobustInput> updates, std::span<float> out, std::vector<RobustVerdict>& verdicts);
  Status NormBound(std::span<const RobustInput> updates, std::span<float> out,
                   std::vector<RobustVerdict>& verdicts);
  Status CenteredClip(std::span<const RobustInput> updates, std::span<float> out,
                      std::vector<RobustVerdict>& verdicts);
  Status CoordinateWise(std::span<const RobustInput> updates, std::span<float> out,
                        std::vector<RobustVerdict>& verdicts);
  Status MultiKrum(std::span<const RobustInput> updates, std::span<float> out,
                   std::vector<RobustVerdict>& verdicts);
  Status FlTrust(std::span<const RobustInput> updates, const SparseUpdate& reference, std::span<float> out,
                 std::vector<RobustVerdict>& verdicts);
  Status FoolsGold(std::span<const RobustInput> updates, std::span<float> out,
                   std::vector<RobustVerdict>& verdicts);
  Status Bulyan(std::span<const RobustInput> updates, std::span<float> out, std::vector<RobustVerdict>& verdicts);
  Status Flame(std::span<const RobustInput> updates, std::span<float> out, std::vector<RobustVerdict>& verdicts);
  // The robust learning rate on the rule's aggregate in out.
  void RobustLearningRate(std::span<const RobustInput> updates, std::span<float> out,
                          std::vector<RobustVerdict>& verdicts);
  // foolsgold: the history row of a client, added (zeros) when first seen.
  size_t HistoryRow(uint64_t client);
  size_t HistoryWidth() const;
  // foolsgold: row r's dot products with every row, into the Gram matrix.
  void RefreshGramRow(size_t r);
  Status SetHistories(std::span<const float> state);

  size_t dim_;
  Averaging averaging_;
  RobustConfig cfg_;
  // Geometric running mean of the per-round quantiles, rounded to float so a
  // restart from State() continues bit for bit. 0: no round seen yet.
  double running_bound_ = 0;
  std::vector<float> centre_;  // centered_clip only (size dim): the previous round's centre, see CenteredClip
  // Scratch kept across rounds: fresh dim-sized buffers each round cost page
  // faults that were most of a small round's time (docs/benchmarks.md).
  FedAvgAccumulator acc_;          // the Averaging's weighted mean
  FedAvgAccumulator support_acc_;  // centered_clip: the mean of the clipped deviations
  std::vector<float> dense_scratch_;  // centered_clip's step, fltrust's reference
  robust_internal::ColumnScratch columns_;
  std::vector<double> distances_;  // multi_krum, bulyan: n x n
  // foolsgold: every client seen, its summed updates over the compared
  // coordinates (row-major, one row per client) and the Gram matrix of those
  // rows (dot products, clients x clients), kept current as rows change.
  std::vector<uint64_t> history_clients_;
  std::vector<float> history_;
  std::vector<double> gram_;
  uint64_t flame_rounds_ = 0;  // flame: rounds aggregated, the noise stream's index (its state)
  std::vector<int32_t> votes_;  // rlr (size dim): this round's sum of signs per coordinate
};

// FLAME's admitted set on a matrix of cosine distances (n x n, row-major,
// symmetric, zero diagonal): the points HDBSCAN (frugal/aggregate/hdbscan.h)
// labels with min_cluster_size n/2 + 1, the root allowed as the one cluster,
// and min_samples (0: n/2 + 1, HDBSCAN's default of min_cluster_size); noise
// is rejected. With n <= 2 everyone is admitted. Public so tests can check it.
std::vector<bool> FlameCluster(std::span<const double> cosine_distances, size_t n, size_t min_samples = 0);

// The robust learning rate's sign votes (Ozdayi et al. 2021) on sparse
// updates: for every coordinate, the sum of the signs of the values carried
// there (an update that does not carry it does not vote; a carried 0 votes 0)
// by the updates whose `voting` flag is set (all when empty), into votes
// (resized to dim). Inputs must be validated. Public for tests.
void SignVotes(std::span<const RobustInput> updates, size_t dim, std::vector<int32_t>& votes,
               const std::vector<bool>& voting = {});

}  // namespace frugal
