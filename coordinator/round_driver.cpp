#include "frugal/coordinator/round_driver.h"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "frugal/codec/shared_support.h"
#include "frugal/core/random.h"
#include "frugal/core/streams.h"
#include "frugal/energy/grid_curves.h"
#include "frugal/energy/model.h"
#include "frugal/codec/uplink.h"
#include "frugal/model/int8.h"
#include "frugal/privacy/dp.h"
#include "frugal/proto/convert.h"
#include "frugal/proto/frame.h"
#include "frugal/report/run_dir.h"
#include "frugal/round/accounting.h"
#include "frugal/round/model_payload.h"
#include "frugal/round/planner.h"
#include "frugal/round/representation.h"
#include "frugal/round/selection.h"
#include "frugal/round/settings.h"
#include "frugal/round/trigger_scan.h"
#include "frugal/round/step_history.h"
#include "frugal/train/trainer.h"
#include "round_close.h"

namespace frugal::coordinator {
namespace {

// CPU seconds a client reports (SecAgg.protocol_cpu_s), within reason: not
// finite, negative or over a day counts as none.
double ReportedSeconds(double s) { return std::isfinite(s) && s >= 0 && s <= 86400 ? s : 0; }

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double SystemUtcHour() {
  const std::time_t t = std::time(nullptr);
  return static_cast<double>(t % 86400) / 3600.0;
}

std::string SystemIsoTimestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Appends one line to a CSV of the run directory (creating the directory, and
// the file with its header), so the rows of rounds before a restart are kept.
// Failures are logged: these files are reports, not state.
void AppendCsvLine(const std::filesystem::path& dir, const char* name, std::string_view header,
                   const std::string& line) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::filesystem::path csv = dir / name;
  const bool fresh = !std::filesystem::exists(csv, ec);
  std::ofstream out(csv, std::ios::app);
  if (fresh) out << header << '\n';
  out << line << '\n';
  out.flush();
  if (!out) spdlog::warn("cannot append to {}", csv.string());
}

// One close: what the work reads and what it leaves for ApplyClose, shared
// by the two callbacks handed to run_close.
struct CloseJob {
  RoundCloseInput in;
  RoundCloseResult out;
  // Secure pipeline: the round's protocol, the work's to unmask (in.secure
  // points here) and back to the driver with the result, for its costs.
  std::optional<privacy::SecureRoundServer> secure;
};

RoundRecord RecordFromRow(const RoundRow& r) {
  RoundRecord rec;
  rec.round = r.round;
  rec.accuracy = r.accuracy;
  rec.loss = r.loss;
  rec.bytes_up = r.bytes_up;
  rec.bytes_down = r.bytes_down;
  rec.joules_compute = r.joules_compute;
  rec.joules_radio = r.joules_radio;
  rec.gco2e = r.gco2e;
  rec.selected = r.selected;
  rec.completed = r.completed;
  rec.stragglers = r.stragglers;
  rec.virtual_seconds = r.virtual_seconds;
  rec.wall_seconds = r.wall_seconds;
  rec.utc_hour = r.utc_hour;
  rec.robust_clipped = r.robust_clipped;
  rec.robust_downweighted = r.robust_downweighted;
  rec.robust_rejected = r.robust_rejected;
  rec.dp_epsilon = r.dp_epsilon;  // so a restarted run's rounds.csv keeps the epsilon of earlier rounds
  rec.dp_delta = r.dp_delta;
  rec.protocol_bytes_up = r.protocol_bytes_up;  // and the summary's secure_* totals the protocol of earlier rounds
  rec.protocol_bytes_down = r.protocol_bytes_down;
  rec.protocol_cpu_seconds = r.protocol_client_cpu_s;
  rec.trigger = r.trigger;
  return rec;
}

}  // namespace

Result<std::unique_ptr<RoundDriver>> RoundDriver::Create(const CoordinatorConfig& config, DriverDeps deps) {
  if (deps.store == nullptr || deps.test == nullptr || deps.transport == nullptr) {
    return InvalidArgumentError("RoundDriver needs a store, a test set and a transport");
  }
  if (!deps.utc_hour) deps.utc_hour = SystemUtcHour;
  if (!deps.iso_timestamp) deps.iso_timestamp = SystemIsoTimestamp;
  if (!deps.run_close) {
    deps.run_close = [](uint32_t, std::function<void()> work, std::function<void()> apply) {
      work();
      apply();
    };
  }
  std::unique_ptr<RoundDriver> d(new RoundDriver(config, std::move(deps)));
  FRUGAL_RETURN_IF_ERROR(d->Init());
  return d;
}

Status RoundDriver::Init() {
  const Dataset& test = *deps_.test;
  FRUGAL_ASSIGN_OR_RETURN(model_, MakeModel(config_.model, test.num_features, test.num_classes));
  ws_ = model_->MakeWorkspace();
  std::vector<float> init(model_->num_params());
  InitialModel(*model_, config_.model_init, config_.seed, init);
  for (const std::string& w : config_.warnings) spdlog::warn("{}", w);
  {
    // Hourly curves now, before any client takes a pointer to its region (OnHello).
    std::vector<HourlyCurve> curves;
    if (!config_.carbon.grid_csv.empty()) {
      FRUGAL_ASSIGN_OR_RETURN(std::string text, ReadTextFile(config_.carbon.grid_csv));
      FRUGAL_ASSIGN_OR_RETURN(curves, ParseHourlyIntensityCsv(text, config_.carbon.grid_csv));
    }
    FRUGAL_RETURN_IF_ERROR(ApplyHourlyCurves(deps_.profiles, config_.carbon.hourly, config_.carbon.day_of_year, curves,
                                             config_.carbon.grid_csv));
  }
  if (config_.engine.secure.identity && !config_.service.ca_cert.empty()) {
    // The CA's public key, to check each advertisement before relaying it; the
    // clients check their neighbours' themselves against their own CA file.
    FRUGAL_ASSIGN_OR_RETURN(std::string pem, ReadTextFile(config_.service.ca_cert));
    auto ca = privacy::P256PublicKeyFromPem(pem);
    if (!ca.ok()) return ca.error().WithContext("secure.identity = \"ca\": service.ca_cert " + config_.service.ca_cert);
    identity_ca_ = *ca;
  }
  planner_ = std::make_unique<RoundPlanner>(config_, model_->flops_per_example());
  FRUGAL_ASSIGN_OR_RETURN(const auto widths, WidthsByProfileId(config_.widths, deps_.profiles));
  FRUGAL_ASSIGN_OR_RETURN(lean_, LeanRound::Create(*model_, config_.prune, widths, config_.pipeline,
                                                   config_.widths_rolling));
  planner_->SetFlopsPerExample(model_->flops_per_example(), lean_.TrainFlopsByDevice());
  const bool distributed_dp = config_.engine.dp.mode == privacy::DpMode::kDistributed;
  if (distributed_dp && config_.pipeline != Pipeline::kSecure) {
    // The clients' noise is only private under secure aggregation: the server sees the sum alone.
    return FailedPreconditionError("privacy.mode = \"distributed\" needs pipeline = \"secure\" (the pipeline is \"" +
                                   std::string(PipelineName(config_.pipeline)) + "\")");
  }
  if (config_.engine.dp.enabled()) {
    if (config_.engine.dp.noise_multiplier <= 0) {
      // privacy.target_epsilon without a noise multiplier: the smallest z that keeps config_.rounds rounds within
      // the target at the largest q a round can have here, SelectCount() of round.min_clients connected clients.
      if (Status st = DeriveNoiseForPlan(config_.engine, config_.plan, config_.min_clients, config_.rounds,
                                         model_->num_params());
          !st.ok()) {
        return st.error().WithContext("the coordinator derives privacy.noise_multiplier from privacy.target_epsilon "
                                      "for " + std::to_string(config_.rounds) + " rounds of " +
                                      std::to_string(config_.plan.SelectCount()) + " clients out of round.min_clients = " +
                                      std::to_string(config_.min_clients) +
                                      " (set privacy.noise_multiplier, raise the target or round.min_clients, or "
                                      "lower rounds)");
      }
      spdlog::info("privacy: noise multiplier z = {} derived from privacy.target_epsilon = {} (delta {}) for {} "
                   "rounds at q = {} selected / {} (round.min_clients)",
                   config_.engine.dp.noise_multiplier, config_.engine.dp.target_epsilon, config_.engine.dp.delta,
                   config_.rounds, config_.plan.SelectCount(), config_.min_clients);
    }
    if (distributed_dp) {
      // The engine plans the same ring when it opens a round; a ring too small for the noise is refused now.
      auto ring = privacy::PlanDistributedRing(config_.engine.dp, config_.engine.secure.ring,
                                               config_.engine.secure.dropout,
                                               UplinkKeepCount(config_.engine.uplink_density, model_->num_params()));
      if (!ring.ok()) return ring.error();
    }
    // Noise keyed from RAND_bytes every round: the run's seed is no secret.
    config_.engine.dp.noise_key = [](uint32_t) -> Result<privacy::NoiseKey> {
      privacy::NoiseKey key{};
      if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) {
        return UnavailableError("RAND_bytes could not key the DP noise");
      }
      return key;
    };
  }
  if (config_.engine.robust.rule == RobustRule::kFlTrust || config_.trigger_scan.every > 0) {
    if (deps_.train == nullptr) {
      return InvalidArgumentError("server.robust = \"fltrust\" and server.trigger_scan_every need the training set");
    }
    FRUGAL_ASSIGN_OR_RETURN(defense_, ServerDefense::Create(config_, deps_.train->size()));
  }

  Store& store = *deps_.store;
  FRUGAL_RETURN_IF_ERROR(store.CreateRun(config_.run_id, config_.RunFingerprint(), init));
  FRUGAL_ASSIGN_OR_RETURN(std::optional<RunState> state, store.LoadRun(config_.run_id));
  if (!state) return InternalError("run " + config_.run_id + " vanished from the store after creation");
  FRUGAL_ASSIGN_OR_RETURN(MlpShapeChange shape, ResumePrunedShape(*state));
  if (lean_.prunes() && state->shape.empty() && state->model.size() != model_->num_params()) {
    // Pruned by a coordinator whose store (schema < 6) did not keep the kept units.
    return FailedPreconditionError("run " + config_.run_id + " was pruned ([prune]) to " +
                                   std::to_string(state->model.size()) +
                                   " parameters, but the store does not hold the pruned shape (a store from "
                                   "before schema 6); the run cannot be resumed (docs/frugal-models.md)");
  }
  if (state->model.size() != model_->num_params()) {
    return DataLossError("stored model of run " + config_.run_id + " has " + std::to_string(state->model.size()) +
                         " parameters, the " + config_.model + " model has " +
                         std::to_string(model_->num_params()));
  }
  // The engine continues from what the store holds: same versions, the
  // retained steps for chains, the server residual and momentum.
  EngineState es;
  es.version = state->version;
  es.model = std::move(state->model);
  es.steps = std::move(state->steps);
  es.server_state = std::move(state->engine_state);
  es.shape = std::move(shape);
  FRUGAL_ASSIGN_OR_RETURN(engine_, RoundEngine::Restore(std::move(es), config_.engine));
  if (defense_ != nullptr && defense_->trigger() != nullptr) {
    // The trigger scan resumes with the triggers, flags and pruned inputs it had.
    FRUGAL_RETURN_IF_ERROR(defense_->trigger()->SetState(state->defense_state, model_->input_dim(),
                                                         model_->num_classes()));
    FRUGAL_RETURN_IF_ERROR(defense_->Resume(*engine_, *model_));
  }
  next_round_ = state->last_round + 1;
  metrics_.last_accuracy = state->last_accuracy;

  FRUGAL_ASSIGN_OR_RETURN(stored_rows_, store.Rounds(config_.run_id));
  ledger_ = EnergyLedger(config_.run_id);
  FRUGAL_ASSIGN_OR_RETURN(std::vector<LedgerRow> rows, store.Ledger(config_.run_id));
  for (auto& row : rows) ledger_.Add(std::move(row));
  for (const RoundRow& r : stored_rows_) {
    records_.push_back(RecordFromRow(r));
    ledger_.AddServer(r.round, r.server_joules, r.server_gco2e);
    secure_server_cpu_s_ += r.protocol_server_cpu_s;
    secure_failed_rounds_ += r.secure_failed ? 1 : 0;
  }
  committed_secure_server_cpu_s_ = secure_server_cpu_s_;
  committed_secure_failed_rounds_ = secure_failed_rounds_;
  metrics_.rounds_completed = static_cast<uint32_t>(records_.size());
  // A resumed run estimates its next round's payloads from its last one, as an uninterrupted one would.
  if (!records_.empty()) planner_->Observe(records_.back());
  FRUGAL_ASSIGN_OR_RETURN(std::vector<ClientRow> known, store.Clients(config_.run_id));
  for (const ClientRow& c : known) {
    ids_by_name_[c.name] = c.client_id;
    next_client_id_ = std::max(next_client_id_, c.client_id + 1);
  }
  const size_t n_eval = config_.eval_examples == 0 ? test.size() : std::min<size_t>(config_.eval_examples, test.size());
  eval_indices_.resize(n_eval);
  for (uint32_t i = 0; i < n_eval; ++i) eval_indices_[i] = i;
  if (state->last_round > 0) {
    spdlog::info("resuming run {} after round {} at model version {}", config_.run_id, state->last_round,
                 state->version);
  }
  if (done()) spdlog::info("run {} already has its {} rounds", config_.run_id, config_.rounds);
  return OkStatus();
}

Result<MlpShapeChange> RoundDriver::ResumePrunedShape(const RunState& state) {
  if (state.shape.empty()) return MlpShapeChange{};
  auto shape = DecodeShapeChange(state.shape);
  if (!shape.ok()) return DataLossError("stored shape of run " + config_.run_id + ": " + shape.error().message());
  if (Status st = lean_.Resume(*shape); !st.ok()) return st.error().WithContext("resuming run " + config_.run_id);
  // The pruned model, its workspace and the planner's estimates, as after the prune step itself.
  model_ = lean_.MakeModel(config_.model);
  ws_ = model_->MakeWorkspace();
  planner_->SetFlopsPerExample(model_->flops_per_example(), lean_.TrainFlopsByDevice());
  spdlog::info("run {} was pruned to {} parameters; resuming the pruned model", config_.run_id,
               model_->num_params());
  MlpShapeChange out = std::move(*shape);
  return out;
}

uint32_t RoundDriver::version() const { return closing_ ? closing_->version : engine_->version(); }

std::optional<uint64_t> RoundDriver::ConnOf(uint64_t client_id) const {
  auto it = client_conn_.find(client_id);
  if (it == client_conn_.end()) return std::nullopt;
  return it->second;
}

bool RoundDriver::Busy(uint64_t conn) const {
  auto it = conn_client_.find(conn);
  if (it == conn_client_.end() || !RoundOpen()) return false;
  auto slot = slots_.find(it->second);
  return slot != slots_.end() && slot->second.state == SlotState::kWaiting;
}

Result<v1::Register> RoundDriver::OnHello(uint64_t conn, const std::string& identity, const v1::Hello& hello,
                                          double now_s) {
  if (hello.protocol_version() != kProtocolVersion) {
    return InvalidArgumentError("Hello speaks protocol " + std::to_string(hello.protocol_version()) +
                                ", the coordinator speaks " + std::to_string(kProtocolVersion));
  }
  if (hello.client_name() != identity) {
    return Error(ErrorCode::kUnauthenticated, "Hello names client '" + hello.client_name() +
                                                   "' but the certificate is for '" + identity + "'");
  }
  if (hello.input_dim() != model_->input_dim()) {
    return InvalidArgumentError("local data has " + std::to_string(hello.input_dim()) + " features, the " +
                                config_.model + " model takes " + std::to_string(model_->input_dim()));
  }
  if (hello.num_examples() == 0) return InvalidArgumentError("client holds no examples");
  Client c;
  c.name = identity;
  c.device = hello.device_class();
  c.radio = hello.radio();
  c.region = hello.region();
  auto dev = deps_.profiles.Device(c.device);
  if (!dev.ok()) return dev.error().WithContext("Hello device_class");
  auto radio = deps_.profiles.Radio(c.radio);
  if (!radio.ok()) return radio.error().WithContext("Hello radio");
  auto region = deps_.profiles.Region(c.region);
  if (!region.ok()) return region.error().WithContext("Hello region");
  c.device_profile = *dev;
  c.radio_profile = *radio;
  c.region_profile = *region;
  c.num_examples = hello.num_examples();
  c.held_version = hello.model_version() <= version() ? hello.model_version() : 0;
  // Register (sent before any task) tells a client holding nothing to build
  // version 1 from the seed, so it is counted as holding version 1.
  const bool seed_init = config_.builds_version_one() && c.held_version == 0;
  if (seed_init) c.held_version = 1;
  // Taken as said when it fits the version held (an older agent says nothing: no history).
  c.history_steps = hello.history_steps();
  c.history_from = hello.history_from() != 0 && hello.history_from() <= c.held_version &&
                           c.held_version - hello.history_from() <= c.history_steps
                       ? hello.history_from()
                       : 0;
  if (seed_init && c.history_steps > 0) c.history_from = 1;  // it builds version 1 with no steps behind it
  if (hello.has_data_split()) {
    const v1::DataSplit& d = hello.data_split();
    c.partition = PartitionSpec{.scheme = d.scheme(), .clients = d.clients(), .alpha = d.alpha(),
                                .shards_per_client = d.shards_per_client(), .seed = d.seed(), .holdout = d.holdout()};
    c.partition_index = d.index();
  }

  auto known = ids_by_name_.find(identity);
  if (known != ids_by_name_.end()) {
    c.id = known->second;
  } else {
    c.id = next_client_id_++;
    ids_by_name_[identity] = c.id;
  }
  // A reconnecting client that describes itself as before costs no store write (an fsync).
  auto seen = clients_.find(c.id);
  const bool unchanged = seen != clients_.end() && seen->second.device == c.device &&
                         seen->second.radio == c.radio && seen->second.region == c.region;
  if (!unchanged) {
    if (Status st = deps_.store->UpsertClient(config_.run_id, c.id, c.name, c.device, c.radio, c.region); !st.ok()) {
      return st.error().WithContext("recording client " + identity);
    }
  }
  if (auto old = ConnOf(c.id)) {
    spdlog::info("client {} reconnected; dropping its previous connection", identity);
    conn_client_.erase(*old);
  }
  clients_[c.id] = c;
  conn_client_[conn] = c.id;
  client_conn_[c.id] = conn;
  spdlog::debug("client {} (id {}) registered: {} / {} / {}, {} examples, holds v{}", identity, c.id, c.device,
                c.radio, c.region, c.num_examples, c.held_version);

  v1::Register reg;
  reg.set_protocol_version(kProtocolVersion);
  reg.set_client_id(c.id);
  reg.set_run_id(config_.run_id);
  reg.set_model(config_.model);
  reg.set_dim(static_cast<uint32_t>(model_->num_params()));
  const std::vector<uint8_t> shape = closing_                            ? closing_->shape
                                     : engine_->shape().old_sizes.empty() ? std::vector<uint8_t>{}
                                                                          : EncodeShapeChange(engine_->shape());
  if (!shape.empty()) reg.set_shape(reinterpret_cast<const char*>(shape.data()), shape.size());
  if (const double width = lean_.WidthFor(c.device_profile->id); width < 1) {
    reg.set_width(width);
    reg.set_rolling_width(lean_.rolling());
  }
  reg.set_heartbeat_ms(static_cast<uint32_t>(config_.service.heartbeat_s * 1000));
  // The run's task configuration once per session; each Task then carries only its seed.
  ToWire(config_.task.train, 0, reg.mutable_train());
  ToWire(config_.task.uplink, config_.uses_residuals(), reg.mutable_codec());
  reg.set_seed(config_.seed);
  reg.set_seed_init(seed_init);
  if (seed_init) reg.set_model_init(std::string(ModelInitName(config_.model_init)));
  (void)now_s;  // the caller sends Register, then calls Tick(), so Register precedes any Task
  return reg;
}

void RoundDriver::OnDisconnect(uint64_t conn, double now_s) {
  auto it = conn_client_.find(conn);
  if (it == conn_client_.end()) return;
  const uint64_t id = it->second;
  conn_client_.erase(it);
  if (client_conn_[id] != conn) return;  // replaced by a newer connection
  client_conn_.erase(id);
  if (eval_) {
    auto a = eval_->answers.find(id);
    if (a != eval_->answers.end() && !a->second.answered) a->second.gone = true;
    bool all = true;
    for (const auto& [cid, ans] : eval_->answers) all = all && (ans.answered || ans.gone);
    if (all) FinishEvaluation();
  }
  // The open stage stops waiting for it. While a round closes, secure_ is
  // empty: the close work owns the protocol (it is unmasking), so nothing to drop.
  if (secure_) secure_->Drop(id);
  auto slot = slots_.find(id);
  if (RoundOpen() && slot != slots_.end() && slot->second.state == SlotState::kWaiting) {
    slot->second.state = SlotState::kGone;
    spdlog::info("round {}: client {} vanished before sending its update", engine_->round(), clients_[id].name);
  }
  Tick(now_s);
}

void RoundDriver::OnUpdate(uint64_t conn, const v1::Update& update, double now_s) {
  auto it = conn_client_.find(conn);
  if (it == conn_client_.end()) return;
  const uint64_t id = it->second;
  Client& c = clients_[id];
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(update.update().data()),
                                       update.update().size());
  if (closing_) {
    // The close work owns the engine; what its Ingest would say of any update now: no round is open.
    const std::string why(RejectReasonName(RejectReason::kRoundClosed));
    ++metrics_.updates_rejected[why];
    const Error e = FailedPreconditionError("update from client " + std::to_string(id) + " for round " +
                                            std::to_string(update.round()) + ": round " +
                                            std::to_string(closing_->round) + " is closing, no round is open");
    spdlog::warn("rejected update from {} for round {} ({}): {}", c.name, update.round(), why, e.message());
    deps_.transport->Send(conn, ErrorEnvelope(e, update.round(), RejectReason::kRoundClosed));
    return;
  }
  RejectReason reason = RejectReason::kMalformed;
  const double cpu0 = ThreadCpuSeconds();
  // [widths]: a narrow client's update is of its nested sub-network.
  const NestedNetwork* nested = lean_.NestedFor(c.device_profile->id);
  const Status st = engine_->Ingest(update.round(), id, update.base_version(), bytes,
                                    static_cast<double>(c.num_examples), &reason,
                                    nested != nullptr ? std::span<const uint32_t>(nested->map)
                                                      : std::span<const uint32_t>{});
  round_cpu_s_ += ThreadCpuSeconds() - cpu0;
  auto slot = slots_.find(id);
  const bool in_round = engine_->round_open() && update.round() == engine_->round() && slot != slots_.end();
  if (!st.ok()) {
    const std::string why(RejectReasonName(reason));
    ++metrics_.updates_rejected[why];
    spdlog::warn("rejected update from {} for round {} ({}): {}", c.name, update.round(), why, st.error().message());
    deps_.transport->Send(conn, ErrorEnvelope(st.error(), update.round(), reason));
    if (in_round && slot->second.state == SlotState::kWaiting) {
      slot->second.state = SlotState::kRejected;
      slot->second.reject_reason = why;
      slot->second.bytes_up = bytes.size();
      slot->second.figures = update.ledger();
    }
  } else {
    ++metrics_.updates_accepted;
    ++accepted_;
    metrics_.payload_bytes_up += bytes.size();
    Slot& s = slot->second;  // Ingest accepted it, so the client was selected for this round
    s.state = SlotState::kAccepted;
    s.bytes_up = bytes.size();
    s.figures = update.ledger();
    s.loss = update.local_loss();
    spdlog::debug("round {}: update from {} ({} bytes, loss {:.4f})", update.round(), c.name, bytes.size(),
                  update.local_loss());
  }
  Tick(now_s);
}

void RoundDriver::OnSecAgg(uint64_t conn, const v1::SecAgg& msg, double now_s) {
  auto it = conn_client_.find(conn);
  if (it == conn_client_.end()) return;
  const uint64_t id = it->second;
  const std::string& name = clients_[id].name;
  const std::span<const uint8_t> body(reinterpret_cast<const uint8_t*>(msg.body().data()), msg.body().size());
  if (closing_) {
    // The protocol ended before the close (SettleSecure): nothing to relay, no CPU to count on the closing round.
    const Error e = FailedPreconditionError("SecAgg stage " + std::to_string(msg.stage()) + " message from client " +
                                            std::to_string(id) + " for round " + std::to_string(msg.round()) +
                                            ": round " + std::to_string(closing_->round) + " is closing");
    spdlog::warn("refused a SecAgg message from {}: {}", name, e.message());
    deps_.transport->Send(conn, ErrorEnvelope(e, msg.round()));
    return;
  }
  const double cpu0 = ThreadCpuSeconds();
  Status st = secure_ ? secure_->Receive(id, msg.round(), msg.stage(), body)
                      : FailedPreconditionError("SecAgg stage " + std::to_string(msg.stage()) + " message from client " +
                                                std::to_string(id) + " for round " + std::to_string(msg.round()) +
                                                ": no secure round is open");
  const double secure_cpu = ThreadCpuSeconds() - cpu0;
  round_cpu_s_ += secure_cpu;
  secure_server_cpu_s_ += secure_cpu;
  if (!st.ok()) {
    spdlog::warn("refused a SecAgg message from {}: {}", name, st.error().message());
    deps_.transport->Send(conn, ErrorEnvelope(st.error(), msg.round()));
  } else if (msg.stage() == 3) {
    // The masked input: the client trained; its figures price that work.
    Slot& s = slots_.at(id);
    s.figures = msg.ledger();
    s.protocol_cpu_s = ReportedSeconds(msg.protocol_cpu_s());
    spdlog::debug("round {}: masked input from {} ({} bytes)", msg.round(), name, body.size());
  } else if (msg.stage() == 5) {
    // The unmask response: stages 4-5's CPU, after the masked input's figures, on the same ledger row.
    Slot& s = slots_.at(id);
    const double flops = msg.ledger().flops();
    s.unmask_flops = std::isfinite(flops) && flops >= 0 ? flops : 0;
    s.protocol_cpu_s += ReportedSeconds(msg.protocol_cpu_s());
  }
  Tick(now_s);
}

void RoundDriver::OnClientError(uint64_t conn, const v1::Error& error, double now_s) {
  auto it = conn_client_.find(conn);
  if (it == conn_client_.end()) return;
  const uint64_t id = it->second;
  auto slot = slots_.find(id);
  if (error.code() == v1::Error::DECLINED) {
    spdlog::info("client {} declined round {}: {}", clients_[id].name, error.round(), error.message());
  } else {
    spdlog::warn("client {} reports an error: {}", clients_[id].name, error.message());
  }
  if (RoundOpen() && error.round() == engine_->round() && slot != slots_.end() &&
      slot->second.state == SlotState::kWaiting) {
    slot->second.state = SlotState::kDeclined;
  }
  Tick(now_s);
}

void RoundDriver::OnEvalResult(uint64_t conn, const v1::EvalResult& result, double now_s) {
  auto it = conn_client_.find(conn);
  if (it == conn_client_.end()) return;
  const uint64_t id = it->second;
  const std::string& name = clients_[id].name;
  if (!eval_ || result.round() != eval_->result.round) {
    spdlog::info("ignoring an evaluation result from {} for round {}: no such evaluation is open", name,
                 result.round());
    return;
  }
  auto a = eval_->answers.find(id);
  if (a == eval_->answers.end() || a->second.answered || a->second.gone) return;
  a->second.answered = true;
  // A client that could not reach the version (its payload failed to apply)
  // has answered, with nothing evaluated: the evaluation need not wait for it.
  const bool valid = result.model_version() == eval_->result.model_version && std::isfinite(result.accuracy()) &&
                     result.accuracy() >= 0 && result.accuracy() <= 1 &&
                     std::isfinite(result.loss()) && result.loss() >= 0 &&
                     result.examples() <= clients_[id].num_examples;
  if (!valid) {
    spdlog::warn("evaluation result from {} for v{} is not usable (accuracy {}, loss {}, {} examples of {}); "
                 "counted as answered with no examples",
                 name, result.model_version(), result.accuracy(), result.loss(), result.examples(),
                 clients_[id].num_examples);
  } else {
    a->second.examples = result.examples();
    a->second.accuracy = result.accuracy();
    a->second.loss = result.loss();
    a->second.int8 = result.int8() && config_.eval_int8;  // only what was asked for is priced as int8
  }
  bool all = true;
  for (const auto& [cid, ans] : eval_->answers) all = all && (ans.answered || ans.gone);
  if (all) FinishEvaluation();
  Tick(now_s);
}

void RoundDriver::StartEvaluation(uint32_t round, double now_s) {
  if (eval_) FinishEvaluation();  // an evaluation still open closes with what it has
  Evaluation ev;
  ev.result.round = round;
  ev.result.model_version = version();
  ev.opened_at = now_s;
  for (const auto& [id, conn] : client_conn_) {
    Client& c = clients_[id];
    // The same payload a task would carry, so a client evaluates exactly the
    // server's model (or the codec's reconstruction of it) and needs nothing
    // more for the next round.
    auto payload = engine_->ModelPayloadFor(c.held_version > version() ? 0 : c.held_version);
    if (!payload.ok()) {
      fatal_ = payload.error().WithContext("model payload for the evaluation after round " + std::to_string(round));
      return;
    }
    const std::vector<uint8_t>& bytes = **payload;
    v1::Envelope task_env;
    task_env.mutable_eval_task()->set_round(round);
    task_env.mutable_eval_task()->set_model_version(version());
    task_env.mutable_eval_task()->set_int8(config_.eval_int8);
    v1::Envelope model_env;
    v1::ModelPayload* mp = model_env.mutable_model();
    mp->set_round(round);
    mp->set_from_version(c.held_version);
    mp->set_to_version(version());
    mp->set_payload(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    const v1::Envelope both[] = {std::move(task_env), std::move(model_env)};
    deps_.transport->SendTogether(conn, both);
    c.history_from = HistoryAfter(c, bytes);
    c.held_version = version();
    ev.result.bytes_down += bytes.size();
    metrics_.payload_bytes_down += bytes.size();
    ev.answers[id] = EvalAnswer{.bytes_down = bytes.size()};
  }
  ev.result.asked = static_cast<uint32_t>(ev.answers.size());
  spdlog::info("federated evaluation of model v{} after round {}: asked {} clients", ev.result.model_version, round,
               ev.result.asked);
  eval_ = std::move(ev);
  if (eval_->answers.empty()) FinishEvaluation();
}

void RoundDriver::FinishEvaluation() {
  if (!eval_) return;
  FederatedEval r = eval_->result;
  double acc = 0, loss = 0;
  for (const auto& [id, a] : eval_->answers) {
    if (!a.answered) continue;
    ++r.answered;
    r.examples += a.examples;
    acc += a.accuracy * static_cast<double>(a.examples);
    loss += a.loss * static_cast<double>(a.examples);
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  r.accuracy = r.examples > 0 ? acc / static_cast<double>(r.examples) : nan;
  r.loss = r.examples > 0 ? loss / static_cast<double>(r.examples) : nan;
  // On the ledger: every asked client received the payload; those that
  // answered also ran the model forward over the examples they evaluated.
  std::vector<LedgerRow> rows;
  const double utc_hour = deps_.utc_hour();
  // An int8 evaluation is priced at the int8 kernel's work (2 x its
  // multiply-accumulates) and the device's int8 joules per FLOP.
  const std::optional<double> int8_flops = Int8FlopsPerExample(*model_);
  for (const auto& [id, a] : eval_->answers) {
    const Client& c = clients_[id];
    const bool int8 = a.int8 && int8_flops.has_value();
    rows.push_back(EvaluationRow(config_.run_id, r.round, static_cast<uint32_t>(id), *c.device_profile,
                                 *c.radio_profile, *c.region_profile, a.bytes_down,
                                 int8 ? *int8_flops : model_->flops_per_example().forward, a.examples, utc_hour,
                                 int8));
  }
  eval_.reset();
  if (Status st = deps_.store->AddLedgerRows(config_.run_id, rows); !st.ok()) {
    fatal_ = st.error().WithContext("recording the federated evaluation after round " + std::to_string(r.round));
    return;
  }
  for (LedgerRow& row : rows) ledger_.Add(std::move(row));
  fed_evals_.push_back(r);
  ++metrics_.federated_evaluations;
  if (r.examples > 0) metrics_.last_federated_accuracy = r.accuracy;
  spdlog::info("federated evaluation after round {} (model v{}): {} of {} clients answered, {} examples, accuracy "
               "{:.4f}, loss {:.4f}",
               r.round, r.model_version, r.answered, r.asked, r.examples, r.accuracy, r.loss);
  // Appended, so the evaluations of a run survive coordinator restarts.
  const std::filesystem::path o(config_.service.out_dir);
  if (o.empty()) return;
  std::ostringstream line;
  line << r.round << ',' << r.model_version << ',' << r.asked << ',' << r.answered << ',' << r.examples << ','
       << r.accuracy << ',' << r.loss << ',' << r.bytes_down;
  AppendCsvLine(o, "federated_eval.csv", "round,model_version,asked,answered,examples,accuracy,loss,bytes_down",
                line.str());
}

void RoundDriver::Tick(double now_s) {
  if (fatal_) return;
  if (eval_ && now_s >= eval_->opened_at + config_.plan.deadline_s) FinishEvaluation();
  if (closing_) return;  // the next round opens once this one is applied
  if (engine_->round_open()) {
    if (secure_round_) {
      if (!TickSecure(now_s)) return;
    } else {
      bool all_answered = true;
      for (const auto& [id, s] : slots_) all_answered = all_answered && s.state != SlotState::kWaiting;
      if (accepted_ < config_.plan.clients_per_round && !all_answered &&
          now_s < opened_at_ + config_.plan.deadline_s) {
        return;
      }
    }
    CloseRound(now_s);
    if (fatal_ || closing_ || engine_->round_open()) return;
  }
  if (done() || now_s < next_round_at_) return;
  size_t eligible = 0;
  for (const auto& [id, conn] : client_conn_) eligible += clients_.contains(id) ? 1 : 0;
  if (eligible >= config_.min_clients && !ShiftRound(now_s)) OpenRound(now_s);
}

bool RoundDriver::ShiftRound(double now_s) {
  if (!config_.carbon.shifts() || shift_checked_round_ == next_round_) return false;
  shift_checked_round_ = next_round_;
  std::vector<Candidate> candidates;  // connected clients, ascending by id, as OpenRound lists them
  for (const auto& [id, conn] : client_conn_) {
    const Client& c = clients_.at(id);
    candidates.push_back(Candidate{static_cast<uint32_t>(id), c.device_profile, c.radio_profile, c.region_profile,
                                   c.num_examples});
  }
  const double wait_h = planner_->ShiftDelayHours(candidates, deps_.utc_hour());
  if (!(wait_h > 0)) return false;
  // The service clock (now_s) and deps_.utc_hour() move together in a real
  // run; a test injects both and moves them itself.
  next_round_at_ = now_s + wait_h * 3600.0;
  spdlog::info("round {} waits {:.2f} h for cleaner grid hours (carbon.shift_slack_h)", next_round_, wait_h);
  return true;
}

void RoundDriver::OpenRound(double now_s) {
  const uint32_t round = next_round_;
  // One hour for the whole round: selection weighs carbon at it, the ledger prices it.
  round_utc_hour_ = deps_.utc_hour();
  if (deps_.wire_totals) round_wire_start_ = deps_.wire_totals();
  std::vector<Candidate> candidates;  // connected clients, ascending by id
  for (const auto& [id, conn] : client_conn_) {
    const Client& c = clients_.at(id);
    candidates.push_back(Candidate{static_cast<uint32_t>(id), c.device_profile, c.radio_profile, c.region_profile,
                                   c.num_examples});
  }
  uint64_t first_payload = 0;
  if (config_.plan.selection != SelectionPolicy::kUniform && records_.empty() && !candidates.empty()) {
    auto payload = engine_->ModelPayloadFor(clients_.at(candidates.front().id).held_version);
    if (!payload.ok()) {
      fatal_ = payload.error().WithContext("model payload for selecting round " + std::to_string(round));
      return;
    }
    first_payload = (*payload)->size();
  }
  const std::vector<uint32_t> selected = planner_->Select(round, candidates, round_utc_hour_, first_payload);
  if (engine_->dp() != nullptr && !selected.empty()) {
    // privacy.target_epsilon: the round that would pass it is not run, and the run ends.
    const double q = config_.plan.SamplingRate(selected.size(), candidates.size());
    if (Status st = engine_->CheckPrivacyBudget(round, q); !st.ok()) {
      if (st.error().code() != ErrorCode::kResourceExhausted) {
        fatal_ = st.error().WithContext("privacy budget for round " + std::to_string(round));
        return;
      }
      stop_reason_ = st.error().message();
      spdlog::warn("run {} ends: {}", config_.run_id, stop_reason_);
      if (Status w = WriteRunDirectory(); !w.ok()) fatal_ = w.error();
      return;
    }
  }
  std::vector<uint64_t> sel64(selected.begin(), selected.end());
  if (Status st = engine_->OpenRound(round, sel64); !st.ok()) {
    fatal_ = st.error().WithContext("opening round " + std::to_string(round));
    return;
  }
  lean_.SetRound(round);  // widths.rolling: this round's windows (an update of another round is refused by Ingest)
  if (!selected.empty()) {
    if (Status st = engine_->SetSamplingRate(config_.plan.SamplingRate(selected.size(), candidates.size()));
        !st.ok()) {
      fatal_ = st.error().WithContext("opening round " + std::to_string(round));
      return;
    }
  }
  opened_at_ = now_s;
  round_version_ = version();
  round_cpu_s_ = 0;
  accepted_ = 0;
  slots_.clear();
  secure_.reset();
  secure_round_ = config_.pipeline == Pipeline::kSecure;
  secure_stage_at_ = now_s;
  std::map<uint64_t, SecureTaskPlan> secure_plans;
  if (secure_round_ && !selected.empty()) {
    const double cpu0 = ThreadCpuSeconds();
    if (auto plans = PlanSecure(round, sel64)) secure_plans = std::move(*plans);
    const double secure_cpu = ThreadCpuSeconds() - cpu0;
    round_cpu_s_ += secure_cpu;
    secure_server_cpu_s_ += secure_cpu;
  }
  const uint64_t deadline_ms = static_cast<uint64_t>(config_.plan.deadline_s * 1000);
  for (uint32_t id32 : selected) {
    const uint64_t id = id32;
    Client& c = clients_[id];
    Slot& s = slots_[id];
    s.client_id = id;
    if (secure_round_ && !secure_) continue;  // the protocol could not be planned: no task
    // The client's kept steps (Hello.history_from): merged format version 4 needs them.
    auto payload = c.held_version > engine_->version() ? engine_->ModelPayloadFor(0)
                                                       : engine_->ModelPayloadFor(c.held_version, c.history_from);
    if (!payload.ok()) {
      fatal_ = payload.error().WithContext("model payload for round " + std::to_string(round));
      return;
    }
    const std::vector<uint8_t>& bytes = **payload;
    v1::Envelope task_env;
    v1::Task* task = task_env.mutable_task();
    task->set_round(round);
    task->set_model_version(round_version_);
    task->set_deadline_ms(deadline_ms);
    if (auto sp = secure_plans.find(id); sp != secure_plans.end()) ToWire(sp->second, task->mutable_secagg());

    v1::Envelope model_env;
    v1::ModelPayload* mp = model_env.mutable_model();
    mp->set_round(round);
    mp->set_from_version(c.held_version);
    mp->set_to_version(round_version_);
    mp->set_payload(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    const uint64_t conn = client_conn_.at(id);
    const v1::Envelope both[] = {std::move(task_env), std::move(model_env)};
    deps_.transport->SendTogether(conn, both);
    s.bytes_down = bytes.size();
    if (auto sp = secure_plans.find(id); sp != secure_plans.end()) s.bytes_down += sp->second.support_guide.size();
    metrics_.payload_bytes_down += bytes.size();
    c.history_from = HistoryAfter(c, bytes);
    c.held_version = round_version_;
  }
  spdlog::info("round {} opened: {} of {} connected clients selected, model v{}", round, selected.size(),
               candidates.size(), round_version_);
}

uint32_t RoundDriver::HistoryAfter(const Client& c, std::span<const uint8_t> payload) const {
  std::vector<std::span<const uint8_t>> pieces;
  auto h = ParseModelPayload(payload, static_cast<uint32_t>(engine_->global_model().size()), &pieces);
  if (!h.ok() || h->shape_change) return 0;
  return HistoryAfterDownload(c.history_from, c.history_steps, h->kind == ModelPayloadKind::kFull, h->to_version);
}

std::optional<std::map<uint64_t, SecureTaskPlan>> RoundDriver::PlanSecure(uint32_t round,
                                                                           std::span<const uint64_t> selected) {
  auto fail = [&](const Error& e) {
    ++secure_failed_rounds_;
    spdlog::warn("round {}: secure aggregation cannot run, the round closes without updates: {}", round, e.message());
    return std::nullopt;
  };
  auto support = engine_->SecureSupport(round);
  if (!support.ok()) return fail(support.error());
  // A fresh session each round: messages of an earlier round or run are refused by their header.
  uint64_t session = 0;
  if (Status st = privacy::RandomBytes(std::span(reinterpret_cast<uint8_t*>(&session), sizeof session)); !st.ok()) {
    return fail(st.error());
  }
  // The engine's copy: under distributed DP its ring carries the clip and the noise the clients add.
  const privacy::SecurePipelineConfig& sc = engine_->secure_config();
  auto plan = privacy::PlanSecureRoundFor(sc, config_.seed, session, round, selected,
                                          static_cast<uint32_t>(support->size()));
  if (!plan.ok()) return fail(plan.error());
  if (sc.identity) {
    // Each credential must name the client its connection authenticated (the certificate's CN).
    for (uint64_t id : plan->clients) {
      auto it = clients_.find(id);
      plan->identities.push_back(it != clients_.end() ? it->second.name : std::string());
    }
  }
  auto server = privacy::SecureRoundServer::Open(*plan, identity_ca_);
  if (!server.ok()) return fail(server.error());
  secure_.emplace(std::move(*server));
  // secure.guided: the public guide goes with every task (its bytes on each client's downlink).
  std::vector<uint8_t> guide_bytes;
  if (sc.guided > 0) {
    auto guide = engine_->SecureSupportGuideBlocks();
    if (!guide.ok()) return fail(guide.error());
    auto encoded = EncodeSupportGuide(*guide, static_cast<uint32_t>(engine_->global_model().size()), sc.guide_block);
    if (!encoded.ok()) return fail(encoded.error());
    guide_bytes = std::move(*encoded);
  }
  std::map<uint64_t, SecureTaskPlan> out;
  size_t derived = 0;
  size_t merged_v4 = 0;
  for (size_t i = 0; i < plan->clients.size(); ++i) {
    SecureTaskPlan& p = out[plan->clients[i]];
    p = SecureTaskPlan{.round = plan->config, .position = plan->positions[i], .ring = sc.ring,
                       .support_seed = sc.support_seed, .density = config_.engine.uplink_density,
                       .debug_dump = sc.debug_dump, .support_guide = guide_bytes};
    // secure.derive_guide: a client that will hold the guide's steps computes it (the same blocks).
    const Client& c = clients_.at(plan->clients[i]);
    // The client's kept steps (Hello.history_from): merged format version 4 needs them.
    auto payload = c.held_version > engine_->version() ? engine_->ModelPayloadFor(0)
                                                       : engine_->ModelPayloadFor(c.held_version, c.history_from);
    if (payload.ok() && engine_->MergeV4For(c.held_version, c.history_from)) {
      std::vector<std::span<const uint8_t>> pieces;
      auto h = ParseModelPayload(**payload, static_cast<uint32_t>(engine_->global_model().size()), &pieces);
      if (h.ok() && h->kind == ModelPayloadKind::kMerged && pieces[0].size() > 5 && pieces[0][5] == 4) ++merged_v4;
    }
    if (sc.guided > 0 && payload.ok() && engine_->ClientDerivesGuide(HistoryAfter(c, **payload))) {
      p.support_guide.clear();
      p.guide_steps = engine_->SecureGuideSteps();
      p.guide_block = sc.guide_block;
      p.guided = sc.guided;
      p.guide_decay = sc.guide_decay;
      ++derived;
    }
  }
  if (sc.derive_guide && sc.guided > 0) {
    spdlog::info("round {}: {} of {} clients derive the support guide from the steps they keep", round, derived,
                 plan->clients.size());
  }
  if (config_.engine.merge_version >= 4) {
    spdlog::info("round {}: {} of {} clients get a merged piece of format version 4", round, merged_v4,
                 plan->clients.size());
  }
  spdlog::info("round {}: secure aggregation over {} clients, {} neighbours each, threshold {}, {}-bit ring, {} "
               "entries",
               round, plan->config.clients, plan->config.degree, plan->config.threshold, plan->config.bits,
               plan->config.length);
  return out;
}

bool RoundDriver::TickSecure(double now_s) {
  if (!secure_) return true;  // not planned, or already ended: the round closes
  const uint32_t round = engine_->round();
  const int stage = secure_->stage();
  // Stage 3 includes the clients' training: it has the round's deadline.
  const double limit = stage == 3 ? opened_at_ + config_.plan.deadline_s
                                  : secure_stage_at_ + config_.engine.secure.stage_timeout_s;
  if (!secure_->StageComplete() && now_s < limit) return false;
  if (stage >= 1 && stage <= 4) {
    const double cpu0 = ThreadCpuSeconds();
    const size_t delivered = secure_->Delivered(static_cast<uint32_t>(stage)).size();
    auto next = secure_->CloseStage();
    if (!next.ok()) {
      ++secure_failed_rounds_;
      spdlog::warn("round {}: secure aggregation failed after stage {} ({} clients delivered): {}", round, stage,
                   delivered, next.error().message());
      SettleSecure();
      const double secure_cpu = ThreadCpuSeconds() - cpu0;
      round_cpu_s_ += secure_cpu;
      secure_server_cpu_s_ += secure_cpu;
      return true;
    }
    spdlog::info("round {}: SecAgg+ stage {} closed with {} clients{}", round, stage, delivered,
                 now_s >= limit ? " (deadline)" : "");
    for (auto& [id, body] : *next) {
      auto conn = ConnOf(id);
      if (!conn) continue;
      v1::Envelope env;
      v1::SecAgg* m = env.mutable_secagg();
      m->set_round(round);
      m->set_stage(static_cast<uint32_t>(stage + 1));
      m->set_body(reinterpret_cast<const char*>(body.data()), body.size());
      deps_.transport->Send(*conn, env);
    }
    secure_stage_at_ = now_s;
    const double secure_cpu = ThreadCpuSeconds() - cpu0;
    round_cpu_s_ += secure_cpu;
    secure_server_cpu_s_ += secure_cpu;
    return false;
  }
  // Stage 5 is over: the unmasking (seconds at a thousand clients with
  // drop-outs) is the first step of the close work, off this thread.
  return true;
}

void RoundDriver::ApplyUnmasked(uint32_t round, const SecureUnmaskResult& u) {
  secure_server_cpu_s_ += u.cpu_s;  // inside the round's server CPU, which ApplyClose counts
  if (!u.finished.ok()) {
    ++secure_failed_rounds_;
    spdlog::warn("round {}: secure aggregation failed in unmasking: {}", round, u.finished.error().message());
    return;
  }
  if (!u.ingested.ok()) {
    ++secure_failed_rounds_;
    spdlog::warn("round {}: the unmasked sum was refused: {}", round, u.ingested.error().message());
    return;
  }
  for (uint64_t id : u.sum.survivors) {
    Slot& s = slots_.at(id);
    s.state = SlotState::kAccepted;
    ++accepted_;
    ++metrics_.updates_accepted;
  }
  spdlog::info("round {}: unmasked the sum of {} clients ({} dropped after sharing keys)", round,
               u.sum.survivors.size(), u.sum.dropped.size());
  const std::filesystem::path o(config_.service.out_dir);
  if (config_.engine.secure.debug_dump && !o.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o, ec);
    const std::string base = "secagg_sum_r" + std::to_string(round);
    Status w = WriteFileAtomic(o / (base + ".bin"), [&](std::ostream& out) {
      for (uint64_t v : u.sum.sum) {
        for (int b = 0; b < 8; ++b) out.put(static_cast<char>(v >> (8 * b)));
      }
    });
    if (w.ok()) {
      w = WriteFileAtomic(o / (base + ".survivors"), [&](std::ostream& out) {
        for (uint64_t id : u.sum.survivors) out << clients_.at(id).name << '\n';
      });
    }
    if (!w.ok()) spdlog::warn("secure.debug_dump: {}", w.error().message());
  }
}

void RoundDriver::SettleSecure() {
  if (!secure_) return;
  for (auto& [id, s] : slots_) {
    const privacy::SecureClientCost c = secure_->cost(id);
    s.bytes_up = c.bytes_up;
    s.bytes_down += c.bytes_down;
    s.protocol_bytes_up = c.bytes_up;
    s.protocol_bytes_down = c.bytes_down;
    metrics_.payload_bytes_up += c.bytes_up;
    metrics_.payload_bytes_down += c.bytes_down;
  }
  secure_.reset();
}

void RoundDriver::CloseRound(double now_s) {
  const uint32_t round = engine_->round();
  // What this thread answers with until the result is back (RoundOpen, version, OnHello, Metrics).
  Closing c;
  c.round = round;
  c.version = engine_->version();
  c.now_s = now_s;
  c.cpu_before_s = round_cpu_s_;
  if (!engine_->shape().old_sizes.empty()) c.shape = EncodeShapeChange(engine_->shape());
  FillDp(c.dp);
  auto job = std::make_shared<CloseJob>();
  RoundCloseInput& in = job->in;
  in.round = round;
  in.engine = engine_.get();
  in.model = model_.get();
  in.ws = ws_.get();
  in.defense = defense_.get();
  in.train = deps_.train;
  in.test = deps_.test;
  in.eval_rows = eval_indices_;
  in.min_quorum = config_.plan.min_quorum;
  // The released model on the test set every eval.every rounds and after the
  // last; between, the last figures stand.
  in.evaluate = round % config_.eval_every == 0 || round == config_.rounds || !last_eval_;
  in.evaluate_int8 = config_.eval_int8;
  if (round == config_.rounds && config_.distill.at_end && !student_) in.distill = &config_.distill;
  in.seed = config_.seed;
  if (secure_) {
    // Stage 5 ended (TickSecure): the protocol goes with the work, which
    // unmasks the sum; this thread has no secure_ until ApplyClose.
    job->secure = std::move(secure_);
    secure_.reset();
    in.secure = &*job->secure;
    in.keep_secure_sum = config_.engine.secure.debug_dump;
  }
  closing_ = std::move(c);
  spdlog::debug("round {}: closing", round);
  deps_.run_close(round, [job] { job->out = RunRoundClose(job->in); },
                  [this, job] { ApplyClose(std::move(job->out), std::move(job->secure)); });
}

void RoundDriver::ApplyClose(RoundCloseResult&& result, std::optional<privacy::SecureRoundServer> secure) {
  const double now_s = closing_->now_s;
  const uint32_t round = closing_->round;
  // The round's server CPU: this thread's before the close, and the work's
  // (the unmasking's and the aggregation's), on its thread.
  const double cpu = closing_->cpu_before_s + (result.unmasked ? result.unmasked->cpu_s : 0) + result.cpu_s;
  closing_.reset();  // the engine is this thread's again
  if (secure) {
    secure_ = std::move(secure);
    if (result.unmasked) ApplyUnmasked(round, *result.unmasked);
    SettleSecure();  // the protocol's bytes on every slot; it ends here
  }
  if (!result.status.ok()) {
    fatal_ = result.status.error();
    return;
  }
  defended_ = std::move(result.defended);
  for (const std::string& line : defended_.notes) spdlog::info("{}", line);
  if (result.eval) {
    last_eval_ = result.eval;
    if (config_.eval_int8) last_int8_ = result.int8_accuracy;
  }
  if (result.student) {
    const StudentReport& student = *result.student;
    spdlog::info("distilled {}: {:.4f} fp32, {:.4f} int8 (released model {:.4f})", student.student,
                 student.student_accuracy, student.student_int8_accuracy, student.teacher_accuracy);
    student_ = std::move(result.student);
  }
  if (Status st = FinishRound(*result.outcome, cpu, now_s); !st.ok()) fatal_ = st.error();
}

Participation RoundDriver::ParticipationOf(const Slot& s) const {
  const Client& c = clients_.at(s.client_id);
  const v1::LedgerFigures& f = s.figures;
  Participation p;
  p.client = static_cast<uint32_t>(s.client_id);
  p.device = c.device_profile;
  p.radio = c.radio_profile;
  p.region = c.region_profile;
  p.bytes_down = s.bytes_down;
  p.protocol_bytes_up = s.protocol_bytes_up;
  p.protocol_bytes_down = s.protocol_bytes_down;
  p.protocol_cpu_s = s.protocol_cpu_s;
  switch (s.state) {
    case SlotState::kAccepted:
    case SlotState::kRejected:
      // It trained and sent an update: what it reports of its work, within reason.
      p.outcome = s.state == SlotState::kAccepted ? ClientOutcome::kParticipated : ClientOutcome::kStraggled;
      p.bytes_up = s.bytes_up;
      p.flops = (std::isfinite(f.flops()) && f.flops() >= 0 ? f.flops() : 0) + s.unmask_flops;
      p.int8 = f.int8();
      if (f.measured() && std::isfinite(f.measured_compute_j()) && f.measured_compute_j() >= 0) {
        p.measured_compute_j = f.measured_compute_j();
      }
      break;
    case SlotState::kWaiting:
      p.outcome = ClientOutcome::kStraggled;
      p.bytes_up = s.bytes_up;  // a secure round's protocol messages, sent before it fell behind
      break;
    case SlotState::kDeclined:
    case SlotState::kGone:
      p.outcome = ClientOutcome::kDropped;
      p.bytes_up = s.bytes_up;
      break;
  }
  return p;
}

Status RoundDriver::FinishRound(const RoundOutcome& outcome, double server_cpu_s, double now_s) {
  const uint32_t round = outcome.round;
  RoundAccount account(config_.run_id, round, round_utc_hour_);
  for (const auto& [id, s] : slots_) account.Add(ParticipationOf(s));
  account.SetCompleted(outcome.accepted);
  account.SetVerdicts(outcome.verdicts);
  if (!outcome.robust_shortfall.empty() && !warned_robust_shortfall_) {
    // Once per process: the ledger's robust column repeats it for every such round.
    warned_robust_shortfall_ = true;
    spdlog::warn("round {}: {} (said once; the ledger says it for every round it applies to)", round,
                 outcome.robust_shortfall);
  }
  for (const RobustVerdict& v : outcome.verdicts) {
    if (v.action == RobustAction::kKept) continue;
    auto it = clients_.find(v.client);
    spdlog::warn("round {}: update of client {} ({}) {} by server.robust = {}{}: {}", round, v.client,
                 it != clients_.end() ? it->second.name : std::string("unknown"), RobustActionName(v.action),
                 RobustRuleName(config_.engine.robust.rule), config_.engine.robust.rlr ? " with server.rlr" : "",
                 v.reason);
  }
  RoundRecord& rec = account.record();
  rec.trigger = defended_.columns;
  if (const privacy::CentralDp* dp = engine_->dp()) {
    FRUGAL_ASSIGN_OR_RETURN(privacy::PrivacySpent spent, dp->Spent());
    rec.dp_epsilon = spent.epsilon;
    rec.dp_delta = dp->config().delta;
  }
  rec.accuracy = last_eval_->accuracy;
  rec.loss = last_eval_->loss;
  rec.accuracy_int8 = last_int8_;
  rec.virtual_seconds = now_s - opened_at_;
  rec.wall_seconds = now_s - opened_at_;
  FRUGAL_ASSIGN_OR_RETURN(ServerCost server, ServerAggregationCost(deps_.profiles, server_cpu_s, round_utc_hour_));

  RoundCommit commit;
  commit.run_id = config_.run_id;
  commit.round = round;
  commit.applied = outcome.applied;
  commit.new_version = version();
  if (outcome.applied) {
    commit.model.assign(engine_->global_model().begin(), engine_->global_model().end());
    const auto step = engine_->StepPayload(engine_->version());  // empty under the dense pipeline
    commit.step_payload.assign(step.begin(), step.end());
  }
  // [prune]: a step after this round is committed with it (the pruned model is the next version).
  FRUGAL_ASSIGN_OR_RETURN(std::optional<PruneStep> pruned, lean_.PruneAfter(round, *engine_));
  if (pruned) {
    commit.pruned_model.assign(engine_->global_model().begin(), engine_->global_model().end());
    const auto step = engine_->StepPayload(engine_->version());  // the shape change (frugal pipeline)
    commit.pruned_step.assign(step.begin(), step.end());
    commit.pruned_shape = EncodeShapeChange(engine_->shape());
    model_ = lean_.MakeModel(config_.model);
    ws_ = model_->MakeWorkspace();
    planner_->SetFlopsPerExample(model_->flops_per_example(), lean_.TrainFlopsByDevice());
    spdlog::info("round {}: pruned the model to {} parameters (model v{})", round, model_->num_params(),
                 pruned->to_version);
  }
  commit.engine_state = engine_->ServerState();
  commit.accuracy = rec.accuracy;
  commit.loss = rec.loss;
  commit.selected = rec.selected;
  commit.completed = rec.completed;
  commit.stragglers = rec.stragglers;
  commit.bytes_up = rec.bytes_up;
  commit.bytes_down = rec.bytes_down;
  commit.joules_compute = rec.joules_compute;
  commit.joules_radio = rec.joules_radio;
  commit.gco2e = rec.gco2e;
  commit.ledger_rows = account.rows();
  for (const auto& [id, s] : slots_) commit.client_versions.emplace_back(id, round_version_);
  commit.server_joules = server.joules;
  commit.server_gco2e = server.gco2e;
  commit.virtual_seconds = rec.virtual_seconds;
  commit.wall_seconds = rec.wall_seconds;
  commit.utc_hour = rec.utc_hour;
  commit.robust_clipped = rec.robust_clipped;
  commit.robust_downweighted = rec.robust_downweighted;
  commit.robust_rejected = rec.robust_rejected;
  commit.dp_epsilon = rec.dp_epsilon;
  commit.dp_delta = rec.dp_delta;
  commit.protocol_bytes_up = rec.protocol_bytes_up;
  commit.protocol_bytes_down = rec.protocol_bytes_down;
  commit.protocol_client_cpu_s = rec.protocol_cpu_seconds;
  commit.protocol_server_cpu_s = std::max(0.0, secure_server_cpu_s_ - committed_secure_server_cpu_s_);
  commit.secure_failed = secure_failed_rounds_ > committed_secure_failed_rounds_;
  commit.trigger = rec.trigger;
  if (defense_ != nullptr && defense_->trigger() != nullptr) commit.defense_state = defense_->trigger()->State();
  FRUGAL_RETURN_IF_ERROR(deps_.store->CommitRound(commit));
  committed_secure_server_cpu_s_ = secure_server_cpu_s_;
  committed_secure_failed_rounds_ = secure_failed_rounds_;

  // Committed: only now does the in-memory run advance.
  records_.push_back(rec);
  planner_->Observe(rec);
  for (LedgerRow& row : account.rows()) ledger_.Add(std::move(row));
  ledger_.AddServer(round, server.joules, server.gco2e);
  metrics_.rounds_completed = static_cast<uint32_t>(records_.size());
  metrics_.last_accuracy = rec.accuracy;
  next_round_ = round + 1;
  next_round_at_ = now_s + config_.round_interval_s;
  planner_->AddActiveHours((now_s - opened_at_ + config_.round_interval_s) / 3600.0);
  last_round_ = RoundView(outcome.verdicts);
  last_round_.stragglers = rec.stragglers;
  slots_.clear();
  spdlog::info("round {} closed: {} accepted of {} selected, {} stragglers; model v{}{}; accuracy {:.4f}; "
               "{} B up, {} B down; {:.3f} J",
               round, rec.completed, rec.selected, rec.stragglers, version(),
               outcome.applied ? "" : " (quorum not met, unchanged)", rec.accuracy, rec.bytes_up, rec.bytes_down,
               rec.joules_compute + rec.joules_radio);
  FRUGAL_RETURN_IF_ERROR(WriteRunDirectory());
  AppendWireRow(rec);
  if (config_.federated_eval_every > 0 && round % config_.federated_eval_every == 0) StartEvaluation(round, now_s);
  return OkStatus();
}

void RoundDriver::AppendWireRow(const RoundRecord& rec) {
  const std::filesystem::path o(config_.service.out_dir);
  if (!deps_.wire_totals || o.empty()) return;
  const WireTotals now = deps_.wire_totals();
  AppendCsvLine(o, "wire.csv", "round,tcp_bytes_up,tcp_bytes_down,payload_bytes_up,payload_bytes_down",
                std::to_string(rec.round) + ',' + std::to_string(now.tcp_bytes_in - round_wire_start_.tcp_bytes_in) +
                    ',' + std::to_string(now.tcp_bytes_out - round_wire_start_.tcp_bytes_out) + ',' +
                    std::to_string(rec.bytes_up) + ',' + std::to_string(rec.bytes_down));
}

std::vector<RosterEntry> RoundDriver::Roster() const {
  std::vector<RosterEntry> out;
  for (const auto& [id, c] : clients_) {
    out.push_back(RosterEntry{.id = static_cast<uint32_t>(id), .name = c.name, .device = c.device_profile->id,
                              .radio = c.radio_profile->id, .region = c.region_profile->id,
                              .examples = c.num_examples, .partition = c.partition,
                              .partition_index = c.partition_index});
  }
  return out;
}

Status RoundDriver::WriteRunDirectory() {
  const std::filesystem::path o(config_.service.out_dir);
  if (o.empty()) return OkStatus();
  RunSummary sum = SummarizeRun(config_, "coordinator", records_, ledger_, config_.flat);
  double wall = 0;
  for (const RoundRecord& r : records_) wall += r.wall_seconds;
  sum.wall_seconds = wall;
  sum.client_updates_per_second = wall > 0 ? static_cast<double>(ledger_.RunTotals().participated) / wall : 0;
  sum.notes.push_back("Rounds ran on the real service: frugal-client processes over mutual TLS 1.3; bytes are the "
                      "encoded model payloads and updates actually sent.");
  sum.notes.push_back("Client energy is modelled from the FLOPs and transfer schedule each client reported "
                      "(measured compute joules where the client had RAPL); server energy is modelled: measured CPU "
                      "time times a power figure.");
  sum.notes.push_back("Accuracy is on " + std::to_string(eval_indices_.size()) +
                      " Fashion-MNIST test examples, evaluated on the coordinator's model.");
  for (std::string& n : ServerNotes(config_.engine)) sum.notes.push_back(std::move(n));
  if (defense_) sum.notes.insert(sum.notes.end(), defense_->notes().begin(), defense_->notes().end());
  if (config_.pipeline == Pipeline::kSecure) {
    sum.notes.push_back("Secure aggregation (SecAgg+, docs/privacy.md): each round's selected clients ran the four "
                        "stages over the service; the server unmasked only the sum of the survivors' ring inputs. "
                        "Bytes up and down include every protocol message as encoded.");
    // The totals frugal-sim's summary has, summed over the run's rounds
    // (rounds.csv's protocol_* columns; a resumed run's earlier rounds come from the store).
    uint64_t up = 0, down = 0;
    double client_cpu = 0;
    for (const RoundRecord& r : records_) {
      up += r.protocol_bytes_up;
      down += r.protocol_bytes_down;
      client_cpu += r.protocol_cpu_seconds;
    }
    sum.extra_metrics["secure_protocol_bytes_up"] = static_cast<double>(up);
    sum.extra_metrics["secure_protocol_bytes_down"] = static_cast<double>(down);
    sum.extra_metrics["secure_client_cpu_seconds"] = client_cpu;
    sum.extra_metrics["secure_server_cpu_seconds"] = secure_server_cpu_s_;
    sum.extra_metrics["secure_failed_rounds"] = static_cast<double>(secure_failed_rounds_);
  }
  if (const privacy::CentralDp* dp = engine_->dp()) {
    FRUGAL_ASSIGN_OR_RETURN(privacy::PrivacySpent spent, dp->Spent());
    sum.dp_epsilon = spent.epsilon;
    sum.dp_delta = dp->config().delta;
    const DpAccountingLabel label = DescribeDpAccounting(config_.plan, dp->config());
    sum.dp_sampling = label.sampling;
    sum.dp_adjacency = label.adjacency;
    sum.dp_bound = label.bound;
    sum.stop_reason = stop_reason_;
    sum.extra_metrics["dp_noise_multiplier"] = dp->config().noise_multiplier;
    sum.extra_metrics["dp_clip"] = dp->clip();
    if (config_.engine.dp.mode == privacy::DpMode::kDistributed) {
      sum.notes.push_back("Distributed differential privacy (docs/privacy.md): each client clipped its ring input "
                          "and added Skellam noise keyed from its own RAND_bytes; the server added none, and each "
                          "round was accounted with the noise of the clients whose inputs reached the unmasked "
                          "sum. " + DpAccountingSentence(config_.plan, config_.engine.dp, "connected"));
    } else {
      sum.notes.push_back("Central differential privacy (DP-FedAvg): updates clipped, Gaussian noise seeded from "
                          "RAND_bytes on their sum. " + DpAccountingSentence(config_.plan, config_.engine.dp,
                                                                            "connected"));
    }
    if (!stop_reason_.empty()) sum.notes.push_back("The run stopped early: " + stop_reason_ + ".");
  }
  if (config_.eval_int8 && last_int8_ >= 0) sum.extra_metrics["final_accuracy_int8"] = last_int8_;
  if (student_) {
    AddStudentToSummary(*student_, sum.extra_metrics, sum.notes);
  }
  const std::vector<RosterEntry> roster = Roster();
  std::vector<FleetMember> fleet;
  for (const RosterEntry& e : roster) fleet.push_back(FleetMember{e.device, e.region, e.examples});
  sum.representation = RepresentationShares(fleet, ledger_.rows());
  RunFiles files;
  files.summary = &sum;
  files.rounds = records_;
  files.ledger = &ledger_;
  files.run_toml = config_.RunToml();
  files.clients = roster;
  if (student_) files.student = &*student_;
  files.emissions.timestamp = deps_.iso_timestamp();
  files.emissions.duration_s = wall;
  files.emissions.region = deps_.profiles.server_region();
  files.emissions.pue = deps_.profiles.server_pue();
  return frugal::WriteRunDirectory(o, files);
}

DashboardRound RoundDriver::RoundView(std::span<const RobustVerdict> verdicts) const {
  DashboardRound r;
  r.round = CurrentRound();
  r.open = RoundOpen();
  r.selected = static_cast<uint32_t>(slots_.size());
  const auto name = [&](uint64_t id) {
    auto it = clients_.find(id);
    return it != clients_.end() ? it->second.name : std::to_string(id);
  };
  for (const auto& [id, s] : slots_) {
    if (s.state == SlotState::kAccepted || s.state == SlotState::kRejected) ++r.received;
    if (s.state == SlotState::kWaiting) ++r.stragglers;
    if (s.state == SlotState::kRejected) r.rejected.push_back({name(id), s.reject_reason});
  }
  for (const RobustVerdict& v : verdicts) {
    if (v.action != RobustAction::kRejected) continue;
    r.rejected.push_back({name(v.client), "server.robust = " + std::string(RobustRuleName(config_.engine.robust.rule)) +
                                              ": " + v.reason});
  }
  return r;
}

DashboardView RoundDriver::Dashboard(double now_s) const {
  DashboardView v;
  const DriverMetrics m = Metrics();
  DashboardStatus& st = v.status;
  st.run_id = config_.run_id;
  st.state = m.state;
  st.round = m.round;
  st.rounds_total = config_.rounds;
  st.model_version = m.model_version;
  st.round_open = m.round_open;
  st.connected = m.connected_clients;
  st.min_clients = config_.min_clients;
  if (!m.round_open && !m.round_closing && !done() && st.connected >= st.min_clients) st.next_round_in_s = std::max(0.0, next_round_at_ - now_s);
  st.epsilon = m.dp_epsilon;
  st.dp_sampling = m.dp_sampling;
  st.dp_adjacency = m.dp_adjacency;
  st.dp_bound = m.dp_bound;
  for (const auto& [id, c] : clients_) {
    DashboardClient d;
    d.id = id;
    d.name = c.name;
    d.device = c.device;
    d.radio = c.radio;
    d.region = c.region;
    d.held_version = c.held_version;
    auto slot = slots_.find(id);
    const bool in_round = RoundOpen() && slot != slots_.end();
    if (!client_conn_.contains(id)) {
      d.state = "gone";
    } else if (in_round && slot->second.state == SlotState::kWaiting) {
      d.state = "training";
    } else if (in_round && slot->second.state == SlotState::kDeclined) {
      d.state = "ineligible";
    } else {
      d.state = "idle";
    }
    v.clients.push_back(std::move(d));
  }
  FillClientTotals(ledger_.rows(), v.clients);
  for (DashboardClient& d : v.clients) {
    if (d.state == "idle" && d.rounds == 0 && !RoundOpen()) d.state = "connected";
  }
  // A closing round: its slots as they were when it closed.
  v.round = RoundOpen() || closing_ ? RoundView({}) : last_round_;
  return v;
}

DriverMetrics RoundDriver::Metrics() const {
  DriverMetrics m = metrics_;
  m.round_open = RoundOpen();
  m.round_closing = closing_.has_value();
  m.round = m.round_open || m.round_closing ? CurrentRound() : (records_.empty() ? 0 : records_.back().round);
  m.model_version = version();
  m.connected_clients = client_conn_.size();
  const EnergyTotals t = ledger_.RunTotals();
  m.joules = t.all_j();
  m.measured_vs_modelled = ledger_.MeasuredVsModelledByDevice();
  if (closing_) {
    // The accountant is the close work's until it is applied: the figures as of the close.
    m.dp_epsilon = closing_->dp.dp_epsilon;
    m.dp_delta = closing_->dp.dp_delta;
    m.dp_noise_multiplier = closing_->dp.dp_noise_multiplier;
    m.dp_sampling = closing_->dp.dp_sampling;
    m.dp_adjacency = closing_->dp.dp_adjacency;
    m.dp_bound = closing_->dp.dp_bound;
  } else {
    FillDp(m);
  }
  m.stop_reason = stop_reason_;
  m.state = finished() ? "done"
            : m.round_closing ? "closing"
            : m.round_open    ? "training"
            : done()          ? "evaluating"
                              : "waiting";
  return m;
}

void RoundDriver::FillDp(DriverMetrics& m) const {
  const privacy::CentralDp* dp = engine_->dp();
  if (dp == nullptr) return;
  if (auto spent = dp->Spent(); spent.ok()) m.dp_epsilon = spent->epsilon;
  m.dp_delta = dp->config().delta;
  m.dp_noise_multiplier = dp->config().noise_multiplier;
  DpAccountingLabel label = DescribeDpAccounting(config_.plan, dp->config());
  m.dp_sampling = std::move(label.sampling);
  m.dp_adjacency = std::move(label.adjacency);
  m.dp_bound = std::move(label.bound);
}

}  // namespace frugal::coordinator
