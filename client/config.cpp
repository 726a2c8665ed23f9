#include "frugal/client/config.h"

#include "frugal/core/config_reader.h"

namespace frugal::client {

Result<ClientConfig> ParseClientConfig(std::string_view toml_text, std::string_view source,
                                       const std::vector<std::string>& overrides) {
  FRUGAL_ASSIGN_OR_RETURN(toml::table t, ParseTomlWithOverrides(toml_text, source, overrides));
  ClientConfig c;
  ConfigReader r(t);
  r.Get("name", c.name);
  r.Get("coordinator.host", c.host);
  r.Get("coordinator.port", c.port);
  r.Get("coordinator.port_file", c.port_file);
  r.Get("tls.ca_cert", c.ca_cert);
  r.Get("tls.cert", c.cert);
  r.Get("tls.key", c.key);
  r.Get("tls.identity", c.identity);
  r.Get("secure.require_identity", c.require_identity);
  r.Get("secure.history_steps", c.history_steps);
  r.Get("device.class", c.device);
  r.Get("device.radio", c.radio);
  r.Get("device.region", c.region);
  r.Get("device.profiles", c.profiles);
  r.Get("device.rapl_root", c.rapl_root);
  r.Get("device.battery_meter", c.battery_meter);
  r.Get("device.battery_sample_hz", c.battery_sample_hz);
  r.Get("state_dir", c.state_dir);
  r.Get("connection.backoff_initial_s", c.backoff_initial_s);
  r.Get("connection.backoff_max_s", c.backoff_max_s);
  r.Get("connection.max_attempts", c.max_attempts);
  r.Get("connection.read_timeout_s", c.read_timeout_s);
  r.Get("connection.max_frame_mb", c.max_frame_mb);
  r.Get("connection.exit_on_run_complete", c.exit_on_run_complete);
  r.Get("debug.secagg_hold_round", c.secagg_hold_round);
  DataConfig& d = c.data;
  r.Get("data.source", d.source);
  r.Get("data.fmnist_dir", d.fmnist_dir);
  r.Get("data.partition", d.partition);
  r.Get("data.clients", d.clients);
  r.Get("data.index", d.index);
  r.Get("data.alpha", d.alpha);
  r.Get("data.shards_per_client", d.shards_per_client);
  r.Get("data.seed", d.seed);
  r.Get("data.holdout", d.holdout);
  r.Get("data.idx_images", d.idx_images);
  r.Get("data.idx_labels", d.idx_labels);
  r.Get("data.csv", d.csv);
  r.Get("data.table", d.table);
  r.Get("data.csv_num_classes", d.csv_num_classes);
  r.Get("data.csv_feature_scale", d.csv_feature_scale);
  r.Get("data.csv_header", d.csv_header);
  PolicyConfig& p = c.policy;
  r.Get("policy.power_supply_root", p.power_supply_root);
  r.Get("policy.min_battery_percent", p.min_battery_percent);
  r.Get("policy.require_charging", p.require_charging);
  r.Get("policy.allow_metered", p.allow_metered);
  r.Get("policy.network", p.network);
  r.CheckUnknown();
  if (r.error()) return r.error()->WithContext(std::string(source));
  c.flat = r.flat();

  auto err = [&](const std::string& m) { return InvalidArgumentError(std::string(source) + ": " + m); };
  if (c.name.empty()) return err("name (the client identity, = certificate CN) is required");
  if (c.cert.empty() || c.key.empty() || c.ca_cert.empty()) return err("tls.ca_cert, tls.cert and tls.key are required");
  if (c.identity.empty()) {
    const std::string suffix = ".crt";
    c.identity = c.cert.size() > suffix.size() && c.cert.ends_with(suffix)
                     ? c.cert.substr(0, c.cert.size() - suffix.size()) + ".idc"
                     : c.cert + ".idc";
  }
  if (c.port == 0 && c.port_file.empty()) return err("coordinator.port or coordinator.port_file is required");
  if (c.port > 65535) return err("coordinator.port must be in [1, 65535]");
  if (d.source == "fmnist-partition") {
    if (d.clients == 0 || d.index >= d.clients) return err("data.index must be below data.clients");
    if (d.partition != "iid" && d.partition != "dirichlet" && d.partition != "shards") {
      return err("data.partition must be iid, dirichlet or shards");
    }
    if (!(d.alpha > 0)) return err("data.alpha must be positive");
  } else if (d.source == "idx") {
    if (d.idx_images.empty() || d.idx_labels.empty()) return err("data.idx_images and data.idx_labels are required");
  } else if (d.source == "csv") {
    if (d.csv.empty()) return err("data.csv is required");
    if (!(d.csv_feature_scale > 0)) return err("data.csv_feature_scale must be positive");
  } else if (d.source == "table") {
    if (d.table.empty()) return err("data.table (a dataset manifest) is required");
  } else {
    return err("data.source must be fmnist-partition, idx, csv or table, got '" + d.source + "'");
  }
  if (!(d.holdout >= 0 && d.holdout < 1)) return err("data.holdout must be in [0, 1)");
  if (p.network != "auto" && p.network != "metered" && p.network != "unmetered") {
    return err("policy.network must be auto, metered or unmetered");
  }
  if (!(c.backoff_initial_s > 0) || c.backoff_max_s < c.backoff_initial_s) {
    return err("connection.backoff_max_s must be >= connection.backoff_initial_s > 0");
  }
  if (c.max_frame_mb == 0 || c.max_frame_mb > 2047) return err("connection.max_frame_mb must be in [1, 2047]");
  if (!(c.read_timeout_s > 0)) return err("connection.read_timeout_s must be positive");
  if (!(c.battery_sample_hz >= 1 && c.battery_sample_hz <= 100)) {
    return err("device.battery_sample_hz must be in [1, 100]");
  }
  return c;
}

Result<ClientConfig> LoadClientConfig(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) return ParseClientConfig("", "(defaults)", overrides);
  FRUGAL_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  return ParseClientConfig(text, path, overrides);
}

}  // namespace frugal::client
