#include "frugal/sim/config.h"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

namespace frugal::sim {
namespace {

std::string Render(const toml::node& n) {
  if (auto s = n.value<std::string>()) return *s;
  std::ostringstream os;
  n.visit([&](auto&& v) { os << v; });
  std::string s = os.str();
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}

// Reads typed values at dotted paths, remembers which were read, and records
// the effective value of every knob for the report.
class Reader {
 public:
  Reader(const toml::table& t, std::map<std::string, std::string>& flat) : t_(t), flat_(flat) {}

  template <typename T>
  void Get(const std::string& path, T& out) {
    used_.insert(path);
    auto node = t_.at_path(path);
    if (!node) {
      flat_[path] = Show(out);
      return;
    }
    if constexpr (std::is_same_v<T, bool>) {
      if (auto v = node.value_exact<bool>()) out = *v; else Fail(path, "a boolean");
    } else if constexpr (std::is_integral_v<T>) {
      auto v = node.value_exact<int64_t>();
      if (!v || *v < 0) Fail(path, "a non-negative integer");
      else out = static_cast<T>(*v);
    } else if constexpr (std::is_floating_point_v<T>) {
      auto v = node.value<double>();
      if (!v || !std::isfinite(*v)) Fail(path, "a finite number");
      else out = static_cast<T>(*v);
    } else {
      if (auto v = node.value_exact<std::string>()) out = *v; else Fail(path, "a string");
    }
    flat_[path] = Show(out);
  }

  void GetMix(const std::string& path, std::vector<MixWeight>& out) {
    used_.insert(path);
    auto node = t_.at_path(path);
    if (!node) {
      flat_[path] = ShowMix(out);
      return;
    }
    const toml::table* tbl = node.as_table();
    if (tbl == nullptr) {
      Fail(path, "a table of id = share");
      return;
    }
    out.clear();
    for (auto&& [k, v] : *tbl) {
      auto w = v.value<double>();
      if (!w || !std::isfinite(*w) || *w < 0) {
        Fail(path + "." + std::string(k.str()), "a non-negative share");
        return;
      }
      out.push_back({std::string(k.str()), *w});
    }
    flat_[path] = ShowMix(out);
  }

  // Every leaf the file set that no Get() read.
  void CheckUnknown() {
    Walk(t_, "");
  }

  std::optional<Error> error;

 private:
  void Walk(const toml::table& t, const std::string& prefix) {
    for (auto&& [k, v] : t) {
      const std::string path = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      if (used_.contains(path)) continue;
      if (const toml::table* sub = v.as_table()) {
        Walk(*sub, path);
      } else if (!error) {
        error = InvalidArgumentError("unknown configuration key '" + path + "'");
      }
    }
  }
  void Fail(const std::string& path, const char* want) {
    if (!error) {
      error = InvalidArgumentError("configuration key '" + path + "' must be " + want + ", got " +
                                   Render(*t_.at_path(path).node()));
    }
  }
  template <typename T>
  static std::string Show(const T& v) {
    if constexpr (std::is_same_v<T, std::string>) return v;
    else if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
    else {
      std::ostringstream os;
      os << v;
      return os.str();
    }
  }
  static std::string ShowMix(const std::vector<MixWeight>& m) {
    std::string s;
    for (const auto& w : m) s += (s.empty() ? "" : ", ") + w.id + "=" + Show(w.weight);
    return s;
  }

  const toml::table& t_;
  std::map<std::string, std::string>& flat_;
  std::set<std::string> used_;
};

Status ApplyOverride(toml::table& t, const std::string& kv) {
  const size_t eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) {
    return InvalidArgumentError("override '" + kv + "' is not of the form key=value");
  }
  const std::string key = kv.substr(0, eq);
  const std::string value = kv.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    // Not a TOML literal: take it as a bare string (pipeline=dense).
    parsed.insert_or_assign("v", value);
  }
  toml::table* cur = &t;
  size_t start = 0;
  for (;;) {
    const size_t dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) return InvalidArgumentError("override key '" + key + "' has an empty component");
    if (dot == std::string::npos) {
      cur->insert_or_assign(part, *parsed.get("v"));
      return OkStatus();
    }
    auto* next = cur->get(part);
    if (next == nullptr) {
      cur->insert_or_assign(part, toml::table{});
      next = cur->get(part);
    }
    if (!next->is_table()) return InvalidArgumentError("override key '" + key + "': '" + part + "' is not a table");
    cur = next->as_table();
    start = dot + 1;
  }
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
  toml::table t;
  try {
    t = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << source << ":" << e.source().begin.line << ":" << e.source().begin.column << ": " << e.description();
    return InvalidArgumentError(os.str());
  }
  for (const std::string& o : overrides) FRUGAL_RETURN_IF_ERROR(ApplyOverride(t, o));

  SimConfig c;
  // Defaults that differ from the structs' own.
  c.devices = {{"phone-low", 0.2}, {"phone-mid", 0.4}, {"phone-flagship", 0.2}, {"rpi4", 0.1}, {"laptop", 0.1}};
  c.radios = {{"wifi", 0.5}, {"lte", 0.35}, {"5g", 0.15}};
  c.regions = {{"world", 1.0}};
  c.availability = {{"always", 1.0}};
  // Sampled selection picks the same top-k set as exact selection, 2-7x faster (docs/benchmarks.md).
  c.task.uplink.exact_topk = false;
  c.engine.broadcast.exact_topk = false;

  Reader r(t, c.flat);
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
  r.GetMix("population.devices", c.devices);
  r.GetMix("population.radios", c.radios);
  r.GetMix("population.regions", c.regions);
  r.GetMix("population.availability", c.availability);
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
  if (r.error) return r.error->WithContext(std::string(source));

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
  std::ifstream in(path);
  if (!in) return NotFoundError("cannot open configuration file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseSimConfig(ss.str(), path, overrides);
}

}  // namespace frugal::sim
