#include "frugal/sim/config.h"

#include "frugal/core/config_reader.h"
#include "frugal/round/settings.h"

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

}  // namespace

Result<SimConfig> ParseSimConfig(std::string_view toml_text, std::string_view source,
                                 const std::vector<std::string>& overrides) {
  FRUGAL_ASSIGN_OR_RETURN(toml::table t, ParseTomlWithOverrides(toml_text, source, overrides));
  SimConfig c;
  if (Status st = ApplyPipelineTable(t, c.pipeline, overrides); !st.ok()) {
    return st.error().WithContext(std::string(source));
  }
  // Defaults that differ from the structs' own.
  c.devices = {{"phone-low", 0.2}, {"phone-mid", 0.4}, {"phone-flagship", 0.2}, {"rpi4", 0.1}, {"laptop", 0.1}};
  c.radios = {{"wifi", 0.5}, {"lte", 0.35}, {"5g", 0.15}};
  c.regions = {{"world", 1.0}};
  c.availability = {{"always", 1.0}};
  // Sampled selection picks the same top-k set as exact selection, 2-7x faster (docs/benchmarks.md).
  c.task.uplink.exact_topk = false;
  c.engine.broadcast.exact_topk = false;

  ConfigReader r(t);
  r.Get("name", c.name);
  r.Get("seed", c.seed);
  r.Get("rounds", c.rounds);
  r.Get("target_accuracy", c.target_accuracy);
  r.Get("model", c.model);

  r.Get("data.dir", c.data_dir);
  r.Get("data.partition", c.partition);
  r.Get("data.alpha", c.alpha);
  r.Get("data.shards_per_client", c.shards_per_client);
  r.Get("data.samples_per_client", c.samples_per_client);
  r.Get("data.holdout", c.holdout);
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

  if (Status st = ReadRoundSettings(r, c.pipeline, c.plan, c.task, c.engine); !st.ok()) {
    return st.error().WithContext(std::string(source));
  }
  r.Get("downlink.seed_init", c.seed_init);

  r.Get("run.threads", c.threads);
  r.Get("run.start_utc_hour", c.start_utc_hour);
  r.Get("run.round_interval_s", c.round_interval_s);
  r.Get("run.residual_memory_mb", c.residual_memory_mb);
  r.Get("run.spill_dir", c.spill_dir);
  r.CheckUnknown();
  if (r.error()) return r.error()->WithContext(std::string(source));
  c.flat = r.flat();

  auto err = [&](const std::string& m) { return InvalidArgumentError(std::string(source) + ": " + m); };
  if (c.rounds == 0) return err("rounds must be at least 1");
  if (c.clients == 0 || c.clients > 100'000'000) return err("population.clients must be in [1, 1e8]");
  if (c.partition != "iid" && c.partition != "dirichlet" && c.partition != "shards") {
    return err("data.partition must be iid, dirichlet or shards, got '" + c.partition + "'");
  }
  if (!(c.alpha > 0)) return err("data.alpha must be positive");
  if (!(c.holdout >= 0 && c.holdout < 1)) return err("data.holdout must be in [0, 1)");
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
