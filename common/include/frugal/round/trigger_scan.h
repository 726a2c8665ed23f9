// A server-side backdoor trigger scan with unlearning (Neural Cleanse, Wang et
// al., IEEE S&P 2019) on the server's trusted set: for every class, the
// smallest mask and pattern that turn trusted images into that class are
// reverse-engineered on the global model; a class whose mask is an outlier
// (anomaly index of the mask L1 norms, median absolute deviation) is taken as
// backdoored, and its trigger is unlearnt by training the global model on
// trusted images stamped with it under their true labels. Both front ends run
// it in the round (server.trigger_scan_every), so a simulated and a served run
// compute the same correction. MLP models only (Mlp::InputGradient). No I/O.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/data/dataset.h"
#include "frugal/model/model.h"
#include "frugal/train/trainer.h"

namespace frugal {

// server.trigger_*: the scan's knobs. every = 0 turns it off.
struct TriggerScanConfig {
  uint32_t every = 0;          // scan the global model every N rounds (round % N == 0); 0 = never
  uint32_t steps = 200;        // Adam steps of the mask/pattern search per class
  uint32_t batch_size = 0;     // trusted images per search step; 0: every trusted image of another class
  float learning_rate = 0.1f;  // Adam's step on the mask's and pattern's logits
  float lambda = 0.01f;        // the mask L1 penalty's initial weight (adapted as Neural Cleanse does)
  float success = 0.95f;       // a mask counts only if it sends this share of the trusted images to the class
  double anomaly = 2.0;        // a class is flagged when its anomaly index exceeds this (the paper's 2)
  // < 1: a class over the anomaly threshold is flagged only when its mask's
  // cover (MaskCover: the trusted images' mean intensity under the mask's
  // inputs at >= prune_mask) is at most this. A patch trigger is usually
  // stamped on the background, where images are dark; a clean class's small
  // mask paints over the object. 1 = off.
  float max_cover = 1.0f;
  uint32_t unlearn_epochs = 3;  // epochs over the trusted set (clean and stamped) each round a trigger is known
  uint32_t keep = 4;            // triggers remembered per flagged class (the latest scans')
  uint32_t prune = 0;           // inputs pruned per acted-on flag (the mask's largest, >= prune_mask); 0 = off
  uint32_t prune_confirm = 1;   // a class's flags before its trigger's inputs are pruned
  float prune_mask = 0.5f;      // a pruned input's least mask value
  // > 0: each acted-on flag also prunes the 8 neighbours (on the square input
  // image) of the inputs it pruned whose mask is at least this, once: a patch
  // trigger is contiguous, and a mask often covers its edge only faintly. 0 = off.
  float prune_grow = 0.0f;
  // >= 1: each acted-on flag also prunes the holes of every compact cluster
  // it touches: the 8-connected components (on the square input image) of
  // the inputs it prunes together with those pruned before, whose bounding
  // box has at most this many times the component's inputs, are filled to
  // their box. A patch trigger is a filled box; a mask that left a few of its
  // pixels out leaves holes there. 0 = off.
  float prune_fill = 0.0f;
};

// A recovered trigger: x' = (1 - mask) * x + mask * pattern, per feature.
struct RecoveredTrigger {
  int32_t target = -1;
  bool flagged = false;              // found by a scan that flagged its class (not a later refresh)
  std::vector<float> mask, pattern;  // input_dim each, in [0, 1]
};

struct TriggerScanReport {
  std::vector<double> mask_l1;   // per class; the input dimension where no mask reached `success`
  std::vector<double> anomaly;   // per class: (median - l1) / (1.4826 * MAD), 0 above the median
  std::vector<double> cover;     // per class: MaskCover of its mask at cfg.prune_mask, -1 where none reached `success`
  // Classes over the anomaly threshold that cfg.max_cover kept from being flagged, most anomalous first.
  std::vector<int32_t> refused;
  int32_t flagged = -1;          // FlagOutlier: the most anomalous class over the threshold and under the cover bar, -1: none
  RecoveredTrigger trigger;      // the flagged class's trigger (empty if none)
  std::vector<RecoveredTrigger> by_class;  // every class's trigger (target -1 where none reached `success`)
};

// The anomaly index of each value: (median - v) / (1.4826 * MAD) for values
// below the median, 0 otherwise (0 everywhere when MAD is 0).
std::vector<double> LowAnomalyIndex(std::span<const double> values);

// The mean intensity of `images` (n rows of mask.size() features) under the
// strong part of `mask`, the features where it is at least `floor`:
// sum_j m_j mean_j / sum_j m_j over them, with mean_j the images' mean at
// feature j; over every feature when none reaches `floor`. 0 for an all-zero
// mask. On images in [0, 1], 0 means the mask lies only where every image is
// black. The strong part because a scan's mask also spreads a faint haze
// over the whole image, which would pull every mask's cover towards the
// images' mean.
double MaskCover(std::span<const float> mask, std::span<const float> images, float floor);

// The class a scan flags: the most anomalous one over cfg.anomaly that has a
// mask (cover >= 0) whose cover is at most cfg.max_cover; -1: none. The
// classes over the threshold that the cover bar kept out go to `refused`,
// most anomalous first (ties: the lower class).
int32_t FlagOutlier(std::span<const double> anomaly, std::span<const double> cover, const TriggerScanConfig& cfg,
                    std::vector<int32_t>& refused);

// Reverse-engineers one trigger per class on data[trusted] and flags an
// outlier. Deterministic for `seed`.
Result<TriggerScanReport> ScanForTrigger(const Model& model, std::span<const float> params, const Dataset& data,
                                         std::span<const uint32_t> trusted, const TriggerScanConfig& cfg,
                                         uint64_t seed);

// The correction that unlearns `triggers`: a copy of `params` trained
// (`train`, its epochs replaced by cfg.unlearn_epochs) on data[trusted] clean
// and stamped with each trigger, true labels, minus `params`. Empty triggers:
// a zero vector.
Result<std::vector<float>> UnlearnTriggers(const Model& model, std::span<const float> params, const Dataset& data,
                                           std::span<const uint32_t> trusted,
                                           std::span<const RecoveredTrigger> triggers, TrainConfig train,
                                           const TriggerScanConfig& cfg, ModelWorkspace& ws);

// One line saying what a scan found, for the run's notes and the service's log:
// "round R: trigger scan flagged class C (anomaly index A, mask L1 L; median M)"
// or "... found no outlier (largest anomaly index A, class C)".
std::string DescribeTriggerScan(uint32_t round, const TriggerScanReport& report);

// "round R: pruned N inputs (i j ...), T in all": what a round's pruning did.
std::string DescribePruning(uint32_t round, std::span<const uint32_t> pruned, size_t total);

// The inputs a flag of trigger `t` prunes beyond `pruned` (ascending): the
// cfg.prune inputs its mask covers most (mask >= cfg.prune_mask), plus, with
// cfg.prune_grow > 0 and a square input, their 8 neighbours whose mask is at
// least cfg.prune_grow, plus, with cfg.prune_fill >= 1 and a square input,
// the holes of the compact clusters they touch (TriggerScanConfig::prune_fill).
// Ascending.
std::vector<uint32_t> InputsToPrune(const RecoveredTrigger& t, std::span<const uint32_t> pruned,
                                    const TriggerScanConfig& cfg);

// What one round's defence did.
struct TriggerRoundResult {
  bool scanned = false;
  TriggerScanReport report;          // when scanned
  std::vector<float> correction;     // empty: nothing to apply this round
  std::vector<uint32_t> pruned;      // inputs newly pruned this round
  std::vector<uint32_t> frozen;      // model coordinates held at zero (every pruned input's weights), ascending
};

// The defence across rounds: scans every cfg.every rounds; a class once
// flagged stays suspect for the run, and each later scan adds that class's
// newly recovered trigger (flagged again or not: a half-unlearnt backdoor
// hides under the threshold) to the memory. The memory keeps the latest
// cfg.keep flagged triggers and the latest cfg.keep refreshes per class, so
// refreshes never push out the trigger that was flagged (at most
// num_classes x 2 keep x 2 x input_dim floats). Every round with a trigger in
// memory unlearns them all. Not thread-safe.
class TriggerDefense {
 public:
  explicit TriggerDefense(TriggerScanConfig cfg) : cfg_(cfg) {}
  const TriggerScanConfig& config() const { return cfg_; }
  const std::vector<RecoveredTrigger>& triggers() const { return triggers_; }
  // Inputs pruned so far, ascending (cfg.prune > 0).
  const std::vector<uint32_t>& pruned() const { return pruned_; }

  // The model coordinates the pruned inputs freeze: every first-layer weight
  // from a pruned input, ascending (empty when none is pruned). Fails for a
  // model that is not an MLP.
  Result<std::vector<uint32_t>> FrozenCoordinates(const Model& model) const;

  // The memory (triggers, flags per class, pruned inputs) as bytes, for a
  // service's store: a restarted coordinator resumes with what it had found.
  std::vector<uint8_t> State() const;
  // Replaces the memory with State() bytes of a model with `input_dim`
  // inputs and `classes` classes; empty bytes: an empty memory. Any other
  // bytes give DataLoss naming the problem and leave the memory untouched.
  Status SetState(std::span<const uint8_t> bytes, size_t input_dim, size_t classes);
  // Runs the round's scan (if due) and unlearning on the global model
  // `params` before the round closes; the front end adds the correction to
  // the round's step (RoundEngine::SetServerCorrection) and holds the
  // frozen coordinates at zero (RoundEngine::SetServerFrozen). Pruning: once
  // a class has been flagged cfg.prune_confirm times, each of its flags
  // prunes the cfg.prune inputs its recovered mask covers most (mask >=
  // cfg.prune_mask): the first layer's weights from them are held at zero for
  // the rest of the run, so no update can teach a trigger there again.
  Result<TriggerRoundResult> Round(uint32_t round, const Model& model, std::span<const float> params,
                                   const Dataset& data, std::span<const uint32_t> trusted, TrainConfig train,
                                   uint64_t run_seed, ModelWorkspace& ws);

 private:
  // Adds t's most-masked inputs to pruned_; returns the new ones, ascending.
  std::vector<uint32_t> PruneInputs(const RecoveredTrigger& t);

  TriggerScanConfig cfg_;
  std::vector<RecoveredTrigger> triggers_;  // oldest first
  std::vector<uint32_t> flags_;             // per class: scans that flagged it
  std::vector<uint32_t> pruned_;            // ascending
};

}  // namespace frugal
