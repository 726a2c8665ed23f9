#include "frugal/coordinator/config.h"

#include "frugal/core/config_reader.h"

namespace frugal::coordinator {
namespace {

Result<ValueCoding> ParseValueCoding(const std::string& s) {
  if (s == "ternary") return ValueCoding::kTernary;
  if (s == "int8") return ValueCoding::kInt8;
  if (s == "fp16") return ValueCoding::kFp16;
  if (s == "fp32") return ValueCoding::kFp32;
  return InvalidArgumentError("unknown value coding '" + s + "' (ternary, int8, fp16, fp32)");
}

}  // namespace

std::string CoordinatorConfig::RunFingerprint() const {
  std::string s;
  for (const auto& [k, v] : flat) {
    if (k.rfind("service.", 0) == 0 || k == "rounds" || k == "target_accuracy" || k == "data.eval_examples" ||
        k == "round.min_clients" || k == "round.interval_s" || k == "data.dir") {
      continue;  // may change between restarts without changing the run
    }
    s += k + "=" + v + "\n";
  }
  return s;
}

Result<CoordinatorConfig> ParseCoordinatorConfig(std::string_view toml_text, std::string_view source,
                                                 const std::vector<std::string>& overrides) {
  FRUGAL_ASSIGN_OR_RETURN(toml::table t, ParseTomlWithOverrides(toml_text, source, overrides));
  CoordinatorConfig c;
  ConfigReader r(t);
  std::string pipeline = "frugal", values = "ternary", broadcast_values = "ternary";
  r.Get("run_id", c.run_id);
  r.Get("seed", c.seed);
  r.Get("rounds", c.rounds);
  r.Get("pipeline", pipeline);
  r.Get("model", c.model);
  r.Get("target_accuracy", c.target_accuracy);
  r.Get("data.dir", c.data_dir);
  r.Get("data.eval_examples", c.eval_examples);

  r.Get("round.clients_per_round", c.plan.clients_per_round);
  r.Get("round.over_selection", c.plan.over_selection);
  r.Get("round.deadline_s", c.plan.deadline_s);
  r.Get("round.min_quorum", c.plan.min_quorum);
  r.Get("round.min_clients", c.min_clients);
  r.Get("round.interval_s", c.round_interval_s);

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
  r.Get("uplink.error_feedback", c.error_feedback);

  r.Get("downlink.bits", c.engine.full_model.bits);
  r.Get("downlink.block_size", c.engine.full_model.block_size);
  r.Get("downlink.broadcast_density", c.engine.broadcast.density);
  r.Get("downlink.broadcast_values", broadcast_values);
  r.Get("downlink.delta_window", c.engine.delta_window);

  r.Get("server.learning_rate", c.engine.server_opt.learning_rate);
  r.Get("server.momentum", c.engine.server_opt.momentum);

  ServiceConfig& s = c.service;
  r.Get("service.listen_address", s.listen_address);
  r.Get("service.port", s.port);
  r.Get("service.port_file", s.port_file);
  r.Get("service.status_address", s.status_address);
  r.Get("service.status_port", s.status_port);
  r.Get("service.status_port_file", s.status_port_file);
  r.Get("service.ca_cert", s.ca_cert);
  r.Get("service.server_cert", s.server_cert);
  r.Get("service.server_key", s.server_key);
  r.Get("service.revoked", s.revoked);
  r.Get("service.max_connections", s.max_connections);
  r.Get("service.handshake_timeout_s", s.handshake_timeout_s);
  r.Get("service.idle_timeout_s", s.idle_timeout_s);
  r.Get("service.heartbeat_s", s.heartbeat_s);
  r.Get("service.max_frame_mb", s.max_frame_mb);
  r.Get("service.write_queue_limit", s.write_queue_limit);
  r.Get("service.store", s.store);
  r.Get("service.out_dir", s.out_dir);
  r.Get("service.profiles", s.profiles);
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
    c.error_feedback = false;
  }
  if (c.run_id.empty()) return err("run_id must not be empty");
  if (c.rounds == 0) return err("rounds must be at least 1");
  if (c.plan.clients_per_round == 0) return err("round.clients_per_round must be at least 1");
  if (!(c.plan.deadline_s > 0)) return err("round.deadline_s must be positive");
  if (c.task.train.epochs < 1 || c.task.train.batch_size < 1) return err("train.epochs and train.batch_size must be >= 1");
  if (!(c.task.uplink.density > 0 && c.task.uplink.density <= 1)) return err("uplink.density must be in (0, 1]");
  if (!(c.engine.broadcast.density > 0 && c.engine.broadcast.density <= 1)) {
    return err("downlink.broadcast_density must be in (0, 1]");
  }
  if (s.max_frame_mb == 0 || s.max_frame_mb > 2047) return err("service.max_frame_mb must be in [1, 2047]");
  if (s.port > 65535 || s.status_port > 65535) return err("service ports must be in [0, 65535]");
  if (s.max_connections == 0) return err("service.max_connections must be at least 1");
  if (!(s.heartbeat_s > 0) || !(s.idle_timeout_s > s.heartbeat_s)) {
    return err("service.idle_timeout_s must exceed service.heartbeat_s > 0");
  }
  if (c.min_clients == 0) c.min_clients = 1;
  return c;
}

Result<CoordinatorConfig> LoadCoordinatorConfig(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) return ParseCoordinatorConfig("", "(defaults)", overrides);
  FRUGAL_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  return ParseCoordinatorConfig(text, path, overrides);
}

}  // namespace frugal::coordinator
