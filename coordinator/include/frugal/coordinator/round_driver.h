// The coordinator's round state machine, driven by network events and a clock
// it is handed (never reads one): registers clients, opens rounds on the shared
// RoundEngine, issues tasks and model payloads, ingests updates, closes rounds
// at K updates, when every selected client has answered or vanished, or at the
// deadline, then evaluates, costs the ledger, commits the round to the Store in
// one transaction and rewrites the run directory. No sockets: tests drive it directly.
// A round's heavy close work (a secure round's unmasking, aggregation, the
// trusted-set work, evaluation, distillation) runs wherever DriverDeps::run_close puts it; meanwhile the
// driver keeps answering events, with the round shown as closing.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "frugal/coordinator/config.h"
#include "frugal/coordinator/store.h"
#include "frugal/core/status.h"
#include "frugal/data/dataset.h"
#include "frugal/energy/ledger.h"
#include "frugal/energy/profiles.h"
#include "frugal/model/model.h"
#include "frugal/model/release_models.h"
#include "frugal/privacy/secure_round.h"
#include "frugal/proto/convert.h"
#include "frugal/proto/frugal.pb.h"
#include "frugal/report/dashboard.h"
#include "frugal/report/run_report.h"
#include "frugal/report/run_dir.h"
#include "frugal/round/accounting.h"
#include "frugal/round/engine.h"
#include "frugal/round/lean_round.h"
#include "frugal/round/planner.h"
#include "frugal/round/server_defense.h"
#include "frugal/train/trainer.h"

namespace frugal::coordinator {

// Where the driver's messages go: the server queues them on the session of
// connection `conn`. Called on the driver's thread; must not call back into it.
class DriverTransport {
 public:
  virtual ~DriverTransport() = default;
  virtual void Send(uint64_t conn, const v1::Envelope& env) = 0;
  // Messages that go together (a task and its model payload), in order. A
  // transport may write them at once (one TLS record instead of several).
  virtual void SendTogether(uint64_t conn, std::span<const v1::Envelope> envs) {
    for (const v1::Envelope& e : envs) Send(conn, e);
  }
};

// Counters for /metrics and /status.
struct DriverMetrics {
  uint32_t rounds_completed = 0;
  uint32_t round = 0;             // open round, or the last one
  bool round_open = false;
  uint32_t model_version = 0;
  size_t connected_clients = 0;
  uint64_t payload_bytes_up = 0, payload_bytes_down = 0;
  double joules = 0;              // clients + server, this process's rounds and resumed ones
  uint64_t updates_accepted = 0;
  std::map<std::string, uint64_t> updates_rejected;  // by RejectReason name
  std::optional<double> last_accuracy;
  std::string state;              // "waiting", "training", "closing", "evaluating", "done"
  bool round_closing = false;     // `round` is closed to updates, its close work is running
  // Federated evaluation (round.eval_every): the last completed one.
  uint32_t federated_evaluations = 0;
  std::optional<double> last_federated_accuracy;
  // Per device class, the clients' measured compute joules (battery gauge or
  // RAPL) against the model's figure for the same rows (EnergyLedger::
  // MeasuredVsModelledByDevice); empty when no client measured.
  std::map<std::string, MeasuredVsModelled> measured_vs_modelled;
  // Differential privacy (privacy.mode): (ε, δ) spent so far, and why the run
  // ended early (privacy.target_epsilon), empty while it has not.
  std::optional<double> dp_epsilon, dp_delta;
  // The noise multiplier z the run accounts with: privacy.noise_multiplier,
  // or the one derived from privacy.target_epsilon at start.
  std::optional<double> dp_noise_multiplier;
  // What dp_epsilon is a bound for, from DescribeDpAccounting (the labels
  // summary.json carries): dp_sampling "fixed_size" or "poisson",
  // dp_adjacency "replace_one" or "add_remove_one", dp_bound "proven" or
  // "approximate: <why>". Empty without DP.
  std::string dp_sampling, dp_adjacency, dp_bound;
  std::string stop_reason;
};

// One federated evaluation: the global model after `round` (version
// `model_version`) evaluated by clients on their local data, weighted by
// the examples each evaluated.
struct FederatedEval {
  uint32_t round = 0;
  uint32_t model_version = 0;
  uint32_t asked = 0, answered = 0;
  uint64_t examples = 0;
  double accuracy = 0, loss = 0;  // NaN when no client answered with examples
  uint64_t bytes_down = 0;        // model payloads sent for it (not in the energy ledger)
};

// Bytes the transport has moved so far: TCP payload, TLS records, handshakes
// and alerts included (what a radio would carry above TCP/IP).
struct WireTotals {
  uint64_t tcp_bytes_in = 0, tcp_bytes_out = 0;
};

// What the dashboard shows of the run (GET / and /api/state on the status
// port). Clients' last_seen_s and the "uploading" state are the transport's
// to fill in: the driver does not see bytes arrive.
struct DashboardView {
  DashboardStatus status;
  std::vector<DashboardClient> clients;  // every client known to this process, by id
  DashboardRound round;                  // the open round, or the last one closed
};

struct DriverDeps {
  Store* store = nullptr;           // required
  const Dataset* test = nullptr;    // evaluation set (Fashion-MNIST test)
  // The training set the server's trusted set is drawn from (server.robust =
  // "fltrust"; server.trusted_examples of it); unused by other rules.
  const Dataset* train = nullptr;
  EnergyProfiles profiles;
  DriverTransport* transport = nullptr;
  std::function<double()> utc_hour;  // hours since a UTC midnight, for carbon; default: the system clock
  std::function<std::string()> iso_timestamp;  // for emissions.csv; default: the system clock
  // Optional: when set, the run directory's wire.csv gets each round's TCP
  // bytes (from the round's opening to its commit) beside its payload bytes.
  std::function<WireTotals()> wire_totals;
  // Where a round's close work runs: a secure round's unmasking, the
  // trusted-set work, the aggregation, the evaluation of the released model
  // and, after the last round, the distillation. run_close(round, work,
  // apply) must call work() once, on one thread other than the driver's or
  // on the driver's own, and afterwards apply() on the driver's thread;
  // between the two the driver answers every event without touching the
  // engine or the secure protocol (the round shows as closing, an update or
  // a SecAgg message for it is refused), and apply() costs, commits and
  // announces the round. Empty: work() then apply(), inline, at once.
  std::function<void(uint32_t round, std::function<void()> work, std::function<void()> apply)> run_close;
};

struct RoundCloseResult;
struct SecureUnmaskResult;

class RoundDriver {
 public:
  // Creates or resumes config.run_id in the store; a resumed run continues
  // after its last committed round with its committed model.
  static Result<std::unique_ptr<RoundDriver>> Create(const CoordinatorConfig& config, DriverDeps deps);

  // A peer on connection `conn` whose certificate CN is `identity` sent Hello.
  // Returns the Register reply, or an Error to send before closing. A second
  // connection of the same identity replaces the first. The caller sends the
  // Register and then calls Tick().
  Result<v1::Register> OnHello(uint64_t conn, const std::string& identity, const v1::Hello& hello, double now_s);
  // The connection closed (any reason). Unknown connections are ignored.
  void OnDisconnect(uint64_t conn, double now_s);
  // An Update, an Error (e.g. DECLINED) or an EvalResult from a registered connection.
  void OnUpdate(uint64_t conn, const v1::Update& update, double now_s);
  void OnClientError(uint64_t conn, const v1::Error& error, double now_s);
  // A SecAgg+ stage message of the open secure round (pipeline = "secure").
  // A message of another round or stage, from a client not in the round, or
  // refused by the protocol is answered with an Error naming it; the round goes on.
  void OnSecAgg(uint64_t conn, const v1::SecAgg& msg, double now_s);
  // A result for the open federated evaluation; others are logged and ignored.
  void OnEvalResult(uint64_t conn, const v1::EvalResult& result, double now_s);
  // Opens a round when enough clients are connected, closes one at its
  // deadline. Call periodically and after events. While a close is in
  // flight it opens nothing.
  void Tick(double now_s);
  // A round's close work has been handed to run_close and not yet applied.
  bool closing() const { return closing_.has_value(); }

  // True while connection `conn` owes an update for the open round: its
  // silence is training, which the round deadline bounds, not idleness.
  bool Busy(uint64_t conn) const;
  // All configured rounds are committed.
  // Or the run stopped early (privacy.target_epsilon reached).
  bool done() const { return next_round_ > config_.rounds || !stop_reason_.empty(); }
  // Done, and no federated evaluation is waiting for answers: the service may stop.
  bool finished() const { return done() && !eval_.has_value(); }
  // A failure that stops the service (store commit, evaluation, run directory).
  const std::optional<Error>& fatal() const { return fatal_; }
  DriverMetrics Metrics() const;
  // The dashboard's view at `now_s` (the driver's clock).
  DashboardView Dashboard(double now_s) const;
  // The global model version clients see (continues across restarts).
  uint32_t version() const;
  // Not while closing(): the close work owns the engine.
  std::span<const float> global_model() const { return engine_->global_model(); }
  // The model evaluated and reported: the global model, or its moving average (server.release_ema). Not while closing().
  std::span<const float> release_model() const { return engine_->release_model(); }
  const std::vector<RoundRecord>& records() const { return records_; }
  // Completed federated evaluations of this process, oldest first.
  const std::vector<FederatedEval>& federated_evals() const { return fed_evals_; }
  std::string run_id() const { return config_.run_id; }

 private:
  struct Client {
    uint64_t id = 0;
    std::string name, device, radio, region;
    const DeviceProfile* device_profile = nullptr;
    const RadioProfile* radio_profile = nullptr;
    const RegionProfile* region_profile = nullptr;
    uint64_t num_examples = 0;
    uint32_t held_version = 0;  // coordinator numbering, 0 = none
    // secure.derive_guide: the steps it keeps (Hello.history_steps) and the
    // version from which it holds them all (HistoryAfterDownload; 0: none).
    uint32_t history_from = 0, history_steps = 0;
    std::optional<PartitionSpec> partition;  // its data's split, when it said (Hello.data_split)
    uint32_t partition_index = 0;
  };
  enum class SlotState { kWaiting, kAccepted, kRejected, kDeclined, kGone };
  struct Slot {
    uint64_t client_id = 0;
    SlotState state = SlotState::kWaiting;
    uint64_t bytes_down = 0, bytes_up = 0;
    v1::LedgerFigures figures;
    double loss = 0;
    std::string reject_reason;  // RejectReason name of a rejected update, for the dashboard
    // Secure pipeline: the protocol's bytes (as the SecureRoundServer counted
    // them, inside bytes_up/bytes_down), the protocol CPU seconds the client
    // reported with stages 3 and 4, and stage 4's CPU priced as device FLOPs.
    uint64_t protocol_bytes_up = 0, protocol_bytes_down = 0;
    double protocol_cpu_s = 0, unmask_flops = 0;
  };

  RoundDriver(const CoordinatorConfig& config, DriverDeps deps) : config_(config), deps_(std::move(deps)) {}
  Status Init();
  // [prune]: the shape a pruned run's stored state was saved at (empty when
  // never pruned); the lean state, the model and the planner take it.
  Result<MlpShapeChange> ResumePrunedShape(const RunState& state);
  void OpenRound(double now_s);
  // Secure pipeline: plans the round's protocol (nullopt and a warning when it cannot run).
  std::optional<std::map<uint64_t, SecureTaskPlan>> PlanSecure(uint32_t round, std::span<const uint64_t> selected);
  // A client's step history once it has applied `payload` (to the current version).
  uint32_t HistoryAfter(const Client& c, std::span<const uint8_t> payload) const;
  // Secure pipeline: closes a stage that is complete or past its deadline and
  // sends the next stage's messages; true once the round may close: stage 5
  // is over (secure_ stays set: CloseRound hands it to the close work, which
  // unmasks the sum), or the protocol failed or never ran (secure_ empty).
  bool TickSecure(double now_s);
  // Each selected client's protocol bytes into its slot; the protocol ends.
  void SettleSecure();
  // Time shifting on the service clock: true if round next_round_ waits
  // (carbon.shift_slack_h); decided once per round, then next_round_at_ moves.
  bool ShiftRound(double now_s);
  // Hands the round's close work to run_close; ApplyClose takes its result
  // back on the driver's thread and finishes the round.
  void CloseRound(double now_s);
  // `secure`: the round's protocol, back from the work that unmasked its sum.
  void ApplyClose(RoundCloseResult&& result, std::optional<privacy::SecureRoundServer> secure);
  // The unmasking's outcome: its CPU, a failure counted and logged, or the
  // survivors' slots accepted (and secure.debug_dump's files written).
  void ApplyUnmasked(uint32_t round, const SecureUnmaskResult& u);
  // The open round as the driver's thread may see it: false while closing.
  bool RoundOpen() const { return !closing_ && engine_->round_open(); }
  // The round in progress, or closing, or the last opened (the engine's, read only when it is not closing).
  uint32_t CurrentRound() const { return closing_ ? closing_->round : engine_->round(); }
  // DriverMetrics' DP fields from the engine's accountant.
  void FillDp(DriverMetrics& m) const;
  Participation ParticipationOf(const Slot& s) const;
  Status FinishRound(const RoundOutcome& outcome, double server_cpu_s, double now_s);
  std::vector<RosterEntry> Roster() const;
  Status WriteRunDirectory();
  void AppendWireRow(const RoundRecord& rec);
  // The open round's slots as the dashboard shows them, plus robust rejections at its close.
  DashboardRound RoundView(std::span<const RobustVerdict> verdicts) const;
  void StartEvaluation(uint32_t round, double now_s);
  void FinishEvaluation();
  std::optional<uint64_t> ConnOf(uint64_t client_id) const;

  CoordinatorConfig config_;
  std::string stop_reason_;  // why the run ended before config_.rounds, if it did
  DriverDeps deps_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<ModelWorkspace> ws_;
  std::unique_ptr<RoundEngine> engine_;
  std::unique_ptr<RoundPlanner> planner_;
  LeanRound lean_;  // [prune] and [widths]: the core's round-level state
  // The server's work on its trusted set (server.robust = "fltrust", the
  // trigger scan); null: none. The trigger scan's memory is stored with each
  // round, so a restarted coordinator keeps it.
  std::unique_ptr<ServerDefense> defense_;
  TriggerRoundSummary defended_;  // the closing round's, for its record
  std::optional<EvalResult> last_eval_;
  double last_int8_ = -1;                // eval.int8: the released model's int8 accuracy (-1: not measured)
  std::optional<StudentReport> student_;  // distill.at_end: the student, after the last round
  uint32_t next_round_ = 1;
  double next_round_at_ = 0;
  uint32_t shift_checked_round_ = 0;  // the last round whose time shift was decided
  EnergyLedger ledger_{""};
  std::vector<RoundRecord> records_;
  std::vector<RoundRow> stored_rows_;
  std::map<std::string, uint64_t> ids_by_name_;
  uint64_t next_client_id_ = 1;
  std::map<uint64_t, Client> clients_;        // every known client by id
  std::optional<privacy::P256PublicKey> identity_ca_;  // secure.identity = "ca": the fleet CA's key
  std::map<uint64_t, uint64_t> conn_client_;  // connection -> client id
  std::map<uint64_t, uint64_t> client_conn_;  // client id -> newest connection

  // The open round.
  double opened_at_ = 0;
  uint32_t round_version_ = 0;  // coordinator version the round's tasks carry
  std::map<uint64_t, Slot> slots_;
  uint32_t accepted_ = 0;
  double round_cpu_s_ = 0;
  double round_utc_hour_ = 0;
  WireTotals round_wire_start_;
  // The open secure round's protocol (pipeline = "secure"), and when its stage opened.
  bool secure_round_ = false;
  bool warned_robust_shortfall_ = false;  // the robust rule's bound shortfall, logged once
  std::optional<privacy::SecureRoundServer> secure_;
  double secure_stage_at_ = 0;
  // Secure pipeline, the run so far (summary.json; a restart starts from the
  // store's rounds): the server's protocol CPU (inside each round's server
  // CPU) and the rounds that failed; and both as of the last committed round,
  // so each commit stores its own round's share.
  double secure_server_cpu_s_ = 0;
  uint64_t secure_failed_rounds_ = 0;
  double committed_secure_server_cpu_s_ = 0;
  uint64_t committed_secure_failed_rounds_ = 0;

  // The open federated evaluation: what each asked client answered.
  struct EvalAnswer {
    bool answered = false;
    bool gone = false;  // disconnected before answering
    uint64_t bytes_down = 0;  // the model payload sent for the evaluation
    uint64_t examples = 0;
    double accuracy = 0, loss = 0;
    bool int8 = false;  // it evaluated the int8 quantization (EvalResult.int8)
  };
  struct Evaluation {
    FederatedEval result;
    double opened_at = 0;
    std::map<uint64_t, EvalAnswer> answers;  // by client id
  };
  std::optional<Evaluation> eval_;
  std::vector<FederatedEval> fed_evals_;

  // A round whose close work is running: what the driver's thread answers
  // with meanwhile instead of asking the engine, which the work owns.
  struct Closing {
    uint32_t round = 0;
    uint32_t version = 0;        // the model version until the round is applied
    std::vector<uint8_t> shape;  // Register's shape field ([prune]), empty when never pruned
    double now_s = 0;            // when it closed: the round's times and the next opening count from here
    double cpu_before_s = 0;     // the round's server CPU before the close work
    DriverMetrics dp;            // the DP fields, as of the close
  };
  std::optional<Closing> closing_;

  DriverMetrics metrics_;
  DashboardRound last_round_;  // the last round closed, for the dashboard
  std::optional<Error> fatal_;
  std::vector<uint32_t> eval_indices_;
};

}  // namespace frugal::coordinator
