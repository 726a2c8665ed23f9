#include "frugal/sim/config.h"

#include <algorithm>
#include <filesystem>

#include "frugal/core/config_reader.h"
#include "frugal/report/run_dir.h"
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

Status CheckAttack(const AttackConfig& a) {
  if (!a.active()) return OkStatus();
  if (!(a.fraction >= 0 && a.fraction <= 1)) return InvalidArgumentError("attack.fraction must be in [0, 1]");
  if (!(a.scale > 0)) return InvalidArgumentError("attack.scale must be positive");
  if (!(a.sigma > 0)) return InvalidArgumentError("attack.sigma must be positive");
  if (!(a.epsilon > 0)) return InvalidArgumentError("attack.epsilon must be positive");
  if (a.start_round < 1) return InvalidArgumentError("attack.start_round must be 1 or more (rounds count from 1)");
  if (!(a.poison_fraction > 0 && a.poison_fraction <= 1)) {
    return InvalidArgumentError("attack.poison_fraction must be in (0, 1]");
  }
  if (a.target_label < 0 || static_cast<size_t>(a.target_label) >= kFashionMnistClasses) {
    return InvalidArgumentError("attack.target_label must be a Fashion-MNIST class, 0 to 9");
  }
  return OkStatus();
}

// Reads [attack]. Only the keys of the chosen kind are read, and any other
// key of the table is refused by name: a scale given to a Gaussian attack
// would otherwise be silently ignored. Defaults that depend on the kind are
// set before the read, so the effective configuration records them.
Status ReadAttack(ConfigReader& r, const toml::table& t, SimConfig& c) {
  std::string kind = "none";
  r.Get("attack.kind", kind);
  FRUGAL_ASSIGN_OR_RETURN(c.attack.kind, ParseAttackKind(kind));
  AttackConfig& a = c.attack;
  std::vector<std::string> keys = {"kind"};
  if (a.active()) {
    keys.push_back("fraction");
    keys.push_back("start_round");
  }
  switch (a.kind) {
    case AttackKind::kSignFlip:
    case AttackKind::kBackdoor:
      keys.push_back("scale");
      break;
    case AttackKind::kScaling:
      // Model replacement (Bagdasaryan et al. 2020): scaled by n / eta, with
      // n the clients per round and eta the server learning rate (1 here).
      a.scale = c.plan.clients_per_round;
      keys.push_back("scale");
      break;
    case AttackKind::kGaussian: keys.push_back("sigma"); break;
    case AttackKind::kAlie: keys.push_back("z"); break;
    case AttackKind::kAlieFlanders: break;  // z is Flower's formula's, every round
    case AttackKind::kIpm: keys.push_back("epsilon"); break;
    case AttackKind::kLabelFlip:
    case AttackKind::kNone: break;
  }
  if (a.kind == AttackKind::kBackdoor) {
    keys.push_back("poison_fraction");
    keys.push_back("target_label");
  }
  if (const toml::table* at = t["attack"].as_table()) {
    for (const auto& [k, v] : *at) {
      if (std::find(keys.begin(), keys.end(), k.str()) == keys.end()) {
        return InvalidArgumentError("attack." + std::string(k.str()) + " does not apply to attack.kind = '" + kind +
                                    "'");
      }
    }
  }
  if (!a.active()) return OkStatus();
  r.Get("attack.fraction", a.fraction);
  r.Get("attack.start_round", a.start_round);
  if (a.kind == AttackKind::kAlie) {
    // Unset: z from n and m each round (AlieZ); only a value given is recorded.
    if (t.at_path("attack.z").node() != nullptr) {
      double z = 0;
      r.Get("attack.z", z);
      a.z = z;
    }
  }
  r.Get("attack.scale", a.scale);
  r.Get("attack.sigma", a.sigma);
  r.Get("attack.epsilon", a.epsilon);
  r.Get("attack.poison_fraction", a.poison_fraction);
  int target = a.target_label;
  r.Get("attack.target_label", target);
  a.target_label = target;
  return OkStatus();
}

}  // namespace

Result<SimConfig> ParseSimConfig(std::string_view toml_text, std::string_view source,
                                 const std::vector<std::string>& overrides) {
  FRUGAL_ASSIGN_OR_RETURN(toml::table t, ParseTomlWithOverrides(toml_text, source, overrides));
  SimConfig c;
  if (Status st = ApplyPipelineTable(t, c.pipeline, overrides); !st.ok()) {
    return st.error().WithContext(std::string(source));
  }
  if (Status st = RenameDeprecatedKeys(t, c.warnings); !st.ok()) return st.error().WithContext(std::string(source));
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
  r.Get("data.partition", c.partition);
  r.Get("data.alpha", c.alpha);
  r.Get("data.shards_per_client", c.shards_per_client);
  r.Get("data.samples_per_client", c.samples_per_client);
  r.Get("data.holdout", c.holdout);

  r.Get("population.clients", c.clients);
  GetMix(r, "population.devices", c.devices);
  GetMix(r, "population.radios", c.radios);
  GetMix(r, "population.regions", c.regions);
  GetMix(r, "population.availability", c.availability);
  r.Get("population.require_charging", c.require_charging);
  r.Get("population.dropout", c.dropout);
  r.Get("population.profiles", c.profiles);

  if (Status st = ReadRunSettings(r, c); !st.ok()) return st.error().WithContext(std::string(source));

  r.Get("run.threads", c.threads);
  r.Get("run.start_utc_hour", c.start_utc_hour);
  r.Get("run.residual_memory_mb", c.residual_memory_mb);
  r.Get("run.spill_dir", c.spill_dir);
  if (Status st = ReadAttack(r, t, c); !st.ok()) return st.error().WithContext(std::string(source));
  r.CheckUnknown();
  if (r.error()) return r.error()->WithContext(std::string(source));
  c.flat = r.flat();
  c.effective = r.effective();
  if (c.run_id.empty()) {
    c.run_id = c.name + "-" + std::to_string(c.seed);
    c.flat["run_id"] = c.run_id;
    c.effective.insert_or_assign("run_id", c.run_id);
  }

  auto err = [&](const std::string& m) { return InvalidArgumentError(std::string(source) + ": " + m); };
  if (c.clients == 0 || c.clients > 100'000'000) return err("population.clients must be in [1, 1e8]");
  if (c.partition != "iid" && c.partition != "dirichlet" && c.partition != "shards") {
    return err("data.partition must be iid, dirichlet or shards, got '" + c.partition + "'");
  }
  if (!(c.alpha > 0)) return err("data.alpha must be positive");
  if (!(c.holdout >= 0 && c.holdout < 1)) return err("data.holdout must be in [0, 1)");
  // Held-out examples serve federated evaluation, which the simulator does not
  // run: they would only be thrown away while the run looked like another task.
  // (A replay keeps its clients' holdouts: they decide what each trained on.)
  if (c.holdout > 0) {
    return err("data.holdout: frugal-sim evaluates on the test set and does not simulate federated evaluation, so "
               "held-out examples would only be thrown away; set it to 0");
  }
  if (c.dropout < 0 || c.dropout >= 1) return err("population.dropout must be in [0, 1)");
  if (c.devices.empty() || c.radios.empty() || c.regions.empty() || c.availability.empty()) {
    return err("population mixes (devices, radios, regions, availability) must not be empty");
  }
  for (const auto& a : c.availability) {
    if (a.id != "always" && a.id != "diurnal") return err("unknown availability pattern '" + a.id + "' (always, diurnal)");
  }
  if (Status st = CheckAttack(c.attack); !st.ok()) return err(st.error().message());
  return c;
}

Result<SimConfig> LoadSimConfig(const std::string& path, const std::vector<std::string>& overrides) {
  FRUGAL_ASSIGN_OR_RETURN(const std::string text, ReadTextFile(path));
  return ParseSimConfig(text, path, overrides);
}

Result<SimConfig> LoadReplayConfig(const std::string& run_dir, const std::vector<std::string>& overrides) {
  const std::filesystem::path dir(run_dir);
  FRUGAL_ASSIGN_OR_RETURN(const std::string toml_text, ReadTextFile((dir / "run.toml").string()));
  FRUGAL_ASSIGN_OR_RETURN(SimConfig c, ParseSimConfig(toml_text, (dir / "run.toml").string(), overrides));
  FRUGAL_ASSIGN_OR_RETURN(const std::string clients_text, ReadTextFile((dir / "clients.csv").string()));
  auto roster = ParseClientsCsv(clients_text);
  if (!roster.ok()) return roster.error().WithContext((dir / "clients.csv").string());
  if (roster->empty()) return InvalidArgumentError((dir / "clients.csv").string() + " lists no clients");
  FRUGAL_ASSIGN_OR_RETURN(const std::string rounds_text, ReadTextFile((dir / "rounds.csv").string()));
  auto rounds = ParseRoundsCsv(rounds_text);
  if (!rounds.ok()) return rounds.error().WithContext((dir / "rounds.csv").string());
  if (rounds->empty()) return InvalidArgumentError((dir / "rounds.csv").string() + " holds no finished round");
  c.name = "replay";
  c.rounds = static_cast<uint32_t>(rounds->size());
  for (const RoundRecord& r : *rounds) c.replay_utc_hours.push_back(r.utc_hour);
  c.roster = std::move(*roster);
  c.clients = c.roster.size();
  if (const auto& p = c.roster.front().partition) {
    c.partition = p->scheme;
    c.alpha = p->alpha;
    c.shards_per_client = static_cast<uint32_t>(p->shards_per_client);
    c.holdout = p->holdout;
  }
  c.flat["replay_of"] = run_dir;
  return c;
}

}  // namespace frugal::sim
