#include "frugal/client/agent.h"

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include "frugal/client/device_policy.h"
#include "frugal/core/random.h"
#include "frugal/data/partition.h"
#include "frugal/energy/meter.h"
#include "frugal/energy/model.h"
#include "frugal/energy/profiles.h"
#include "frugal/model/model.h"
#include "frugal/proto/frame.h"
#include "frugal/round/client_task.h"
#include "frugal/round/model_payload.h"

namespace frugal::client {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

constexpr uint32_t kResidualMagic = 0x53455246;  // "FRES"

uint32_t Crc(std::span<const float> v) {
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(v.data()), static_cast<uInt>(v.size() * sizeof(float))));
}

ValueCoding FromWire(v1::CodecConfig::Values v) {
  switch (v) {
    case v1::CodecConfig::VALUES_INT8: return ValueCoding::kInt8;
    case v1::CodecConfig::VALUES_FP16: return ValueCoding::kFp16;
    case v1::CodecConfig::VALUES_FP32: return ValueCoding::kFp32;
    default: return ValueCoding::kTernary;
  }
}

// How one connection ended.
enum class Ending { kRunComplete, kLost, kRefused };

// A TLS connection with blocking calls bounded by timeouts (each runs the
// io_context until the operation completes or the time is up).
class TlsConnection {
 public:
  explicit TlsConnection(ssl::context& ctx) : stream_(io_, ctx) {}

  Status Connect(const std::string& host, uint16_t port, double timeout_s) {
    boost::system::error_code ec;
    tcp::resolver resolver(io_);
    auto endpoints = resolver.resolve(host, std::to_string(port), ec);
    if (ec) return UnavailableError("resolving " + host + ": " + ec.message());
    boost::system::error_code op_ec = asio::error::would_block;
    asio::async_connect(stream_.lowest_layer(), endpoints,
                        [&](const boost::system::error_code& e, const tcp::endpoint&) { op_ec = e; });
    FRUGAL_RETURN_IF_ERROR(Wait(op_ec, timeout_s, "connect"));
    if (op_ec) return UnavailableError("connecting to " + host + ":" + std::to_string(port) + ": " + op_ec.message());
    op_ec = asio::error::would_block;
    stream_.async_handshake(ssl::stream_base::client, [&](const boost::system::error_code& e) { op_ec = e; });
    FRUGAL_RETURN_IF_ERROR(Wait(op_ec, timeout_s, "TLS handshake"));
    if (op_ec) return UnavailableError("TLS handshake with " + host + ": " + op_ec.message());
    return OkStatus();
  }

  Status Write(std::span<const uint8_t> bytes, double timeout_s) {
    boost::system::error_code op_ec = asio::error::would_block;
    asio::async_write(stream_, asio::buffer(bytes.data(), bytes.size()),
                      [&](const boost::system::error_code& e, size_t) { op_ec = e; });
    FRUGAL_RETURN_IF_ERROR(Wait(op_ec, timeout_s, "write"));
    if (op_ec) return UnavailableError("write: " + op_ec.message());
    bytes_out_ += bytes.size();
    return OkStatus();
  }

  // Reads what is available (at least one byte); kDeadlineExceeded on timeout.
  Result<size_t> ReadSome(std::span<uint8_t> buf, double timeout_s) {
    boost::system::error_code op_ec = asio::error::would_block;
    size_t got = 0;
    stream_.async_read_some(asio::buffer(buf.data(), buf.size()), [&](const boost::system::error_code& e, size_t n) {
      op_ec = e;
      got = n;
    });
    FRUGAL_RETURN_IF_ERROR(Wait(op_ec, timeout_s, "read"));
    if (op_ec == asio::error::eof || op_ec == ssl::error::stream_truncated) {
      return UnavailableError("the coordinator closed the connection");
    }
    if (op_ec) return UnavailableError("read: " + op_ec.message());
    return got;
  }

  void Close() {
    boost::system::error_code ignored;
    stream_.lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.lowest_layer().close(ignored);
  }

 private:
  Status Wait(boost::system::error_code& op_ec, double timeout_s, const char* what) {
    io_.restart();
    io_.run_for(std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
    if (op_ec == asio::error::would_block) {
      Close();
      io_.restart();
      io_.run();  // let the cancelled handler run before its captures go out of scope
      return Error(ErrorCode::kDeadlineExceeded, std::string(what) + " timed out");
    }
    return OkStatus();
  }

  asio::io_context io_;
  ssl::stream<tcp::socket> stream_;
  uint64_t bytes_out_ = 0;
};

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

Status SaveResidual(const std::string& path, std::span<const float> residual) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return UnavailableError("cannot create " + tmp);
    const uint32_t header[3] = {kResidualMagic, static_cast<uint32_t>(residual.size()), Crc(residual)};
    out.write(reinterpret_cast<const char*>(header), sizeof header);
    out.write(reinterpret_cast<const char*>(residual.data()), static_cast<std::streamsize>(residual.size_bytes()));
    out.flush();
    if (!out) return UnavailableError("error writing " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return UnavailableError("cannot rename " + tmp + ": " + ec.message());
  return OkStatus();
}

Result<std::vector<float>> LoadResidual(const std::string& path, size_t dim) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("no residual file " + path);
  uint32_t header[3] = {0, 0, 0};
  in.read(reinterpret_cast<char*>(header), sizeof header);
  if (!in || header[0] != kResidualMagic) return DataLossError(path + " is not a residual file");
  if (header[1] != dim) {
    return DataLossError(path + " holds " + std::to_string(header[1]) + " values, the model has " +
                         std::to_string(dim));
  }
  std::vector<float> v(dim);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(dim * sizeof(float)));
  if (!in || in.peek() != std::char_traits<char>::eof()) return DataLossError(path + " has the wrong length");
  if (Crc(v) != header[2]) return DataLossError(path + " fails its checksum");
  return v;
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
  const DeviceProfile* device = nullptr;
  const RadioProfile* radio = nullptr;
  std::unique_ptr<EnergyMeter> meter;  // RAPL when the machine exposes it
  std::unique_ptr<ssl::context> ctx;
  Rng rng{1};

  // The model this client holds; survives reconnects (not restarts).
  std::unique_ptr<Model> model;
  std::unique_ptr<ModelWorkspace> ws;
  std::string model_name;
  std::vector<float> params;
  uint32_t held_version = 0;
  std::vector<float> residual;
  std::vector<float> scratch;
  std::string residual_path;

  Result<Ending> Session(TlsConnection& conn);
  Status Send(TlsConnection& conn, const v1::Envelope& env) {
    FRUGAL_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, EncodeEnvelope(env, cfg.max_frame_mb << 20));
    return conn.Write(bytes, cfg.read_timeout_s);
  }
  Result<v1::Update> DoTask(const v1::Task& task, const v1::ModelPayload& payload);
  v1::EvalResult DoEval(const v1::EvalTask& task, const v1::ModelPayload& payload);
};

Agent::Agent(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Agent::~Agent() = default;

Result<std::unique_ptr<Agent>> Agent::Create(const ClientConfig& config) {
  SilenceProtobufLogs();
  auto impl = std::make_unique<Impl>();
  impl->cfg = config;
  FRUGAL_ASSIGN_OR_RETURN(impl->local, LoadLocalData(config.data));
  FRUGAL_ASSIGN_OR_RETURN(impl->profiles, config.profiles.empty()
                                              ? EnergyProfiles::LoadDefault()
                                              : EnergyProfiles::LoadDefaultWithOverride(config.profiles));
  FRUGAL_ASSIGN_OR_RETURN(impl->device, impl->profiles.Device(config.device));
  FRUGAL_ASSIGN_OR_RETURN(impl->radio, impl->profiles.Radio(config.radio));
  FRUGAL_RETURN_IF_ERROR(impl->profiles.Region(config.region).status());
  if (auto rapl = OpenRapl(config.rapl_root); rapl.ok()) {
    impl->meter = std::move(*rapl);
    spdlog::info("measuring compute energy with RAPL under {}", config.rapl_root);
  }
  std::error_code ec;
  std::filesystem::create_directories(config.state_dir, ec);
  if (ec) return UnavailableError("cannot create state_dir " + config.state_dir + ": " + ec.message());
  impl->residual_path = (std::filesystem::path(config.state_dir) / "residual.bin").string();
  impl->rng = Rng(std::hash<std::string>{}(config.name) ^ static_cast<uint64_t>(::time(nullptr)));

  for (const std::string* f : {&config.ca_cert, &config.cert, &config.key}) {
    if (!std::filesystem::exists(*f)) {
      return NotFoundError("TLS file '" + *f + "' does not exist (issue it with `frugal-coordinator ca issue`)");
    }
  }
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  if (SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx->native_handle(), TLS1_3_VERSION) != 1) {
    return InternalError("OpenSSL refuses to pin TLS 1.3");
  }
  boost::system::error_code bec;
  ctx->load_verify_file(config.ca_cert, bec);
  if (bec) return InvalidArgumentError("CA certificate " + config.ca_cert + ": " + bec.message());
  ctx->use_certificate_chain_file(config.cert, bec);
  if (bec) return InvalidArgumentError("client certificate " + config.cert + ": " + bec.message());
  ctx->use_private_key_file(config.key, ssl::context::pem, bec);
  if (bec) return InvalidArgumentError("client key " + config.key + ": " + bec.message());
  ctx->set_verify_mode(ssl::verify_peer, bec);
  if (bec) return InternalError("setting peer verification: " + bec.message());
  impl->ctx = std::move(ctx);
  return std::unique_ptr<Agent>(new Agent(std::move(impl)));
}

Status Agent::Run() {
  Impl& s = *impl_;
  uint32_t failures = 0;
  for (;;) {
    Status st;
    auto port = ResolvePort(s.cfg);
    if (port.ok()) {
      TlsConnection conn(*s.ctx);
      st = conn.Connect(s.cfg.host, *port, s.cfg.read_timeout_s);
      if (st.ok()) {
        auto ending = s.Session(conn);
        conn.Close();
        if (ending.ok() && *ending == Ending::kRunComplete) return OkStatus();
        if (ending.ok() && *ending == Ending::kRefused) {
          return Error(ErrorCode::kPermissionDenied, "the coordinator refused this client");
        }
        if (!ending.ok()) st = ending.error();
        if (ending.ok()) failures = 0;  // a session that registered resets the backoff
      }
    } else {
      st = port.error();
    }
    if (!st.ok()) {
      ++failures;
      if (s.cfg.max_attempts != 0 && failures >= s.cfg.max_attempts) {
        return UnavailableError("giving up after " + std::to_string(failures) + " attempts: " + st.error().message());
      }
    }
    const double wait = BackoffSeconds(s.cfg.backoff_initial_s, s.cfg.backoff_max_s, failures, s.rng);
    spdlog::info("{}: {}; reconnecting in {:.1f} s", s.cfg.name, st.ok() ? "connection lost" : st.error().message(),
                 wait);
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(wait * 1000)));
  }
}

Result<Ending> Agent::Impl::Session(TlsConnection& conn) {
  v1::Envelope hello_env;
  v1::Hello* hello = hello_env.mutable_hello();
  hello->set_protocol_version(kProtocolVersion);
  hello->set_client_name(cfg.name);
  hello->set_device_class(cfg.device);
  hello->set_radio(cfg.radio);
  hello->set_region(cfg.region);
  for (const char* c : {"uplink-sparse", "uplink-dense", "downlink-quantized", "downlink-fp32"}) hello->add_codecs(c);
  hello->set_num_examples(local.indices.size());
  hello->set_model_version(held_version);
  hello->set_input_dim(static_cast<uint32_t>(local.data.num_features));
  FRUGAL_RETURN_IF_ERROR(Send(conn, hello_env));

  EnvelopeDecoder decoder(cfg.max_frame_mb << 20);
  std::vector<uint8_t> buf(64 * 1024);
  bool registered = false;
  std::optional<v1::Task> pending_task;
  std::optional<v1::EvalTask> pending_eval;
  for (;;) {
    auto n = conn.ReadSome(buf, cfg.read_timeout_s);
    if (!n.ok()) {
      if (!registered) return n.error();
      spdlog::info("{}: {}", cfg.name, n.error().message());
      return Ending::kLost;
    }
    FRUGAL_RETURN_IF_ERROR(decoder.Feed(std::span(buf.data(), *n)));
    for (;;) {
      FRUGAL_ASSIGN_OR_RETURN(std::optional<v1::Envelope> env, decoder.Next());
      if (!env) break;
      switch (env->body_case()) {
        case v1::Envelope::kRegister: {
          const v1::Register& reg = env->register_();
          if (!model || model_name != reg.model()) {
            FRUGAL_ASSIGN_OR_RETURN(model, MakeModel(reg.model(), local.data.num_features, local.data.num_classes));
            ws = model->MakeWorkspace();
            model_name = reg.model();
            params.clear();
            held_version = 0;
          }
          if (model->num_params() != reg.dim()) {
            return InvalidArgumentError("coordinator's model has " + std::to_string(reg.dim()) +
                                        " parameters, the local " + reg.model() + " has " +
                                        std::to_string(model->num_params()));
          }
          registered = true;
          spdlog::info("{}: registered as client {} of run {} ({} with {} parameters)", cfg.name, reg.client_id(),
                       reg.run_id(), reg.model(), reg.dim());
          break;
        }
        case v1::Envelope::kTask:
          pending_task = env->task();
          break;
        case v1::Envelope::kModel: {
          if (pending_eval && pending_eval->round() == env->model().round() &&
              (!pending_task || pending_task->round() != env->model().round())) {
            const v1::EvalTask task = *pending_eval;
            pending_eval.reset();
            v1::Envelope out;
            *out.mutable_eval_result() = DoEval(task, env->model());
            FRUGAL_RETURN_IF_ERROR(Send(conn, out));
            break;
          }
          if (!pending_task || pending_task->round() != env->model().round()) {
            spdlog::warn("{}: model payload without its task; ignored", cfg.name);
            break;
          }
          const v1::Task task = *pending_task;
          pending_task.reset();
          const PolicyDecision d = DecideTask(cfg.policy, ReadPowerState(cfg.policy.power_supply_root), cfg.radio);
          v1::Envelope out;
          if (!d.accept) {
            spdlog::info("{}: declining round {}: {}", cfg.name, task.round(), d.reason);
            v1::Error* e = out.mutable_error();
            e->set_code(v1::Error::DECLINED);
            e->set_message(d.reason);
            e->set_round(task.round());
          } else {
            auto update = DoTask(task, env->model());
            if (!update.ok()) {
              // The held copy cannot be trusted: start over with a full model.
              spdlog::warn("{}: round {} failed: {}", cfg.name, task.round(), update.error().message());
              held_version = 0;
              params.clear();
              v1::Error* e = out.mutable_error();
              e->set_code(v1::Error::INTERNAL);
              e->set_message(update.error().message());
              e->set_round(task.round());
              FRUGAL_RETURN_IF_ERROR(Send(conn, out));
              return Ending::kLost;  // reconnect, announcing version 0
            }
            *out.mutable_update() = std::move(*update);
          }
          FRUGAL_RETURN_IF_ERROR(Send(conn, out));
          break;
        }
        case v1::Envelope::kHeartbeat:
          if (!env->heartbeat().reply()) {
            v1::Envelope reply;
            reply.mutable_heartbeat()->set_sequence(env->heartbeat().sequence());
            reply.mutable_heartbeat()->set_reply(true);
            FRUGAL_RETURN_IF_ERROR(Send(conn, reply));
          }
          break;
        case v1::Envelope::kEvalTask:
          // The ModelPayload that follows brings the held copy to the version to evaluate.
          pending_eval = env->eval_task();
          break;
        case v1::Envelope::kError: {
          const v1::Error& e = env->error();
          if (e.code() == v1::Error::PERMISSION_DENIED) {
            spdlog::error("{}: refused by the coordinator: {}", cfg.name, e.message());
            return Ending::kRefused;
          }
          spdlog::warn("{}: coordinator reports {}: {}", cfg.name, e.reason().empty() ? "an error" : e.reason(),
                       e.message());
          if (!registered) return UnavailableError("the coordinator refused this connection: " + e.message());
          break;
        }
        case v1::Envelope::kBye:
          spdlog::info("{}: coordinator says bye: {}", cfg.name, env->bye().reason());
          if (env->bye().reason() == "run complete" && cfg.exit_on_run_complete) return Ending::kRunComplete;
          return Ending::kLost;
        default:
          spdlog::warn("{}: unexpected {} from the coordinator; ignored", cfg.name, EnvelopeKindName(*env));
          break;
      }
    }
  }
}

v1::EvalResult Agent::Impl::DoEval(const v1::EvalTask& task, const v1::ModelPayload& payload) {
  v1::EvalResult r;
  r.set_round(task.round());
  if (!model) return r;  // not registered: nothing to evaluate
  const auto dim = static_cast<uint32_t>(model->num_params());
  if (params.size() != dim) {
    params.clear();
    held_version = 0;
  }
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(payload.payload().data()),
                                       payload.payload().size());
  auto now_holds = ApplyModelPayload(bytes, held_version, params, dim);
  if (!now_holds.ok()) {
    // Nothing evaluated; the next task's payload starts over with a full model.
    spdlog::warn("{}: evaluation after round {}: {}", cfg.name, task.round(), now_holds.error().message());
    held_version = 0;
    params.clear();
    r.set_model_version(0);
    return r;
  }
  held_version = *now_holds;
  r.set_model_version(held_version);
  auto ev = Evaluate(*model, params, local.data, local.holdout.empty() ? local.indices : local.holdout, *ws);
  if (!ev.ok()) {
    spdlog::warn("{}: evaluation after round {}: {}", cfg.name, task.round(), ev.error().message());
    return r;
  }
  r.set_examples(ev->examples);
  r.set_accuracy(ev->accuracy);
  r.set_loss(ev->loss);
  spdlog::debug("{}: evaluated v{} on {} local examples: accuracy {:.4f}", cfg.name, held_version, ev->examples,
                ev->accuracy);
  return r;
}

Result<v1::Update> Agent::Impl::DoTask(const v1::Task& task, const v1::ModelPayload& payload) {
  const auto dim = static_cast<uint32_t>(model->num_params());
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(payload.payload().data()),
                                       payload.payload().size());
  if (params.size() != dim) {
    params.clear();
    held_version = 0;
  }
  FRUGAL_ASSIGN_OR_RETURN(uint32_t now_holds, ApplyModelPayload(bytes, held_version, params, dim));
  held_version = now_holds;
  if (held_version != task.model_version()) {
    return InvalidArgumentError("payload brought the model to v" + std::to_string(held_version) + ", the task is for v" +
                                std::to_string(task.model_version()));
  }

  TrainConfig tc;
  tc.epochs = task.train().epochs();
  tc.batch_size = task.train().batch_size();
  tc.learning_rate = task.train().learning_rate();
  tc.momentum = task.train().momentum();
  tc.prox_mu = task.train().prox_mu();
  tc.weight_decay = task.train().weight_decay();
  tc.seed = task.train().seed();
  UplinkConfig uc;
  uc.dense = task.codec().dense();
  uc.density = task.codec().density();
  uc.values = FromWire(task.codec().values());
  uc.exact_topk = task.codec().exact_topk();
  uc.try_zstd = task.codec().try_zstd();
  const bool ef = task.codec().error_feedback() && !uc.dense;
  if (ef && residual.size() != dim) {
    auto loaded = LoadResidual(residual_path, dim);
    if (loaded.ok()) {
      residual = std::move(*loaded);
    } else {
      if (loaded.error().code() != ErrorCode::kNotFound) {
        spdlog::warn("{}: {}; starting from a zero residual", cfg.name, loaded.error().message());
      }
      residual.assign(dim, 0.0f);
    }
  }
  std::vector<float> resid_copy;
  std::span<float> resid;
  if (ef) {
    resid_copy = residual;  // committed only once the update is built
    resid = resid_copy;
  }
  EnergyWindow window(meter.get());
  const bool measuring = meter != nullptr && window.Start().ok();
  FRUGAL_ASSIGN_OR_RETURN(ClientTaskResult result, RunClientTask(*model, params, local.data, local.indices, tc, uc,
                                                                 resid, *ws, scratch));
  std::optional<double> measured_j;
  if (measuring) {
    if (auto j = window.Stop(); j.ok()) measured_j = *j;
  }
  if (ef) {
    residual = std::move(resid_copy);
    if (Status st = SaveResidual(residual_path, residual); !st.ok()) {
      spdlog::warn("{}: residual not saved: {}", cfg.name, st.error().message());
    }
  }

  v1::Update u;
  u.set_round(task.round());
  u.set_base_version(held_version);
  u.set_update(reinterpret_cast<const char*>(result.update.data()), result.update.size());
  u.set_examples(local.indices.size());
  u.set_local_loss(result.train.mean_loss);
  v1::LedgerFigures* f = u.mutable_ledger();
  // Transfer schedule on the radio profile's bandwidth, as the simulator models it.
  const double t_down = TransferSeconds(*radio, bytes.size(), Direction::kDown);
  const double t_comp = ComputeSeconds(*device, result.train.flops);
  f->set_flops(result.train.flops);
  f->set_int8(false);
  f->set_bytes_down(bytes.size());
  f->set_bytes_up(result.update.size());
  f->set_compute_seconds(t_comp);
  f->set_download_start_s(0);
  f->set_upload_start_s(t_down + t_comp);
  if (measured_j) {
    f->set_measured(true);
    f->set_measured_compute_j(*measured_j);
  }
  spdlog::debug("{}: round {} trained on {} examples, loss {:.4f}, {} B update", cfg.name, task.round(),
                result.train.examples, result.train.mean_loss, result.update.size());
  return u;
}

}  // namespace frugal::client
