#include "frugal/coordinator/config.h"

#include "frugal/core/config_reader.h"
#include "frugal/round/settings.h"

namespace frugal::coordinator {

std::string CoordinatorConfig::RunFingerprint() const {
  std::string s;
  for (const auto& [k, v] : flat) {
    if (k.rfind("service.", 0) == 0 || k.rfind("eval.", 0) == 0 || k == "rounds" || k == "target_accuracy" ||
        k == "round.min_clients" || k == "round.interval_s" || k == "data.dir") {
      continue;  // may change between restarts without changing the run
    }
    s += k + "=" + v + "\n";
  }
  return s;
}

std::string CoordinatorConfig::RunToml() const {
  toml::table run = effective;
  run.erase("service");
  return TomlText(run);
}

Result<CoordinatorConfig> ParseCoordinatorConfig(std::string_view toml_text, std::string_view source,
                                                 const std::vector<std::string>& overrides) {
  FRUGAL_ASSIGN_OR_RETURN(toml::table t, ParseTomlWithOverrides(toml_text, source, overrides));
  CoordinatorConfig c;
  c.run_id = "frugal-run";
  c.model = "logreg";
  c.target_accuracy = 0.8;
  if (Status st = ApplyPipelineTable(t, c.pipeline, overrides); !st.ok()) {
    return st.error().WithContext(std::string(source));
  }
  if (Status st = RenameDeprecatedKeys(t, c.warnings); !st.ok()) return st.error().WithContext(std::string(source));
  ConfigReader r(t);
  if (Status st = ReadRunSettings(r, c); !st.ok()) return st.error().WithContext(std::string(source));

  ServiceConfig& s = c.service;
  r.Get("service.listen_address", s.listen_address);
  r.Get("service.port", s.port);
  r.Get("service.port_file", s.port_file);
  r.Get("service.status_address", s.status_address);
  r.Get("service.status_port", s.status_port);
  r.Get("service.status_port_file", s.status_port_file);
  r.Get("service.status_token_file", s.status_token_file);
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
  r.Get("service.debug_hold_close_round", s.debug_hold_close_round);
  r.CheckUnknown();
  if (r.error()) return r.error()->WithContext(std::string(source));
  c.flat = r.flat();
  c.effective = r.effective();

  auto err = [&](const std::string& m) { return InvalidArgumentError(std::string(source) + ": " + m); };
  if (c.run_id.empty()) return err("run_id must not be empty");
  if (s.max_frame_mb == 0 || s.max_frame_mb > 2047) return err("service.max_frame_mb must be in [1, 2047]");
  if (s.port > 65535 || s.status_port > 65535) return err("service ports must be in [0, 65535]");
  if (s.max_connections == 0) return err("service.max_connections must be at least 1");
  if (!c.engine.secure.run_protocol) {
    return err("secure.run_protocol = false is a simulator option for accuracy runs: the service always runs the "
               "SecAgg+ protocol");
  }
  const bool loopback_status = s.status_address == "localhost" || s.status_address == "::1" ||
                               s.status_address.rfind("127.", 0) == 0;
  if (!loopback_status && s.status_token_file.empty()) {
    return err("service.status_address = \"" + s.status_address +
               "\" is not loopback: the status port then needs a bearer token (set service.status_token_file)");
  }
  if (!(s.heartbeat_s > 0) || !(s.idle_timeout_s > s.heartbeat_s)) {
    return err("service.idle_timeout_s must exceed service.heartbeat_s > 0");
  }
  return c;
}

Result<CoordinatorConfig> LoadCoordinatorConfig(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) return ParseCoordinatorConfig("", "(defaults)", overrides);
  FRUGAL_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  return ParseCoordinatorConfig(text, path, overrides);
}

}  // namespace frugal::coordinator
