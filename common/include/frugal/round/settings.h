// The configuration keys every front end reads the same way: `pipeline` and
// the [round], [train], [uplink], [downlink] and [server] tables. One reader,
// so the simulator and the coordinator can never disagree on a key's meaning.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "frugal/core/config_reader.h"
#include "frugal/core/status.h"
#include "frugal/model/model.h"
#include "frugal/model/prune.h"
#include "frugal/model/release_models.h"
#include "frugal/round/carbon_schedule.h"
#include "frugal/round/engine.h"
#include "frugal/round/trigger_scan.h"

namespace frugal {

// How version 1 of a run's model is made (model_init).
enum class ModelInit : uint8_t {
  kGlorot,  // Model::InitParams on the run's kInit seed stream (the default)
  kZeros,   // every parameter 0, as Flower's logistic-regression example starts
};
Result<ModelInit> ParseModelInit(std::string_view name);
std::string_view ModelInitName(ModelInit init);
// Writes version 1 of a run with seed `seed` into `params` (size model.num_params()):
// what every front end and every client that builds it from the seed holds.
void InitialModel(const Model& model, ModelInit init, uint64_t seed, std::span<float> params);

// The keys that define a run, named and read the same way by every front end
// (frugal-sim and frugal-coordinator derive their configurations from it).
// A front end adds only what is its own: the simulated population, or the
// service's sockets and files.
struct RunSettings {
  std::string run_id;                 // run_id ("" = the front end's default)
  uint64_t seed = 1;                  // every seed stream (frugal/core/streams.h)
  uint32_t rounds = 20;
  std::string model = "mlp";
  ModelInit model_init = ModelInit::kGlorot;  // model_init: "glorot" | "zeros"
  double target_accuracy = 0.85;
  std::string data_dir;               // data.dir: Fashion-MNIST (default: Debian's)
  Pipeline pipeline = Pipeline::kFrugal;
  RoundPlan plan;                     // [round]
  TaskConfig task;                    // [train], [uplink]
  EngineConfig engine;                // [downlink], [server]
  bool error_feedback = true;         // uplink.error_feedback: clients keep a residual (frugal)
  bool seed_init = true;              // downlink.seed_init: version 1 is built from the seed (frugal)
  uint32_t min_clients = 1;           // round.min_clients: clients needed before a round opens (service)
  double round_interval_s = 0;        // round.interval_s: pause between rounds
  uint32_t eval_every = 1;            // eval.every: the server evaluates on the test set every N rounds
  uint32_t eval_examples = 0;         // eval.examples: test examples evaluated (0 = all)
  uint32_t federated_eval_every = 0;  // eval.federated_every: clients evaluate on local data every N rounds (0 = never)
  // server.trusted_examples: the size of the server's trusted set (FLTrust's
  // root data set, server.robust = "fltrust"): a seeded uniform sample of the
  // training set, on which the server computes its own update each round.
  uint32_t trusted_examples = 100;
  // server.trigger_scan_every (0: off), server.trigger_scan_steps,
  // server.trigger_lambda, server.trigger_anomaly, server.trigger_unlearn_epochs:
  // the backdoor trigger scan with unlearning on the trusted set
  // (frugal/round/trigger_scan.h, docs/robustness.md).
  TriggerScanConfig trigger_scan;
  CarbonSettings carbon;              // [carbon]: hourly intensity, time shifting, budgets, eligibility
  // eval.int8: the server also evaluates the released model quantized to
  // int8 (dense models; rounds.csv accuracy_int8), and clients price their
  // federated evaluation as int8 FLOPs (docs/frugal-models.md).
  bool eval_int8 = false;
  DistillSettings distill;            // [distill]: a student distilled from the released model at the end
  // [prune]: structured pruning of the MLP's hidden units on a schedule
  // (prune.target_flops_fraction, start_round, steps, every; frugal/model/prune.h).
  PruneConfig prune;
  // [widths] devices = { <device class> = width }: per-device widths (HeteroFL):
  // a class's clients train the nested sub-network of the first width x units
  // of every hidden layer (MLP only) and send its update; needs support averaging.
  std::vector<std::pair<std::string, double>> widths;
  // widths.rolling: FedRolex's rolling windows (Alam et al. 2022) instead of
  // the first units: in round r a narrow client trains the units starting at
  // r mod n of every hidden layer of n units (wrapping), so every unit is
  // trained by narrow clients in turn (frugal/model/prune.h, NestedSubnetwork).
  bool widths_rolling = false;

  // Clients keep an error-feedback residual between rounds.
  bool uses_residuals() const { return SendsSteps(pipeline) && error_feedback; }
  // Clients build version 1 from the seed and never download it.
  bool builds_version_one() const { return SendsSteps(pipeline) && seed_init; }
};

// Keys renamed so that both front ends share one name; the old name still
// works for one release. Moves each old key found in `t` to its new name and
// appends a deprecation message to `warnings`; an error if both are set.
Status RenameDeprecatedKeys(toml::table& t, std::vector<std::string>& warnings);

// Reads every RunSettings key (ReadRoundSettings included); the values in `s`
// are the defaults. Errors name the key.
Status ReadRunSettings(ConfigReader& r, RunSettings& s);

// Parses "ternary", "int8", "fp16" or "fp32".
Result<ValueCoding> ParseValueCoding(std::string_view name);

// When Frugal's pipeline runs, first lays `t` over Frugal's settings, defined
// once in the core (energy selection, support averaging, released average,
// 2% uplinks, 0.5% broadcast steps; settings.cpp), so every scenario and the
// coordinator get them unless they set other values. Then lays the table
// [pipelines.<name>] of the configured pipeline (`pipeline`, or
// `default_pipeline` when absent) over the rest of `t`, so a scenario can give
// one pipeline its own settings (e.g. Frugal's energy-aware selection) while
// `pipeline = "dense"` stays the plain FedAvg baseline; then re-applies
// `overrides`, so the command line still wins, and removes [pipelines]. An
// override "pipelines.<name>.<key>=v" (already applied to `t`) counts as
// "<key>=v" when <name> runs and is dropped otherwise.
// Errors name an unknown pipeline table or a [pipelines] entry that is not a table.
Status ApplyPipelineTable(toml::table& t, Pipeline default_pipeline, const std::vector<std::string>& overrides);

// Reads pipeline, round.{clients_per_round,over_selection,deadline_s,min_quorum,selection},
// train.*, uplink.{density,values,exact_topk,try_zstd},
// downlink.{bits,block_size,broadcast_density,broadcast_values,delta_window,merge_chains} and
// server.{learning_rate,momentum,optimizer,beta1,beta2,tau,averaging,release_ema}, and the robust rule's
// server.{robust,clip_bound,clip_quantile,cc_iterations,trim_fraction,
// krum_byzantine,krum_select} from `r`; the values passed in are the
// defaults. Applies the pipeline (dense: fp32 both ways) and validates. Errors
// name the key; a type error already recorded by `r` is returned first.
Status ReadRoundSettings(ConfigReader& r, Pipeline& pipeline, RoundPlan& plan, TaskConfig& task, EngineConfig& engine);

// The [privacy] table against the rest of the round: sets
// engine.dp.expected_clients to round.clients_per_round (the DP mean's fixed
// denominator) and refuses, naming the keys, DP with a top-k pipeline (its
// kept coordinates depend on the data), with a robust rule, or distributed DP
// (not wired yet). A missing noise multiplier is allowed when
// privacy.target_epsilon is set (see DeriveNoiseFromTarget).
Status CheckPrivacySettings(Pipeline pipeline, const RoundPlan& plan, EngineConfig& engine);

// privacy.target_epsilon without privacy.noise_multiplier: sets the smallest
// noise multiplier that keeps `rounds` rounds at `sampling_rate` within the
// target (NoiseMultiplierForEpsilon). Under distributed DP with the model's
// `dim` known, the bound the engine will account with instead (the Skellam
// noise of the ring planned for that z, DistributedNoiseForEpsilon). A no-op
// without DP or when the noise is set.
Status DeriveNoiseFromTarget(EngineConfig& engine, double sampling_rate, uint32_t rounds, size_t dim = 0);

// What a DP run's ε is a bound for, as frugal-sim and the coordinator write it
// to summary.json: the sampling scheme the accountant composes
// (privacy.SamplingSchemeName), its adjacency, and whether the selection is
// the uniform one that bound assumes ("proven") or a weighted one that it does
// not cover ("approximate": energy or carbon weights give clients unequal
// chances, which neither bound models). Empty strings without DP.
struct DpAccountingLabel {
  std::string sampling, adjacency, bound;
};
DpAccountingLabel DescribeDpAccounting(const RoundPlan& plan, const privacy::DpConfig& dp);

// The run report's sentence on which bound each round was accounted with, from
// the same label: "Each round was accounted by the ... bound at q = selected /
// <population> clients (...)." Empty without DP.
std::string DpAccountingSentence(const RoundPlan& plan, const privacy::DpConfig& dp, std::string_view population);

// DeriveNoiseFromTarget at the sampling rate a front end plans for: q =
// plan.SamplingRate of SelectCount() clients out of `planned_eligible`.
// frugal-sim passes its population; the coordinator, which does not know its
// population ahead, passes round.min_clients, the fewest connected clients a
// round opens with, so no round's q (selected / connected) exceeds the planned
// one. The same configuration and count give both front ends the same z.
Status DeriveNoiseForPlan(EngineConfig& engine, const RoundPlan& plan, uint64_t planned_eligible, uint32_t rounds,
                          size_t dim);

// Sentences for a run report saying how the server averages and which model
// its accuracy is of, when that differs from plain FedAvg; empty otherwise.
std::vector<std::string> ServerNotes(const EngineConfig& engine);

}  // namespace frugal
