// The round engine: the one piece of server logic the coordinator drives from
// network events and the simulator drives from a virtual clock. It holds the
// global model and its version history, builds each client's model payload,
// validates and aggregates encoded updates, and finalizes new model versions.
// No I/O, no threads: callers serialise every call.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "frugal/aggregate/fedavg.h"
#include "frugal/aggregate/robust.h"
#include "frugal/codec/downlink.h"
#include "frugal/codec/uplink.h"
#include "frugal/core/status.h"
#include "frugal/model/prune.h"
#include "frugal/privacy/dp.h"
#include "frugal/privacy/secure_pipeline.h"
#include "frugal/round/selection.h"
#include "frugal/train/trainer.h"

namespace frugal {

enum class Pipeline : uint8_t {
  kDense,   // FedAvg baseline: fp32 model down, fp32 update up
  kFrugal,  // quantized/delta model down, top-k + error feedback + ternary + Golomb up
  // Frugal's downlink; up, each round's shared random support quantized into
  // a ring with error feedback and summed under SecAgg+ (the server sees only the sum).
  kSecure,
};
// Pipelines whose clients hold a model version and receive compressed steps.
inline bool SendsSteps(Pipeline p) { return p != Pipeline::kDense; }

// Parses "dense", "frugal" or "secure".
Result<Pipeline> ParsePipeline(std::string_view name);
std::string_view PipelineName(Pipeline p);

// What every selected client is asked to do in a round.
struct TaskConfig {
  TrainConfig train;
  UplinkConfig uplink;
};

// How many clients a round wants and when it gives up on them.
struct RoundPlan {
  uint32_t clients_per_round = 10;   // K: updates the round wants
  double over_selection = 1.0;       // select ceil(K * over_selection) to absorb stragglers
  double deadline_s = 600;           // updates later than this are dropped
  uint32_t min_quorum = 1;           // fewer accepted updates: the round fails, model unchanged
  SelectionPolicy selection = SelectionPolicy::kUniform;
  // round.selection_exponent: energy or carbon weights are 1 / cost raised to
  // this (1: as named; 0: uniform; between: tempered). See SelectionWeight.
  double selection_exponent = 1.0;
  // round.sampling = "poisson": every eligible client is selected on its own
  // with probability q = min(1, SelectCount() / eligible) (round sizes vary
  // around SelectCount()), the sampling the DP accountant's bound assumes;
  // false ("fixed"): SelectCount() clients without replacement.
  // With a weighted selection (Weighted()) each client's probability is its
  // weight's share of SelectCount(), held at most at `inclusion_cap` times the
  // uniform rate (round.inclusion_cap, >= 1; CappedInclusionProbabilities).
  bool poisson = false;
  double inclusion_cap = 2.0;
  uint32_t SelectCount() const;
  // Whether clients' chances differ: an energy or carbon selection with an
  // exponent above 0.
  bool Weighted() const { return selection != SelectionPolicy::kUniform && selection_exponent > 0; }
  // The sampling rate the accountant composes for a round that selected
  // `selected` of `eligible` clients: under Poisson sampling q above, or with
  // a weighted selection the cap min(1, inclusion_cap * SelectCount() /
  // eligible), which no client's probability exceeds; else selected /
  // eligible (fixed-size sampling, WBK's gamma). 1 when nothing is eligible.
  double SamplingRate(size_t selected, uint64_t eligible) const;
};

struct EngineConfig {
  Pipeline pipeline = Pipeline::kFrugal;
  // Frugal: the server compresses each global step (STC: top-k + ternary with
  // server-side error feedback) and sends clients the chain of steps they missed.
  UplinkConfig broadcast{.dense = false, .density = 0.01, .values = ValueCoding::kTernary};
  // How a full model is sent to a client that holds none (or one too old).
  DownlinkConfig full_model{.bits = 8, .block_size = 256};
  uint32_t delta_window = 64;  // number of past steps kept for chains
  // downlink.merge_chains: a client that missed two or more steps may get them
  // as one merged piece (ModelPayloadKind::kMerged, EncodeMergedSteps) when that
  // is smaller than the chain; lossless, the client ends bit for bit where the
  // chain takes it. false: chains only (clients that cannot read kind 3).
  bool merge_chains = false;
  // downlink.merge_version: the merged piece's format (docs/codecs.md, codec
  // 6): 1; 2 (a -m, +m step's level pair as m: 4 bytes a step fewer); 3
  // (version 2 with the union coded given the round's support guide, which a
  // secure client receives with its task; other pipelines have none); or 4
  // (each step's positions coded given its own round's support, rebuilt from
  // the client's kept steps; version 2 or 3 for clients without them). All
  // lossless; agents built before a version refuse its payloads ("unsupported
  // codec version N"), so 1 is the default.
  uint32_t merge_version = 1;
  Averaging averaging = Averaging::kAll;
  // The uplink density clients are asked for (frugal): an update carrying
  // more than UplinkKeepCount(uplink_density, dim) values is refused, so no
  // client can outvote the others at a coordinate, or send a dense update,
  // by ignoring it. 1: no limit (the dense pipeline).
  double uplink_density = 1.0;
  // How the round's accepted updates are combined (server.robust); kNone is
  // the weighted mean the Averaging says.
  RobustConfig robust;
  ServerOptimizerConfig server_opt;
  // The released model (release_model(): what is evaluated and exported) is an
  // exponential moving average of the model versions: r = b*r + (1-b)*model
  // after each new version, starting from version 1. 0: the model itself.
  // Clients always train from the model, never from the average.
  double release_ema = 0.0;
  // Differential privacy ([privacy]): central DP-FedAvg replaces the robust
  // rule and the weighted mean with clipped updates, Gaussian noise on their
  // sum and the fixed denominator dp.expected_clients; every round released is
  // accounted (frugal/privacy/dp.h).
  privacy::DpConfig dp;
  // The secure pipeline's ring, graph fractions and support seed ([secure]).
  privacy::SecurePipelineConfig secure;
};

// Why an update was refused; the coordinator counts these per reason.
enum class RejectReason : uint8_t {
  kRoundClosed, kStaleRound, kNotSelected, kDuplicate, kStaleBase, kMalformed, kWrongDimension, kNonFinite, kBadWeight,
  kTooDense,  // more values than EngineConfig::uplink_density allows
};
std::string_view RejectReasonName(RejectReason r);

struct RoundOutcome {
  uint32_t round = 0;
  uint32_t accepted = 0;
  bool applied = false;           // false when the quorum was not met
  uint32_t new_version = 0;
  uint64_t broadcast_bytes = 0;   // size of the compressed step (frugal), 0 for dense
  // One verdict of the robust rule per accepted update, in client-id order
  // (empty when the quorum was not met).
  std::vector<RobustVerdict> verdicts;
  // RobustBoundShortfall at this round's n (empty: the rule's bound holds, or
  // it has none), also in every verdict's reason: for a front end to log.
  std::string robust_shortfall;
  // Central DP: the round's clip, noise and the (ε, δ) spent after it (applied rounds only).
  std::optional<privacy::RoundDp> dp;
};

// What a service stores to resume an engine after a restart (see Restore()).
struct EngineState {
  uint32_t version = 1;
  std::vector<float> model;  // the model of `version`, bit-exact
  // Compressed steps by the version each produced; the consecutive run ending
  // at `version` is kept for chains, anything older is ignored.
  std::map<uint32_t, std::vector<uint8_t>> steps;
  std::vector<uint8_t> server_state;  // ServerState() bytes; empty: zero residual and momentum
  // [prune]: shape() when the state was saved (old_sizes empty: never pruned); `model` has its new sizes.
  MlpShapeChange shape;
};

class RoundEngine {
 public:
  // `initial` becomes version 1. Version 0 means "holds nothing".
  RoundEngine(std::vector<float> initial, EngineConfig cfg);

  // An engine that continues from a stored state: same version numbers, same
  // chains, same server residual and momentum. Errors name what does not fit.
  static Result<std::unique_ptr<RoundEngine>> Restore(EngineState state, EngineConfig cfg);
  // The server-side state beyond the model (error-feedback residual, server
  // momentum, released average) as bytes for EngineState::server_state.
  std::vector<uint8_t> ServerState() const;

  size_t dim() const { return model_.size(); }
  uint32_t version() const { return version_; }
  const EngineConfig& config() const { return cfg_; }
  // The model every up-to-date client holds (bit-exact for chain downloads).
  std::span<const float> global_model() const { return model_; }
  // The model to evaluate and hand out as the result (see EngineConfig::release_ema).
  std::span<const float> release_model() const { return release_.empty() ? std::span<const float>(model_) : release_; }

  // Opens `round` for the given selected clients. Fails if a round is open.
  Status OpenRound(uint32_t round, std::span<const uint64_t> selected);
  bool round_open() const { return open_; }
  // The number of clients the open round's selection was drawn from: its
  // DP sampling rate is selected / eligible (1 when never said: the most
  // conservative). InvalidArgument when fewer than the selected.
  Status SetEligible(uint64_t eligible);
  // The open round's sampling rate for the accountant, as RoundPlan::SamplingRate
  // gives it (InvalidArgument outside (0, 1]); instead of SetEligible.
  Status SetSamplingRate(double sampling_rate);
  // Central DP with privacy.target_epsilon: ResourceExhausted, naming the
  // round, the ε spent and the target, when running `round` at sampling rate
  // q would take ε past the target; Ok otherwise (and without DP).
  Status CheckPrivacyBudget(uint32_t round, double sampling_rate) const;
  // The secure pipeline's configuration as clients must use it (under
  // distributed DP, the ring with its L2 clip and noise planned).
  const privacy::SecurePipelineConfig& secure_config() const { return cfg_.secure; }
  // The DP state (clip, accountant), or null without DP.
  const privacy::CentralDp* dp() const { return dp_.get(); }
  uint32_t round() const { return round_; }

  // Payload that brings a client holding `held_version` to version(). Cached per
  // held version until the round closes; the pointer stays valid until then.
  // `history_from`: the oldest version from which the client keeps every step
  // up to held_version (Hello.history_from; 0: none); with merge_version 4 a
  // client whose kept steps cover the guide_rounds before its first missed
  // step may get a version-4 merged piece (MergeV4For).
  Result<std::shared_ptr<const std::vector<uint8_t>>> ModelPayloadFor(uint32_t held_version,
                                                                      uint32_t history_from = 0);
  // Whether a client at held_version keeping steps from history_from can be
  // sent merged format version 4: merge_version 4, the guided secure
  // pipeline with secure.derive_guide, its history covering secure.guide_rounds steps before
  // held_version, and every missed step's round known.
  bool MergeV4For(uint32_t held_version, uint32_t history_from) const;

  // Validates one client's encoded update and keeps it for the round's
  // aggregate, which CloseRound folds in client-id order (so arrival order
  // never changes the model); under central DP it is clipped into the round's
  // exact running sum at once instead (frugal/privacy/dp.h). On error nothing
  // is kept, `reason` (if non-null) says why, and the message names the problem.
  // Per-device widths: `nested` (non-empty) maps the client's sub-network's
  // coordinates to the model's (ascending; frugal/model/prune.h
  // NestedSubnetwork), and the update is of the sub-network's dimension.
  Status Ingest(uint32_t round, uint64_t client_id, uint32_t base_version, std::span<const uint8_t> update,
                double weight, RejectReason* reason = nullptr, std::span<const uint32_t> nested = {});

  // The server's own update for the open round, computed on its trusted set
  // from the model of version() (FLTrust's reference; see TrustedUpdate in
  // frugal/round/trusted.h). Required before CloseRound when server.robust is
  // "fltrust", ignored otherwise.
  Status SetReference(SparseUpdate reference);

  // A server-side correction for the open round, model-sized, computed from
  // the model of version() (the trigger scan's unlearning step, see
  // frugal/round/trigger_scan.h): added to the round's step after the server
  // optimizer, so it reaches clients through the same (compressed) step.
  // Cleared by CloseRound; dropped with the round when the quorum is missed.
  Status SetServerCorrection(std::vector<float> correction);

  // Coordinates the server holds at exactly zero (the trigger scan's pruned
  // inputs, see frugal/round/trigger_scan.h), ascending; kept until replaced,
  // so a restarted service sets them again once (ServerDefense::Resume).
  // Every round that closes drops the updates' values there (before the
  // robust rule sees them) and the step's, zeroes the server residual there,
  // and sets the model to exactly zero there; a coordinate the round's step
  // leaves non-zero goes out as a zero set with the step, and full models
  // carry the model's zeros among them (frugal/codec/zero_set.h), so every
  // client's copy is exactly zero there. Callable with or without a round open.
  Status SetServerFrozen(std::vector<uint32_t> frozen);
  std::span<const uint32_t> server_frozen() const { return frozen_; }

  // The compressed step that produced `to_version` (frugal pipeline), or an
  // empty span if it is no longer kept.
  std::span<const uint8_t> StepPayload(uint32_t to_version) const;
  // The server's error-feedback residual (what its compressed steps have not
  // sent yet; empty for the dense pipeline). Valid until the next CloseRound.
  std::span<const float> server_residual() const { return server_residual_; }

  // Secure pipeline: round `round`'s shared support (what every client
  // quantizes and sends, ascending); InvalidArgument for another pipeline.
  Result<std::vector<uint32_t>> SecureSupport(uint32_t round) const;
  // Secure pipeline with secure.guided > 0: the guided part of the next
  // support, from public state only: the floor(UplinkKeepCount(secure.guided,
  // dim) / B) blocks of B = secure.guide_block coordinates with the largest
  // decayed |value| over the last secure.guide_rounds broadcast steps (what
  // every client is sent), fewer while fewer have carried a step; as block
  // numbers (SecureSupportGuideBlocks, what the task carries through
  // EncodeSupportGuide) or coordinates. Empty when secure.guided is 0. It
  // changes only when a round closes: the same for every call within a round.
  Result<std::vector<uint32_t>> SecureSupportGuideBlocks() const;
  Result<std::vector<uint32_t>> SecureSupportGuide() const;
  // How many of the newest steps the guide comes from now (0: no guide):
  // what a client deriving it (Task.secagg.guide_steps) takes from its history.
  uint32_t SecureGuideSteps() const;
  // secure.derive_guide: whether a client whose history starts at
  // history_from_after once it holds the current version (HistoryAfterDownload)
  // derives the guide itself rather than being sent it.
  bool ClientDerivesGuide(uint32_t history_from_after) const;
  // Secure pipeline: the unmasked SecAgg+ sum of the open round, one ring
  // element per support entry, of the inputs of `clients` (the survivors,
  // each selected, each once). Decoded with its headroom checked; the round's
  // update is its mean. Once per round; errors leave the round as it was.
  Status IngestSecureSum(uint32_t round, std::span<const uint64_t> clients, std::span<const uint64_t> ring_sum);

  // Closes the round: applies the aggregate if at least `min_quorum` updates
  // were accepted, producing version()+1.
  Result<RoundOutcome> CloseRound(uint32_t min_quorum);

  // Structured pruning ([prune], frugal/model/prune.h), between rounds: the
  // global MLP keeps only the change's hidden units, and the server state
  // follows its parameter map (error-feedback residual, optimizer moments,
  // released average, the robust rule's centre). The pruned model is version()+1;
  // the change is that version's step, so chains carry it to clients holding
  // older versions, and full models carry the pruned shape. Refused while a
  // round is open, for a change that does not fit dim(), and with foolsgold
  // (per-client histories); an error leaves the engine as it was.
  Result<uint32_t> ApplyShapeChange(const MlpShapeChange& change);
  // Every shape change so far, relative to the unpruned model (old_sizes empty: never pruned).
  const MlpShapeChange& shape() const { return shape_; }

 private:
  Status Reject(RejectReason why, RejectReason* out, Error e);
  // The steps held_version -> version() as one merged-steps payload, or empty
  // when they cannot be merged (a shape change among them, a step with too many
  // distinct values).
  std::vector<uint8_t> MergedChain(uint32_t held_version, bool v4) const;

  EngineConfig cfg_;
  std::vector<float> model_;
  uint32_t version_ = 1;
  // Compressed steps: steps_[i] took version (steps_base_ + i) to (steps_base_ + i + 1).
  std::deque<std::vector<uint8_t>> steps_;
  // The round that produced each of steps_ (0: unknown, a restored or shape-change step).
  std::deque<uint32_t> step_rounds_;
  uint32_t steps_base_ = 1;
  std::vector<float> server_residual_;
  std::vector<float> release_;  // release_ema > 0 only
  RobustAggregator aggregator_;
  ServerOptimizer server_opt_;
  std::vector<float> scratch_;
  std::unique_ptr<privacy::CentralDp> dp_;  // central or distributed DP
  std::optional<Error> dp_error_;            // a distributed-DP ring that cannot be planned: OpenRound says why
  bool central_dp() const { return dp_ && cfg_.dp.mode == privacy::DpMode::kCentral; }
  double sampling_rate_ = 1;                 // the open round's (SetEligible)
  // Secure pipeline: the open round's decoded sum on its support, and how many summed.
  std::vector<uint32_t> secure_support_;
  std::vector<double> secure_sum_;
  uint32_t secure_count_ = 0;

  bool open_ = false;
  uint32_t round_ = 0;
  std::set<uint64_t> selected_;
  std::set<uint64_t> ingested_;
  // Accepted updates of the open round, decoded, folded at CloseRound.
  struct PendingUpdate {
    SparseUpdate update;
    double weight = 0;
  };
  std::map<uint64_t, PendingUpdate> pending_;
  std::optional<SparseUpdate> reference_;  // the open round's (fltrust)
  std::vector<float> correction_;          // the open round's (SetServerCorrection), empty: none
  std::vector<uint32_t> frozen_;           // SetServerFrozen's, empty: none
  std::map<uint32_t, std::shared_ptr<const std::vector<uint8_t>>> payload_cache_;
  // The same for clients sent version 4 (MergeV4For), per held version.
  std::map<uint32_t, std::shared_ptr<const std::vector<uint8_t>>> payload_cache_v4_;
  MlpShapeChange shape_;  // see shape()
};

}  // namespace frugal
