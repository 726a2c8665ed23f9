#include "frugal/client/agent.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include "frugal/client/device_policy.h"
#include "frugal/core/config_reader.h"
#include "frugal/privacy/identity.h"
#include "frugal/data/partition.h"
#include "frugal/client/battery_meter.h"
#include "frugal/data/table.h"
#include "frugal/energy/meter.h"
#include "frugal/energy/profiles.h"
#include "frugal/proto/frame.h"
#include "tls_connection.h"

namespace frugal::client {
namespace {

Result<uint16_t> ResolvePort(const ClientConfig& c) {
  if (c.port_file.empty()) return static_cast<uint16_t>(c.port);
  std::ifstream in(c.port_file);
  uint32_t port = 0;
  if (!(in >> port) || port == 0 || port > 65535) {
    return UnavailableError("no port in " + c.port_file + " yet");
  }
  return static_cast<uint16_t>(port);
}

}  // namespace

double BackoffSeconds(double initial_s, double max_s, uint32_t attempt, Rng& rng) {
  const double exp = initial_s * std::pow(2.0, std::min<uint32_t>(attempt, 30));
  return std::min(max_s, exp) * (0.5 + 0.5 * rng.Uniform());
}

int ExitCodeFor(const Status& run_result) {
  if (run_result.ok()) return kExitOk;
  switch (run_result.error().code()) {
    case ErrorCode::kPermissionDenied: return kExitPermissionDenied;
    case ErrorCode::kFailedPrecondition: return kExitProtocolVersion;
    case ErrorCode::kUnauthenticated: return kExitUnauthenticated;
    default: return kExitGaveUp;
  }
}

Result<LocalData> LoadLocalData(const DataConfig& cfg) {
  LocalData out;
  if (cfg.source == "fmnist-partition") {
    const std::string dir = cfg.fmnist_dir.empty() ? std::string(FRUGAL_FMNIST_DIR) : cfg.fmnist_dir;
    // Partition on the labels alone, then read only this client's rows: a
    // tenth of the set costs a tenth of the memory (pixels stay bytes).
    FRUGAL_ASSIGN_OR_RETURN(std::vector<int32_t> labels, LoadFashionMnistLabels(Split::kTrain, dir));
    // The simulator's own partition of the same seed (PartitionForClient).
    const PartitionSpec spec{.scheme = cfg.partition, .clients = cfg.clients, .alpha = cfg.alpha,
                             .shards_per_client = cfg.shards_per_client, .seed = cfg.seed, .holdout = cfg.holdout};
    Result<HoldoutSplit> split = PartitionForClient(labels, kFashionMnistClasses, spec, cfg.index);
    if (!split.ok()) return split.error().WithContext("partitioning Fashion-MNIST");
    std::vector<uint32_t> rows = split->train;
    rows.insert(rows.end(), split->holdout.begin(), split->holdout.end());
    std::sort(rows.begin(), rows.end());
    FRUGAL_ASSIGN_OR_RETURN(out.data, LoadFashionMnistRows(Split::kTrain, rows, dir));
    // The partition's own order of examples, as positions in the rows read.
    auto position = [&](uint32_t r) {
      return static_cast<uint32_t>(std::lower_bound(rows.begin(), rows.end(), r) - rows.begin());
    };
    for (uint32_t r : split->train) out.indices.push_back(position(r));
    for (uint32_t r : split->holdout) out.holdout.push_back(position(r));
    if (out.indices.empty()) return InvalidArgumentError("the local data set is empty");
    return out;
  } else {
    if (cfg.source == "idx") {
      FRUGAL_ASSIGN_OR_RETURN(out.data, LoadIdx(cfg.idx_images, cfg.idx_labels));
    } else if (cfg.source == "table") {
      // The device's own table, declared by a manifest (label and feature
      // columns, normalisation): its training split is this client's data.
      FRUGAL_ASSIGN_OR_RETURN(out.data, LoadDataSplit(Split::kTrain, cfg.table));
    } else {
      CsvOptions o;
      o.num_classes = cfg.csv_num_classes;
      o.feature_scale = static_cast<float>(cfg.csv_feature_scale);
      o.has_header = cfg.csv_header;
      FRUGAL_ASSIGN_OR_RETURN(out.data, LoadCsv(cfg.csv, o));
    }
    out.indices.resize(out.data.size());
    for (uint32_t i = 0; i < out.data.size(); ++i) out.indices[i] = i;
  }
  if (out.indices.empty()) return InvalidArgumentError("the local data set is empty");
  const PartitionSpec whole{.clients = 1, .seed = cfg.seed, .holdout = cfg.holdout};
  HoldoutSplit split = SplitClientHoldout(out.indices, whole, cfg.index);
  out.indices = std::move(split.train);
  out.holdout = std::move(split.holdout);
  return out;
}

struct Agent::Impl {
  ClientConfig cfg;
  LocalData local;
  EnergyProfiles profiles;
  std::unique_ptr<EnergyMeter> meter;  // RAPL when the machine exposes it
  std::unique_ptr<BatteryMeter> battery;  // the battery's fuel gauge, when it has one
  std::unique_ptr<boost::asio::ssl::context> ctx;
  Rng rng{1};
  TaskLoopEnv env;
  // The model and residual this client holds; survive reconnects (the residual restarts too).
  std::unique_ptr<LocalState> state;

  // One connection: connect, Hello, then the task loop until it decides.
  LoopDecision Session();
  Status Send(TlsConnection& conn, const v1::Envelope& message) {
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, EncodeEnvelope(message, cfg.max_frame_mb << 20));
    return conn.Write(bytes, cfg.read_timeout_s);
  }
};

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Agent::~Agent() = default;

Result<std::unique_ptr<Agent>> Agent::Create(const ClientConfig& config, embed::Trainer* app) {
  SilenceProtobufLogs();
  auto impl = std::make_unique<Impl>();
  Impl& s = *impl;
  s.cfg = config;
  if (app != nullptr) {
    // The app's data stay the app's: only their shape and count reach the agent.
    if (app->input_dim() == 0 || app->num_classes() < 2 || app->num_examples() == 0) {
      return InvalidArgumentError("the embedding app needs input_dim > 0, num_classes >= 2 and examples");
    }
    s.local.data.num_features = app->input_dim();
    s.local.data.num_classes = app->num_classes();
    s.env.app = app;
  } else {
    FRUGAL_ASSIGN_OR_RETURN(s.local, LoadLocalData(config.data));
  }
  FRUGAL_ASSIGN_OR_RETURN(s.profiles, config.profiles.empty() ? EnergyProfiles::LoadDefault()
                                                              : EnergyProfiles::LoadDefaultWithOverride(config.profiles));
  FRUGAL_ASSIGN_OR_RETURN(s.env.device, s.profiles.Device(config.device));
  FRUGAL_ASSIGN_OR_RETURN(s.env.radio, s.profiles.Radio(config.radio));
  FRUGAL_RETURN_IF_ERROR(s.profiles.Region(config.region).status());
  if (auto rapl = OpenRapl(config.rapl_root); rapl.ok()) {
    s.meter = std::move(*rapl);
    spdlog::info("measuring compute energy with RAPL under {}", config.rapl_root);
  }
  if (config.battery_meter) {
    auto battery = FindBattery(config.policy.power_supply_root);
    auto opened = battery.ok() ? BatteryMeter::Open(*battery, config.battery_sample_hz)
                               : Result<std::unique_ptr<BatteryMeter>>(battery.error());
    if (opened.ok()) {
      s.battery = std::move(*opened);
      s.battery->StartSampling();
      spdlog::info("measuring task energy with the fuel gauge of {} at {} Hz while a task runs",
                   s.battery->Describe(), config.battery_sample_hz);
    } else {
      spdlog::info("no battery fuel gauge: energy is modelled ({})", opened.error().message());
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(config.state_dir, ec);
  if (ec) return UnavailableError("cannot create state_dir " + config.state_dir + ": " + ec.message());
  s.state = std::make_unique<LocalState>((std::filesystem::path(config.state_dir) / "residual.bin").string());
  s.state->KeepSteps(config.history_steps);
  s.rng = Rng(std::hash<std::string>{}(config.name) ^ static_cast<uint64_t>(::time(nullptr)));
  FRUGAL_ASSIGN_OR_RETURN(s.ctx, MakeClientContext(config));
  s.env.config = &s.cfg;
  s.env.local = &s.local;
  s.env.meter = s.meter.get();
  s.env.phases = s.battery.get();
  s.env.decide = [&cfg = s.cfg] {
    return DecideTask(cfg.policy, ReadPowerState(cfg.policy.power_supply_root), cfg.radio);
  };
  s.env.identity = [&cfg = s.cfg]() -> Result<privacy::SecureIdentity> {
    // Read at each secure round, so a credential renewed on disk is picked up.
    privacy::SecureIdentity id;
    FRUGAL_ASSIGN_OR_RETURN(std::string ca_pem, ReadTextFile(cfg.ca_cert));
    FRUGAL_ASSIGN_OR_RETURN(id.ca_public, privacy::P256PublicKeyFromPem(ca_pem));
    FRUGAL_ASSIGN_OR_RETURN(std::string key_pem, ReadTextFile(cfg.key));
    FRUGAL_ASSIGN_OR_RETURN(privacy::P256Key key, privacy::P256Key::FromPem(key_pem));
    auto idc = ReadTextFile(cfg.identity);
    if (!idc.ok()) {
      return idc.error().WithContext("tls.identity (the CA's identity credential, written by `frugal-coordinator ca "
                                     "issue` beside the certificate)");
    }
    FRUGAL_ASSIGN_OR_RETURN(id.credential,
                            privacy::DecodeIdentityCredentialFile(std::span(
                                reinterpret_cast<const uint8_t*>(idc->data()), idc->size())));
    if (id.credential.name != cfg.name) {
      return InvalidArgumentError("tls.identity " + cfg.identity + " is for '" + id.credential.name + "', not '" +
                                  cfg.name + "'");
    }
    if (id.credential.public_key != key.public_key()) {
      return InvalidArgumentError("tls.identity " + cfg.identity + " certifies another key than tls.key " + cfg.key);
    }
    id.key = std::make_shared<const privacy::P256Key>(std::move(key));
    return id;
  };
  if (s.cfg.require_identity) {
    // An agent that must bind its keys checks its files at start-up, so a
    // missing or mismatched credential is a configuration error (exit 2) and
    // not a refusal in the middle of a secure round.
    if (auto id = s.env.identity(); !id.ok()) return id.error().WithContext("secure.require_identity");
  }
  s.env.cpu_seconds = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

Status Agent::Run() {
  Impl& s = *impl_;
  uint32_t failures = 0;
  for (;;) {
    const LoopDecision d = s.Session();
    if (d.kind == LoopDecision::Kind::kStop) return d.error ? Status(*d.error) : OkStatus();
    if (d.error) {
      ++failures;
      if (s.cfg.max_attempts != 0 && failures >= s.cfg.max_attempts) {
        return UnavailableError("giving up after " + std::to_string(failures) + " attempts: " + d.error->message());
      }
    } else {
      failures = 0;  // a session that served resets the backoff
    }
    const double wait = BackoffSeconds(s.cfg.backoff_initial_s, s.cfg.backoff_max_s, failures, s.rng);
    spdlog::info("{}: {}; reconnecting in {:.1f} s", s.cfg.name, d.error ? d.error->message() : "connection lost",
                 wait);
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(wait * 1000)));
  }
}

LoopDecision Agent::Impl::Session() {
  auto port = ResolvePort(cfg);
  if (!port.ok()) return LoopDecision::Reconnect(port.error());
  TaskLoop loop(env, *state);
  TlsConnection conn(*ctx);
  if (Status st = conn.Connect(cfg.host, *port, cfg.read_timeout_s); !st.ok()) return loop.OnConnectionLost(st.error());
  if (Status st = Send(conn, loop.Hello()); !st.ok()) return loop.OnConnectionLost(st.error());
  EnvelopeDecoder decoder(cfg.max_frame_mb << 20);
  std::vector<uint8_t> buf(64 * 1024);
  for (;;) {
    auto n = conn.ReadSome(buf, cfg.read_timeout_s);
    if (!n.ok()) return loop.OnConnectionLost(n.error());
    if (Status st = decoder.Feed(std::span(buf.data(), *n)); !st.ok()) return loop.OnDecodeError(st.error(), {});
    for (;;) {
      auto env_or = decoder.Next();
      if (!env_or.ok()) return loop.OnDecodeError(env_or.error(), decoder.foreign_version());
      if (!env_or->has_value()) break;
      LoopStep step = loop.OnEnvelope(**env_or);
      for (const v1::Envelope& out : step.send) {
        if (Status st = Send(conn, out); !st.ok()) return loop.OnConnectionLost(st.error());
      }
      if (step.decision.kind != LoopDecision::Kind::kContinue) return step.decision;
    }
  }
}

}  // namespace frugal::client
