#include "frugal/round/settings.h"

#include "frugal/codec/frame.h"
#include "frugal/core/streams.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace frugal {

Result<ValueCoding> ParseValueCoding(std::string_view name) {
  if (name == "ternary") return ValueCoding::kTernary;
  if (name == "int8") return ValueCoding::kInt8;
  if (name == "fp16") return ValueCoding::kFp16;
  if (name == "fp32") return ValueCoding::kFp32;
  return InvalidArgumentError("unknown value coding '" + std::string(name) + "' (ternary, int8, fp16, fp32)");
}

namespace {

// Copies every key of `src` into `dst`, merging tables key by key.
void MergeTable(toml::table& dst, const toml::table& src) {
  for (auto&& [key, node] : src) {
    if (const toml::table* sub = node.as_table()) {
      if (toml::table* into = dst[key].as_table()) {
        MergeTable(*into, *sub);
        continue;
      }
    }
    dst.insert_or_assign(key, node);
  }
}

}  // namespace

// Frugal's pipeline, defined once for every scenario and the coordinator: the
// settings measured on fmnist-dir0.5, shards2 and iid (docs/benchmarks.md).
// - Energy-aware selection draws each available client with probability
//   proportional to 1 / the joules a participation is expected to cost it.
// - Support averaging divides each coordinate by the weights of the updates
//   that carry it: ten 2% updates barely overlap, and dividing by all ten
//   would shrink each step about ten-fold.
// - The released model (evaluated, reported) is an exponential moving average
//   of the versions (0.8 on the past, about a 5-round window); clients keep
//   training from the model itself.
// - 2% ternary uplinks; 8-bit full models and 0.5% ternary broadcast steps,
//   256 of them kept for chains, down.
// - Centered clipping (server.robust) of every update's deviation from the
//   last aggregate, at a running median of the deviations: the rule that held
//   best against every model attack on fmnist-dir0.5 and cost nothing without
//   attackers (docs/benchmarks.md, "Robust rounds").
// They sit under everything a configuration says (its top level, then its
// [pipelines.frugal] table, then --set), so a file that needs other values
// says so; the dense pipeline stays plain FedAvg.
constexpr std::string_view kFrugalPipeline = R"(
[round]
selection = "energy"
[uplink]
density = 0.02
values = "ternary"
[downlink]
bits = 8
block_size = 256
broadcast_density = 0.005
broadcast_values = "ternary"
delta_window = 256
[server]
averaging = "support"
release_ema = 0.8
robust = "centered_clip"
)";

// The secure pipeline's defaults: Frugal's downlink and selection; up, a 10%
// shared random support in the smallest ring that gives each client 12 levels
// per sign (secure.bits = 0: 8 bits at 10 clients a round), clipped at 0.1 per
// coordinate, summed under SecAgg+ at 5% corrupt / 33% dropout; the released
// model averaged over about 10 rounds (rand-k updates are noisier than
// top-k's). Measured on fmnist-dir0.5 (docs/benchmarks.md, "Secure
// aggregation"). No robust rule: the server sees only the sum (docs/privacy.md).
constexpr std::string_view kSecurePipeline = R"(
[round]
selection = "energy"
[uplink]
density = 0.1
[downlink]
bits = 8
block_size = 256
broadcast_density = 0.005
broadcast_values = "ternary"
delta_window = 256
[server]
release_ema = 0.9
)";

Status ApplyPipelineTable(toml::table& t, Pipeline default_pipeline, const std::vector<std::string>& overrides) {
  const toml::node* tables = t.get("pipelines");
  if (tables != nullptr && !tables->is_table()) {
    return InvalidArgumentError("configuration key 'pipelines' must be a table");
  }
  const toml::table no_tables;
  const toml::table& by_name = tables != nullptr ? *tables->as_table() : no_tables;
  for (auto&& [name, node] : by_name) {
    const std::string id(name.str());
    if (auto known = ParsePipeline(id); !known.ok()) return known.error().WithContext("table [pipelines." + id + "]");
    if (!node.is_table()) return InvalidArgumentError("configuration key 'pipelines." + id + "' must be a table");
  }
  std::string pipeline(PipelineName(default_pipeline));
  if (const toml::node* p = t.get("pipeline")) {
    if (auto v = p->value_exact<std::string>()) pipeline = *v;
  }
  // Copied out first: merging may replace nodes of `t`.
  const toml::table* chosen = by_name.get_as<toml::table>(pipeline);
  const toml::table overlay = chosen != nullptr ? *chosen : toml::table{};
  t.erase("pipelines");
  if (pipeline == PipelineName(Pipeline::kFrugal)) {
    FRUGAL_ASSIGN_OR_RETURN(toml::table base, ParseToml(kFrugalPipeline, "Frugal's pipeline"));
    MergeTable(base, t);
    t = std::move(base);
  } else if (pipeline == PipelineName(Pipeline::kSecure)) {
    FRUGAL_ASSIGN_OR_RETURN(toml::table base, ParseToml(kSecurePipeline, "the secure pipeline"));
    MergeTable(base, t);
    t = std::move(base);
  }
  MergeTable(t, overlay);
  for (const std::string& o : overrides) {
    // "pipelines.<name>.<key>=v" already landed in its pipeline's table (the
    // overrides were applied once before this call); re-applied as "<key>=v"
    // for the pipeline that runs, in command-line order, and dropped with the
    // table for any other.
    const std::string_view kv = o;
    if (!kv.starts_with("pipelines.") && !kv.starts_with("pipelines=")) {
      FRUGAL_RETURN_IF_ERROR(ApplyOverride(t, o));
      continue;
    }
    const std::string_view rest = kv.substr(std::string_view("pipelines.").size());
    if (rest.starts_with(pipeline + ".")) {
      FRUGAL_RETURN_IF_ERROR(ApplyOverride(t, std::string(rest.substr(pipeline.size() + 1))));
    }
  }
  return OkStatus();
}

Status CheckPrivacySettings(Pipeline pipeline, const RoundPlan& plan, EngineConfig& engine) {
  privacy::DpConfig& dp = engine.dp;
  dp.expected_clients = plan.clients_per_round;
  if (!dp.enabled()) return OkStatus();
  if (dp.mode == privacy::DpMode::kDistributed && pipeline != Pipeline::kSecure) {
    return InvalidArgumentError("privacy.mode = \"distributed\" with pipeline = \"" +
                                std::string(PipelineName(pipeline)) +
                                "\": clients add the noise in the secure pipeline's ring, where the server learns only "
                                "the sum; set pipeline = \"secure\" (or privacy.mode = \"central\")");
  }
  // Top-k keeps the coordinates where a client's own update is largest: the
  // index set is data the noise does not cover. Until a data-independent
  // support (rand-k from a public seed) is wired, the combination is refused.
  if (pipeline == Pipeline::kSecure && dp.mode != privacy::DpMode::kDistributed) {
    return InvalidArgumentError("privacy.mode = \"" + std::string(privacy::DpModeName(dp.mode)) +
                                "\" with pipeline = \"secure\": central DP clips each update, and under secure "
                                "aggregation the server sees only the sum; use privacy.mode = \"distributed\" "
                                "(clients clip and add the noise) or pipeline = \"dense\"");
  }
  if (pipeline != Pipeline::kDense && pipeline != Pipeline::kSecure) {
    return InvalidArgumentError("privacy.mode = \"" + std::string(privacy::DpModeName(dp.mode)) +
                                "\" with pipeline = \"" + std::string(PipelineName(pipeline)) +
                                "\": the top-k uplink's kept coordinates depend on each client's data and would leak "
                                "outside the DP accounting; set pipeline = \"dense\"");
  }
  if (engine.robust.rule != RobustRule::kNone) {
    return InvalidArgumentError("privacy.mode = \"central\" replaces the server's aggregation rule: server.robust must "
                                "be \"none\" (got \"" + std::string(RobustRuleName(engine.robust.rule)) + "\")");
  }
  if (engine.robust.rlr) {
    return InvalidArgumentError("privacy.mode = \"central\" replaces the server's aggregation rule: server.rlr must be "
                                "false");
  }
  // A front end that knows its population derives the noise from the target
  // (DeriveNoiseFromTarget) and checks again.
  if (dp.noise_multiplier == 0 && dp.target_epsilon > 0) {
    privacy::DpConfig probe = dp;
    probe.noise_multiplier = 1;
    if (Status st = privacy::CheckDpConfig(probe); !st.ok()) {
      // Only the value errors: adaptive clipping's noise bound is checked once z is known.
      if (st.error().code() != ErrorCode::kOutOfRange) return st;
    }
    return OkStatus();
  }
  return privacy::CheckDpConfig(dp);
}

Status DeriveNoiseFromTarget(EngineConfig& engine, double sampling_rate, uint32_t rounds, size_t dim) {
  privacy::DpConfig& dp = engine.dp;
  if (!dp.enabled() || dp.noise_multiplier > 0) return OkStatus();
  auto z = dp.mode == privacy::DpMode::kDistributed && dim > 0
               ? privacy::DistributedNoiseForEpsilon(dp, engine.secure.ring, engine.secure.dropout,
                                                     UplinkKeepCount(engine.uplink_density, dim), sampling_rate,
                                                     rounds)
               : privacy::NoiseMultiplierForEpsilon(dp.sampling, dp.target_epsilon, sampling_rate, rounds, dp.delta);
  if (!z.ok()) return z.error().WithContext("privacy.target_epsilon");
  dp.noise_multiplier = *z;
  return privacy::CheckDpConfig(dp);
}

DpAccountingLabel DescribeDpAccounting(const RoundPlan& plan, const privacy::DpConfig& dp) {
  if (!dp.enabled()) return {};
  // Weighted Poisson selection is proven: no client's probability passes the
  // cap the accountant composes (docs/privacy.md, "Weighted Poisson selection").
  const bool proven = !plan.Weighted() || dp.sampling == privacy::SamplingScheme::kPoisson;
  return {std::string(privacy::SamplingSchemeName(dp.sampling)), std::string(privacy::SamplingAdjacencyName(dp.sampling)),
          proven ? "proven"
                 : "approximate: round.selection = \"" + std::string(SelectionPolicyName(plan.selection)) +
                       "\" gives clients unequal chances, which the fixed-size bound does not model (round.sampling "
                       "= \"poisson\" bounds it at the inclusion cap)"};
}

std::string DpAccountingSentence(const RoundPlan& plan, const privacy::DpConfig& dp, std::string_view population) {
  const DpAccountingLabel label = DescribeDpAccounting(plan, dp);
  if (label.bound.empty()) return {};
  const bool fixed = dp.sampling == privacy::SamplingScheme::kFixedSize;
  std::string out = "Each round was accounted by the Renyi-DP bound for ";
  out += fixed ? "sampling a fixed number of clients without replacement (Wang, Balle & Kasiviswanathan 2019; "
                 "replacing one client)"
               : "Poisson sampling (adding or removing one client)";
  out += " at q = selected / " + std::string(population) + " clients";
  out += label.bound == "proven" ? ", proven for the sampling that ran (docs/privacy.md)."
                                 : "; " + label.bound + " (docs/privacy.md).";
  return out;
}

Status DeriveNoiseForPlan(EngineConfig& engine, const RoundPlan& plan, uint64_t planned_eligible, uint32_t rounds,
                          size_t dim) {
  if (!engine.dp.enabled() || engine.dp.noise_multiplier > 0) return OkStatus();
  if (planned_eligible == 0) return InvalidArgumentError("privacy.target_epsilon: no clients to plan a round for");
  const uint64_t selected = std::min<uint64_t>(plan.SelectCount(), planned_eligible);
  return DeriveNoiseFromTarget(engine, plan.SamplingRate(selected, planned_eligible), rounds, dim);
}

Status ReadRoundSettings(ConfigReader& r, Pipeline& pipeline, RoundPlan& plan, TaskConfig& task, EngineConfig& engine) {
  std::string pipeline_name(PipelineName(pipeline));
  std::string values = "ternary", broadcast_values = "ternary";
  std::string selection(SelectionPolicyName(plan.selection));
  std::string averaging(AveragingName(engine.averaging));
  r.Get("pipeline", pipeline_name);
  r.Get("round.clients_per_round", plan.clients_per_round);
  r.Get("round.over_selection", plan.over_selection);
  r.Get("round.deadline_s", plan.deadline_s);
  r.Get("round.min_quorum", plan.min_quorum);
  r.Get("round.selection", selection);
  r.Get("round.selection_exponent", plan.selection_exponent);
  r.Get("round.inclusion_cap", plan.inclusion_cap);
  std::string sampling = plan.poisson ? "poisson" : "fixed";
  r.Get("round.sampling", sampling);

  r.Get("train.epochs", task.train.epochs);
  r.Get("train.batch_size", task.train.batch_size);
  r.Get("train.learning_rate", task.train.learning_rate);
  r.Get("train.momentum", task.train.momentum);
  r.Get("train.prox_mu", task.train.prox_mu);
  r.Get("train.weight_decay", task.train.weight_decay);

  r.Get("uplink.density", task.uplink.density);
  r.Get("uplink.values", values);
  r.Get("uplink.exact_topk", task.uplink.exact_topk);
  r.Get("uplink.try_zstd", task.uplink.try_zstd);

  r.Get("downlink.bits", engine.full_model.bits);
  r.Get("downlink.block_size", engine.full_model.block_size);
  r.Get("downlink.broadcast_density", engine.broadcast.density);
  r.Get("downlink.broadcast_values", broadcast_values);
  r.Get("downlink.delta_window", engine.delta_window);
  r.Get("downlink.merge_chains", engine.merge_chains);
  r.Get("downlink.broadcast_block", engine.broadcast.block);
  r.Get("downlink.merge_version", engine.merge_version);

  r.Get("server.learning_rate", engine.server_opt.learning_rate);
  r.Get("server.momentum", engine.server_opt.momentum);
  std::string optimizer(ServerOptimizerName(engine.server_opt.kind));
  r.Get("server.optimizer", optimizer);
  r.Get("server.beta1", engine.server_opt.beta1);
  r.Get("server.beta2", engine.server_opt.beta2);
  r.Get("server.tau", engine.server_opt.tau);
  r.Get("server.averaging", averaging);
  r.Get("server.release_ema", engine.release_ema);
  std::string robust(RobustRuleName(engine.robust.rule));
  r.Get("server.robust", robust);
  r.Get("server.clip_bound", engine.robust.clip_bound);
  r.Get("server.clip_quantile", engine.robust.clip_quantile);
  r.Get("server.cc_iterations", engine.robust.cc_iterations);
  r.Get("server.trim_fraction", engine.robust.trim_fraction);
  r.Get("server.krum_byzantine", engine.robust.krum_byzantine);
  r.Get("server.krum_select", engine.robust.krum_select);
  r.Get("server.foolsgold_tail", engine.robust.foolsgold_tail);
  r.Get("server.flame_noise", engine.robust.flame_noise);
  r.Get("server.flame_min_samples", engine.robust.flame_min_samples);
  r.Get("server.rlr", engine.robust.rlr);
  r.Get("server.rlr_threshold", engine.robust.rlr_threshold);
  r.Get("server.rlr_zero", engine.robust.rlr_zero);
  std::string dp_mode(privacy::DpModeName(engine.dp.mode));
  r.Get("privacy.mode", dp_mode);
  r.Get("privacy.clip", engine.dp.clip);
  r.Get("privacy.adaptive_clip_quantile", engine.dp.adaptive_quantile);
  r.Get("privacy.clip_learning_rate", engine.dp.clip_learning_rate);
  r.Get("privacy.clip_count_stddev", engine.dp.clip_count_stddev);
  r.Get("privacy.noise_multiplier", engine.dp.noise_multiplier);
  r.Get("privacy.target_epsilon", engine.dp.target_epsilon);
  r.Get("privacy.delta", engine.dp.delta);
  uint32_t secure_max_clients = 0;  // 0: the round's selected count
  int secure_bits = 0;  // 0: automatic (below)
  double secure_clip = engine.secure.ring.clip;
  r.Get("secure.bits", secure_bits);
  r.Get("secure.clip", secure_clip);
  r.Get("secure.max_clients", secure_max_clients);
  r.Get("secure.modular_clip", engine.secure.ring.modular);
  r.Get("secure.corrupt", engine.secure.corrupt);
  r.Get("secure.dropout", engine.secure.dropout);
  r.Get("secure.stage_timeout_s", engine.secure.stage_timeout_s);
  r.Get("secure.debug_dump", engine.secure.debug_dump);
  r.Get("secure.run_protocol", engine.secure.run_protocol);
  r.Get("secure.guided", engine.secure.guided);
  r.Get("secure.guide_rounds", engine.secure.guide_rounds);
  r.Get("secure.guide_decay", engine.secure.guide_decay);
  r.Get("secure.guide_block", engine.secure.guide_block);
  r.Get("secure.derive_guide", engine.secure.derive_guide);
  r.Get("secure.step_scale", engine.secure.step_scale);
  std::string secure_identity = engine.secure.identity ? "ca" : "none";
  r.Get("secure.identity", secure_identity);
  if (r.error()) return *r.error();
  if (secure_identity != "none" && secure_identity != "ca") {
    return InvalidArgumentError("secure.identity must be \"none\" or \"ca\", got \"" + secure_identity + "\"");
  }
  engine.secure.identity = secure_identity == "ca";
  FRUGAL_ASSIGN_OR_RETURN(engine.dp.mode, privacy::ParseDpMode(dp_mode));

  FRUGAL_ASSIGN_OR_RETURN(pipeline, ParsePipeline(pipeline_name));
  FRUGAL_ASSIGN_OR_RETURN(plan.selection, ParseSelectionPolicy(selection));
  if (!(plan.selection_exponent >= 0 && plan.selection_exponent <= 4)) {
    return InvalidArgumentError("round.selection_exponent must be in [0, 4] (1: the policy's own weights, 0: "
                                "uniform), got " + std::to_string(plan.selection_exponent));
  }
  if (sampling != "fixed" && sampling != "poisson") {
    return InvalidArgumentError("round.sampling '" + sampling + "' (expected fixed or poisson)");
  }
  plan.poisson = sampling == "poisson";
  // The accountant's bound follows how rounds actually sample (docs/privacy.md, "What the bound assumes").
  engine.dp.sampling = plan.poisson ? privacy::SamplingScheme::kPoisson : privacy::SamplingScheme::kFixedSize;
  if (!(plan.inclusion_cap >= 1 && plan.inclusion_cap <= 1e6)) {
    return InvalidArgumentError("round.inclusion_cap must be in [1, 1e6] (how many times the uniform rate a "
                                "weighted Poisson selection may give one client; 1: uniform), got " +
                                std::to_string(plan.inclusion_cap));
  }
  if (plan.poisson && pipeline == Pipeline::kSecure) {
    return InvalidArgumentError("round.sampling = \"poisson\" with pipeline = \"secure\": the SecAgg+ ring is "
                                "sized for a fixed number of clients a round");
  }
  FRUGAL_ASSIGN_OR_RETURN(task.uplink.values, ParseValueCoding(values));
  FRUGAL_ASSIGN_OR_RETURN(engine.broadcast.values, ParseValueCoding(broadcast_values));
  FRUGAL_ASSIGN_OR_RETURN(engine.averaging, ParseAveraging(averaging));
  FRUGAL_ASSIGN_OR_RETURN(engine.robust.rule, ParseRobustRule(robust));
  FRUGAL_ASSIGN_OR_RETURN(engine.server_opt.kind, ParseServerOptimizer(optimizer));
  if (Status st = CheckServerOptimizerConfig(engine.server_opt); !st.ok()) return st.error().WithContext("[server]");
  engine.pipeline = pipeline;
  engine.uplink_density = task.uplink.density;
  if (pipeline == Pipeline::kDense) {
    task.uplink.dense = true;
    engine.full_model.bits = 0;
    engine.uplink_density = 1.0;
  }
  if (plan.clients_per_round == 0) return InvalidArgumentError("round.clients_per_round must be at least 1");
  if (pipeline == Pipeline::kSecure) {
    engine.secure.ring.clip = static_cast<float>(secure_clip);
    engine.secure.ring.max_summands = secure_max_clients != 0 ? secure_max_clients : plan.SelectCount();
    // 0: the smallest ring (at least 8 bits) with 12 levels per sign for each of max_summands clients.
    // Distributed DP needs levels for the clipped values and headroom for the
    // noise: 32 bits unless secure.bits says otherwise (frugal/privacy/dp.h).
    engine.secure.ring.bits = secure_bits != 0 ? secure_bits
                              : engine.dp.mode == privacy::DpMode::kDistributed
                                  ? 32
                                  : std::max(8, 1 + static_cast<int>(std::ceil(std::log2(
                                                    12.0 * engine.secure.ring.max_summands + 1))));
    if (secure_max_clients != 0 && secure_max_clients < plan.SelectCount() && !engine.secure.ring.modular) {
      return InvalidArgumentError("secure.max_clients (" + std::to_string(secure_max_clients) +
                                  ") is below the clients a round selects (" + std::to_string(plan.SelectCount()) +
                                  "): their sum could overflow the ring and would be refused; set "
                                  "secure.modular_clip = true to decode it as its centered residue instead, "
                                  "accepting rare wrap-arounds (docs/privacy.md, \"Modular clipping\")");
    }
    if (engine.secure.ring.modular && engine.dp.mode == privacy::DpMode::kDistributed) {
      return InvalidArgumentError("secure.modular_clip = true with privacy.mode = \"distributed\": the noise plan "
                                  "sizes the ring so that the noisy sum never wraps; modular clipping is for the "
                                  "secure pipeline without distributed DP");
    }
    FRUGAL_RETURN_IF_ERROR(privacy::CheckSecurePipelineConfig(engine.secure));
    if (engine.secure.guided > task.uplink.density) {
      return InvalidArgumentError("secure.guided (" + std::to_string(engine.secure.guided) +
                                  ") must be at most uplink.density (" + std::to_string(task.uplink.density) +
                                  "): the guide is part of the support");
    }
    if (!(engine.secure.stage_timeout_s > 0)) return InvalidArgumentError("secure.stage_timeout_s must be positive");
    if (engine.robust.rlr) {
      return InvalidArgumentError("pipeline = \"secure\": the server sees only the sum of the updates, not their "
                                  "signs, so server.rlr must be false");
    }
    if (engine.robust.rule != RobustRule::kNone) {
      return InvalidArgumentError("pipeline = \"secure\": the server sees only the sum of the updates, so server.robust "
                                  "must be \"none\" (got \"" + std::string(RobustRuleName(engine.robust.rule)) + "\")");
    }
  }
  if (!(plan.deadline_s > 0)) return InvalidArgumentError("round.deadline_s must be positive");
  if (task.train.epochs < 1 || task.train.batch_size < 1) {
    return InvalidArgumentError("train.epochs and train.batch_size must be >= 1");
  }
  if (!(task.uplink.density > 0 && task.uplink.density <= 1)) return InvalidArgumentError("uplink.density must be in (0, 1]");
  if (engine.merge_version < 1 || engine.merge_version > kMergedStepsVersion) {
    return InvalidArgumentError("downlink.merge_version must be 1, 2, 3 or 4 (the merged-steps formats), got " +
                                std::to_string(engine.merge_version));
  }
  if (engine.merge_version == 3 && engine.secure.derive_guide) {
    // Version 3 is decoded against the guide the task carries; a client that
    // derives the guide computes it from the very steps the piece holds.
    return InvalidArgumentError("downlink.merge_version = 3 with secure.derive_guide = true: a version-3 piece is "
                                "decoded against the round's guide, which a deriving client computes only after "
                                "applying it; choose one");
  }
  if (!(engine.broadcast.density > 0 && engine.broadcast.density <= 1)) {
    return InvalidArgumentError("downlink.broadcast_density must be in (0, 1]");
  }
  if (engine.broadcast.block < 1 || engine.broadcast.block > kMaxSelectBlock) {
    return InvalidArgumentError("downlink.broadcast_block must be in [1, " +
                                std::to_string(kMaxSelectBlock) + "] (1: plain top-k), got " +
                                std::to_string(engine.broadcast.block));
  }
  if (engine.broadcast.block > 1 && !SendsSteps(pipeline)) {
    return InvalidArgumentError(
        "downlink.broadcast_block = " + std::to_string(engine.broadcast.block) +
        " with pipeline = \"" + std::string(PipelineName(pipeline)) +
        "\": that pipeline sends full models, no broadcast steps to select blocks in");
  }
  if (!(engine.release_ema >= 0 && engine.release_ema < 1)) {
    return InvalidArgumentError("server.release_ema must be in [0, 1)");
  }
  if (!(engine.robust.clip_bound >= 0) || !std::isfinite(engine.robust.clip_bound)) {
    return InvalidArgumentError("server.clip_bound must be a finite number >= 0 (0: a running quantile)");
  }
  if (!(engine.robust.clip_quantile > 0 && engine.robust.clip_quantile <= 1)) {
    return InvalidArgumentError("server.clip_quantile must be in (0, 1]");
  }
  if (engine.robust.cc_iterations < 1) return InvalidArgumentError("server.cc_iterations must be at least 1");
  if (engine.robust.rlr_threshold < 1) return InvalidArgumentError("server.rlr_threshold must be at least 1");
  FRUGAL_RETURN_IF_ERROR(CheckPrivacySettings(pipeline, plan, engine));
  if (!(engine.robust.trim_fraction >= 0 && engine.robust.trim_fraction < 0.5)) {
    return InvalidArgumentError("server.trim_fraction must be in [0, 0.5)");
  }
  return OkStatus();
}

Result<ModelInit> ParseModelInit(std::string_view name) {
  if (name == "glorot") return ModelInit::kGlorot;
  if (name == "zeros") return ModelInit::kZeros;
  return InvalidArgumentError("unknown model_init '" + std::string(name) + "' (glorot, zeros)");
}

std::string_view ModelInitName(ModelInit init) { return init == ModelInit::kZeros ? "zeros" : "glorot"; }

void InitialModel(const Model& model, ModelInit init, uint64_t seed, std::span<float> params) {
  if (init == ModelInit::kZeros) {
    std::fill(params.begin(), params.end(), 0.0f);
    return;
  }
  model.InitParams(params, StreamSeed(seed, SeedStream::kInit));
}

Status RenameDeprecatedKeys(toml::table& t, std::vector<std::string>& warnings) {
  struct Rename {
    const char *table, *key, *new_table, *new_key;
  };
  static constexpr Rename kRenames[] = {
      {"run", "round_interval_s", "round", "interval_s"},   // frugal-sim
      {"data", "eval_every", "eval", "every"},              // frugal-sim: server test evaluation
      {"data", "eval_examples", "eval", "examples"},        // both
      {"round", "eval_every", "eval", "federated_every"},   // frugal-coordinator: federated evaluation
  };
  for (const Rename& r : kRenames) {
    toml::table* from = t[r.table].as_table();
    if (from == nullptr || !from->contains(r.key)) continue;
    const std::string old_name = std::string(r.table) + "." + r.key, new_name = std::string(r.new_table) + "." + r.new_key;
    toml::table* to = t[r.new_table].as_table();
    if (to == nullptr) to = t.insert_or_assign(r.new_table, toml::table{}).first->second.as_table();
    if (to->contains(r.new_key)) {
      return InvalidArgumentError("both '" + old_name + "' (deprecated) and '" + new_name + "' are set; keep '" +
                                  new_name + "'");
    }
    to->insert_or_assign(r.new_key, *from->get(r.key));
    from->erase(r.key);
    if (from->empty()) t.erase(r.table);
    warnings.push_back("configuration key '" + old_name + "' is deprecated and will be removed in the next release; "
                       "use '" + new_name + "'");
  }
  return OkStatus();
}

Status ReadRunSettings(ConfigReader& r, RunSettings& s) {
  r.Get("run_id", s.run_id);
  r.Get("seed", s.seed);
  r.Get("rounds", s.rounds);
  r.Get("model", s.model);
  std::string init(ModelInitName(s.model_init));
  r.Get("model_init", init);
  r.Get("target_accuracy", s.target_accuracy);
  r.Get("data.dir", s.data_dir);
  FRUGAL_RETURN_IF_ERROR(ReadRoundSettings(r, s.pipeline, s.plan, s.task, s.engine));
  r.Get("uplink.error_feedback", s.error_feedback);
  r.Get("downlink.seed_init", s.seed_init);
  r.Get("round.min_clients", s.min_clients);
  r.Get("round.interval_s", s.round_interval_s);
  r.Get("eval.every", s.eval_every);
  r.Get("eval.examples", s.eval_examples);
  r.Get("eval.federated_every", s.federated_eval_every);
  r.Get("server.trusted_examples", s.trusted_examples);
  r.Get("server.trigger_scan_every", s.trigger_scan.every);
  r.Get("server.trigger_scan_steps", s.trigger_scan.steps);
  r.Get("server.trigger_lambda", s.trigger_scan.lambda);
  r.Get("server.trigger_anomaly", s.trigger_scan.anomaly);
  r.Get("server.trigger_max_cover", s.trigger_scan.max_cover);
  r.Get("server.trigger_unlearn_epochs", s.trigger_scan.unlearn_epochs);
  r.Get("server.trigger_keep", s.trigger_scan.keep);
  r.Get("server.trigger_prune", s.trigger_scan.prune);
  r.Get("server.trigger_prune_confirm", s.trigger_scan.prune_confirm);
  r.Get("server.trigger_prune_mask", s.trigger_scan.prune_mask);
  r.Get("server.trigger_prune_grow", s.trigger_scan.prune_grow);
  r.Get("server.trigger_prune_fill", s.trigger_scan.prune_fill);
  r.Get("eval.int8", s.eval_int8);
  r.Get("distill.at_end", s.distill.at_end);
  r.Get("distill.student", s.distill.config.student);
  r.Get("distill.pool_examples", s.distill.config.pool_examples);
  r.Get("distill.epochs", s.distill.config.epochs);
  r.Get("distill.batch_size", s.distill.config.batch_size);
  r.Get("distill.learning_rate", s.distill.config.learning_rate);
  r.Get("distill.momentum", s.distill.config.momentum);
  r.Get("distill.temperature", s.distill.config.temperature);
  r.Get("prune.target_flops_fraction", s.prune.target_flops_fraction);
  r.Get("prune.start_round", s.prune.start_round);
  r.Get("prune.steps", s.prune.steps);
  r.Get("prune.every", s.prune.every);
  r.Get("widths.devices", s.widths);
  r.Get("widths.rolling", s.widths_rolling);
  FRUGAL_RETURN_IF_ERROR(ReadCarbonSettings(r, s.carbon));
  if (s.plan.poisson && (s.carbon.region_floor > 0 || s.carbon.region_budget_j_per_h > 0 || s.carbon.shifts())) {
    return InvalidArgumentError("round.sampling = \"poisson\" cannot keep carbon.region_floor, "
                                "carbon.region_budget_j_per_h or carbon.shift_slack_h (they choose who takes part)");
  }
  if (s.plan.poisson && s.carbon.defer_metered) {
    return InvalidArgumentError("round.sampling = \"poisson\" draws every client on its own and cannot "
                                "keep carbon.defer_metered (it draws unmetered clients first)");
  }
  s.engine.dp.noise_seed = StreamSeed(s.seed, SeedStream::kDpNoise);
  s.engine.robust.seed = StreamSeed(s.seed, SeedStream::kRobustNoise);  // FLAME's noise differs by run seed
  s.engine.secure.support_seed = DeriveSeed(s.seed, 0x5ECA66ULL);  // the public support seed's stream
  if (r.error()) return *r.error();
  FRUGAL_ASSIGN_OR_RETURN(s.model_init, ParseModelInit(init));
  if (s.rounds == 0) return InvalidArgumentError("rounds must be at least 1");
  if (s.eval_every == 0) return InvalidArgumentError("eval.every must be at least 1");
  if (s.distill.at_end) FRUGAL_RETURN_IF_ERROR(CheckDistillSettings(s.distill));
  FRUGAL_RETURN_IF_ERROR(CheckPruneConfig(s.prune));
  for (const auto& [device, width] : s.widths) {
    if (!(width > 0 && width <= 1)) {
      return InvalidArgumentError("widths.devices." + device + " must be in (0, 1], got " + std::to_string(width));
    }
  }
  if (!s.widths.empty() && s.engine.averaging != Averaging::kSupport) {
    return InvalidArgumentError("[widths] needs server.averaging = \"support\": each coordinate is averaged over the "
                                "clients that trained it");
  }
  if (!(s.round_interval_s >= 0)) return InvalidArgumentError("round.interval_s must not be negative");
  if (s.min_clients == 0) s.min_clients = 1;
  if (s.pipeline == Pipeline::kDense) s.error_feedback = false;
  if (s.trigger_scan.every > 0 && (s.trusted_examples == 0 || s.trigger_scan.steps == 0 ||
                                   !(s.trigger_scan.lambda >= 0) || !(s.trigger_scan.anomaly > 0))) {
    return InvalidArgumentError("server.trigger_scan_every needs server.trusted_examples >= 1, "
                                "server.trigger_scan_steps >= 1, server.trigger_lambda >= 0 and "
                                "server.trigger_anomaly > 0");
  }
  if ((s.trigger_scan.prune > 0 || s.trigger_scan.max_cover < 1.0f) &&
      !(s.trigger_scan.prune_mask > 0.0f && s.trigger_scan.prune_mask <= 1.0f)) {
    return InvalidArgumentError("server.trigger_prune_mask must be in (0, 1] (the least mask value of a pruned "
                                "input, and of an input server.trigger_max_cover counts)");
  }
  if (!(s.trigger_scan.max_cover >= 0.0f && s.trigger_scan.max_cover <= 1.0f)) {
    return InvalidArgumentError("server.trigger_max_cover must be in [0, 1] (1: off), the trusted images' mean "
                                "intensity under a mask's strong inputs");
  }
  if (!(s.trigger_scan.prune_grow >= 0.0f && s.trigger_scan.prune_grow <= 1.0f)) {
    return InvalidArgumentError("server.trigger_prune_grow must be in [0, 1] (0: off)");
  }
  const float fill = s.trigger_scan.prune_fill;
  if (!(fill == 0.0f || (fill >= 1.0f && fill <= 16.0f))) {
    return InvalidArgumentError("server.trigger_prune_fill must be 0 (off) or in [1, 16] (a cluster's box area over "
                                "its pruned inputs)");
  }
  if (s.engine.robust.rule == RobustRule::kFlTrust && s.trusted_examples == 0) {
    return InvalidArgumentError("server.robust = \"fltrust\" needs a trusted set: server.trusted_examples must be at least 1");
  }
  return OkStatus();
}

std::vector<std::string> ServerNotes(const EngineConfig& engine) {
  std::vector<std::string> notes;
  if (engine.release_ema > 0) {
    char weight[32];
    std::snprintf(weight, sizeof weight, "%g", engine.release_ema);
    notes.push_back(std::string("The evaluated model is the released one: the moving average (weight ") + weight +
                    " on the past) of the server's model versions. Clients train from the model itself.");
  }
  if (engine.robust.rule != RobustRule::kNone) {
    notes.push_back("Updates are aggregated with the robust rule '" + std::string(RobustRuleName(engine.robust.rule)) +
                    "' (server.robust); rounds.csv counts the updates it clipped, down-weighted or rejected and "
                    "ledger.csv says which and why.");
  }
  if (engine.robust.rlr) {
    notes.push_back("The server's step is negated" + std::string(engine.robust.rlr_zero ? " (zeroed)" : "") +
                    " on every coordinate where fewer than " + std::to_string(engine.robust.rlr_threshold) +
                    " net sign votes of the updates carrying it agree (server.rlr, the robust learning rate); "
                    "rounds.csv counts the updates it touched as down-weighted.");
  }
  if (engine.averaging == Averaging::kSupport) {
    notes.push_back("Each coordinate of the aggregate is divided by the weights of the updates that carry it "
                    "(support averaging), not by all of them.");
  }
  return notes;
}

}  // namespace frugal
