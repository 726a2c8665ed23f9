#include "frugal/sim/config.h"

#include "frugal/core/config_reader.h"

namespace frugal::sim {
namespace {

// Reads a table of id = share into a population mix.
void GetMix(ConfigReader& r, const std::string& path, std::vector<MixWeight>& out) {
  std::vector<std::pair<std::string, double>> shares;
  for (const auto& m : out) shares.emplace_back(m.id, m.weight);
  r.Get(path, shares);
  out.clear();
  for (auto& [id, w] : shares) out.push_back({std::move(id), w});
}

Result<ValueCoding> ParseValueCoding(const std::string& s) {
  if (s == "ternary") return ValueCoding::kTernary;
  if (s == "int8") return ValueCoding::kInt8;
  if (s == "fp16") return ValueCoding::kFp16;
  if (s == "fp32") return ValueCoding::kFp32;
  return InvalidArgumentError("unknown value coding '" + s + "' (ternary, int8, fp16, fp32)");
}

}  // namespace

Result<SimConfig> ParseSimConfig(std::string_view toml_text, std::string_view source,
                                 const std::vector<std::string>& overrides) {
  FRUGAL_ASSIGN_OR_RETURN(const toml::table t, ParseTomlWithOverrides(toml_text, source, overrides));

  SimConfig c;
  // Defaults that differ from the structs' own.
  c.devices = {{"phone-low", 0.2}, {"phone-mid", 0.4}, {"phone-flagship", 0.2}, {"rpi4", 0.1}, {"laptop", 0.1}};
  c.radios = {{"wifi", 0.5}, {"lte", 0.35}, {"5g", 0.15}};
  c.regions = {{"world", 1.0}};
  c.availability = {{"always", 1.0}};
  // Sampled selection picks the same top-k set as exact selection, 2-7x faster (docs/benchmarks.md).
  c.task.uplink.exact_topk = false;
  c.engine.broadcast.exact_topk = false;

  ConfigReader r(t);
  std::string pipeline = "frugal", values = "ternary";
  r.Get("name", c.name);
  r.Get("seed", c.seed);
  r.Get("rounds", c.rounds);
  r.Get("pipeline", pipeline);
  r.Get("target_accuracy", c.target_accuracy);
  r.Get("model", c.model);

  r.Get("data.dir", c.data_dir);
  r.Get("data.partition", c.partition);
  r.Get("data.alpha", c.alpha);
  r.Get("data.shards_per_client", c.shards_per_client);
  r.Get("data.samples_per_client", c.samples_per_client);
  r.Get("data.eval_every", c.eval_every);
  r.Get("data.eval_examples", c.eval_examples);

  r.Get("population.clients", c.clients);
  GetMix(r, "population.devices", c.devices);
  GetMix(r, "population.radios", c.radios);
  GetMix(r, "population.regions", c.regions);
  GetMix(r, "population.availability", c.availability);
  r.Get("population.require_charging", c.require_charging);
  r.Get("population.dropout", c.dropout);
  r.Get("population.profiles", c.profiles);

  r.Get("round.clients_per_round", c.plan.clients_per_round);
  r.Get("round.over_selection", c.plan.over_selection);
  r.Get("round.deadline_s", c.plan.deadline_s);
  r.Get("round.min_quorum", c.plan.min_quorum);

  r.Get("train.epochs", c.task.train.epochs);
  r.Get("train.batch_size", c.task.train.batch_size);
  r.Get("train.learning_rate", c.task.train.learning_rate);
  r.Get("train.momentum", c.task.train.momentum);
  r.Get("train.prox_mu", c.task.train.prox_mu);
  r.Get("train.weight_decay", c.task.train.weight_decay);

  r.Get("uplink.density", c.task.uplink.density);
  r.Get("uplink.values", values);
  r.Get("uplink.exact_topk", c.task.uplink.exact_topk);
  r.Get("uplink.try_zstd", c.task.uplink.try_zstd);

  std::string broadcast_values = "ternary";
  r.Get("downlink.bits", c.engine.full_model.bits);
  r.Get("downlink.block_size", c.engine.full_model.block_size);
  r.Get("downlink.broadcast_density", c.engine.broadcast.density);
  r.Get("downlink.broadcast_values", broadcast_values);
  r.Get("downlink.delta_window", c.engine.delta_window);
  r.Get("downlink.seed_init", c.seed_init);

  r.Get("server.learning_rate", c.engine.server_opt.learning_rate);
  r.Get("server.momentum", c.engine.server_opt.momentum);

  r.Get("run.threads", c.threads);
  r.Get("run.start_utc_hour", c.start_utc_hour);
  r.Get("run.round_interval_s", c.round_interval_s);
  r.Get("run.residual_memory_mb", c.residual_memory_mb);
  r.Get("run.spill_dir", c.spill_dir);
  r.CheckUnknown();
  if (r.error()) return r.error()->WithContext(std::string(source));
  c.flat = r.flat();

  auto err = [&](const std::string& m) { return InvalidArgumentError(std::string(source) + ": " + m); };
  FRUGAL_ASSIGN_OR_RETURN(c.pipeline, ParsePipeline(pipeline));
  FRUGAL_ASSIGN_OR_RETURN(c.task.uplink.values, ParseValueCoding(values));
  FRUGAL_ASSIGN_OR_RETURN(c.engine.broadcast.values, ParseValueCoding(broadcast_values));
  c.engine.pipeline = c.pipeline;
  if (c.pipeline == Pipeline::kDense) {
    c.task.uplink.dense = true;
    c.engine.full_model.bits = 0;
  }
  if (c.rounds == 0) return err("rounds must be at least 1");
  if (c.clients == 0 || c.clients > 100'000'000) return err("population.clients must be in [1, 1e8]");
  if (c.plan.clients_per_round == 0) return err("round.clients_per_round must be at least 1");
  if (c.partition != "iid" && c.partition != "dirichlet" && c.partition != "shards") {
    return err("data.partition must be iid, dirichlet or shards, got '" + c.partition + "'");
  }
  if (!(c.alpha > 0)) return err("data.alpha must be positive");
  if (c.task.train.epochs < 1 || c.task.train.batch_size < 1) return err("train.epochs and train.batch_size must be >= 1");
  if (!(c.task.uplink.density > 0 && c.task.uplink.density <= 1)) return err("uplink.density must be in (0, 1]");
  if (!(c.engine.broadcast.density > 0 && c.engine.broadcast.density <= 1)) {
    return err("downlink.broadcast_density must be in (0, 1]");
  }
  if (c.dropout < 0 || c.dropout >= 1) return err("population.dropout must be in [0, 1)");
  if (c.devices.empty() || c.radios.empty() || c.regions.empty() || c.availability.empty()) {
    return err("population mixes (devices, radios, regions, availability) must not be empty");
  }
  for (const auto& a : c.availability) {
    if (a.id != "always" && a.id != "diurnal") return err("unknown availability pattern '" + a.id + "' (always, diurnal)");
  }
  if (c.eval_every == 0) c.eval_every = 1;
  return c;
}

Result<SimConfig> LoadSimConfig(const std::string& path, const std::vector<std::string>& overrides) {
  FRUGAL_ASSIGN_OR_RETURN(const std::string text, ReadTextFile(path));
  return ParseSimConfig(text, path, overrides);
}

}  // namespace frugal::sim
