// The coordinator's durable state: runs, rounds, retained model versions and
// the steps between them, clients with the version each holds, and the energy
// ledger, in one SQLite file (WAL, synchronous=FULL) that survives kill -9 and
// power loss. Each round's outcome commits in one transaction.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/energy/ledger.h"
#include "frugal/round/record.h"

struct sqlite3;

namespace frugal::coordinator {

// Everything one round's outcome writes, in one transaction.
struct RoundCommit {
  std::string run_id;
  uint32_t round = 0;        // must be the run's last committed round + 1
  uint32_t new_version = 0;  // applied: current version + 1; not applied: current version
  bool applied = false;      // false when the round failed its quorum: model unchanged
  std::vector<float> model;  // the global model of new_version; empty when !applied
  std::vector<uint8_t> step_payload;  // compressed step that produced new_version (may be empty)
  std::vector<uint8_t> engine_state;  // opaque server state (residual, optimizer moments)
  double accuracy = 0, loss = 0;
  uint64_t bytes_up = 0, bytes_down = 0;
  double joules_compute = 0, joules_radio = 0, gco2e = 0;
  double server_joules = 0, server_gco2e = 0;  // the coordinator's aggregation energy
  uint32_t selected = 0, completed = 0, stragglers = 0;
  double virtual_seconds = 0, wall_seconds = 0;
  double utc_hour = 0;  // when the round opened (hours since a UTC midnight)
  uint32_t robust_clipped = 0, robust_downweighted = 0, robust_rejected = 0;  // server.robust's verdicts
  double dp_epsilon = -1, dp_delta = -1;  // DP spent after this round; -1 without DP (stored as NULL)
  // The secure pipeline's protocol this round (0 without it): its messages'
  // bytes, the clients' reported and the server's protocol CPU, and whether
  // the protocol failed (the round closed without a sum).
  uint64_t protocol_bytes_up = 0, protocol_bytes_down = 0;
  double protocol_client_cpu_s = 0, protocol_server_cpu_s = 0;
  bool secure_failed = false;
  TriggerColumns trigger;  // the trigger scan this round (rounds.csv's trigger_* columns)
  // The trigger scan's memory after the round (TriggerDefense::State); empty: none.
  std::vector<uint8_t> defense_state;
  std::vector<std::pair<uint64_t, uint32_t>> client_versions;  // (client id, version it now holds)
  std::vector<LedgerRow> ledger_rows;  // each row's round must equal `round`
  // [prune]: a prune step that followed the round. The pruned model (a smaller
  // dimension) is version new_version + 1, produced by `pruned_step` (its shape
  // change; empty under the dense pipeline); the run's dimension becomes its size.
  std::vector<float> pruned_model;  // empty: no step
  std::vector<uint8_t> pruned_step;
  // With a prune step: the model's whole shape after it relative to the
  // unpruned model (EncodeShapeChange of RoundEngine::shape()), which a
  // restarted coordinator needs to resume the pruned run. Required with one.
  std::vector<uint8_t> pruned_shape;
};

// One committed round as stored (RoundCommit without the blobs and lists).
struct RoundRow {
  uint32_t round = 0;
  uint32_t new_version = 0;
  bool applied = false;
  double accuracy = 0, loss = 0;
  uint64_t bytes_up = 0, bytes_down = 0;
  double joules_compute = 0, joules_radio = 0, gco2e = 0;
  double server_joules = 0, server_gco2e = 0;
  uint32_t selected = 0, completed = 0, stragglers = 0;
  double virtual_seconds = 0, wall_seconds = 0;
  double utc_hour = 0;
  uint32_t robust_clipped = 0, robust_downweighted = 0, robust_rejected = 0;
  double dp_epsilon = -1, dp_delta = -1;  // -1: no DP, or a round stored before schema 5
  uint64_t protocol_bytes_up = 0, protocol_bytes_down = 0;  // 0 also for a round stored before schema 6
  double protocol_client_cpu_s = 0, protocol_server_cpu_s = 0;
  bool secure_failed = false;
  TriggerColumns trigger;  // "no scan" for a round stored before schema 8
};

struct ClientRow {
  uint64_t client_id = 0;
  std::string name, device, radio, region;
  uint32_t held_version = 0;  // 0: holds no model
};

// What a restarted coordinator needs to resume a run.
struct RunState {
  std::string run_id;
  std::string config_text;
  uint32_t last_round = 0;  // 0: no round committed yet
  uint32_t version = 1;     // current global model version
  std::vector<float> model;  // the model of `version`, bit-exact
  std::vector<uint8_t> engine_state;
  std::vector<uint8_t> defense_state;  // the trigger scan's memory (RoundCommit::defense_state)
  std::optional<double> last_accuracy;  // of the last committed round, if any
  // Retained steps keyed by the version each produced (step v takes v-1 to v);
  // versions without a step payload are absent.
  std::map<uint32_t, std::vector<uint8_t>> steps;
  std::vector<uint32_t> retained_versions;  // model versions still stored, ascending
  std::map<uint64_t, uint32_t> client_versions;
  // [prune]: the model's shape relative to the unpruned model after the last
  // prune step (RoundCommit::pruned_shape); empty: never pruned, or pruned in
  // a store older than schema 6, which did not keep it.
  std::vector<uint8_t> shape;
};

struct StoreOptions {
  uint32_t keep_versions = 64;  // newest model versions (and their steps) kept per run; >= 1
  int busy_timeout_ms = 5000;   // how long a write waits for another connection's lock
};

// Not copyable. Thread-safe: an internal mutex serialises every call.
class Store {
 public:
  // Opens `path`, creating an empty store if the file is absent or empty.
  // Fails (message naming the file) if it is not SQLite, not a Frugal store,
  // has a newer schema, or fails PRAGMA quick_check. Never modifies a refused file's data.
  static Result<std::unique_ptr<Store>> Open(const std::string& path, StoreOptions options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return path_; }
  const StoreOptions& options() const { return options_; }

  // Creates run `run_id` with `initial_model` as version 1. If the run exists
  // with the same config_text this is a no-op (a restart resumes it, the
  // initial model is ignored); with a different config it fails AlreadyExists.
  Status CreateRun(const std::string& run_id, const std::string& config_text,
                   const std::vector<float>& initial_model);

  // The run's resumable state, nullopt if no such run; DataLoss if a stored
  // blob fails its checksum or has the wrong size.
  Result<std::optional<RunState>> LoadRun(const std::string& run_id);

  // Writes one round's outcome in one transaction and prunes versions older
  // than the newest keep_versions. FailedPrecondition if c.round is not the
  // last committed round + 1 or new_version does not follow; InvalidArgument
  // on a malformed commit. On any failure nothing is written.
  Status CommitRound(const RoundCommit& c);

  // The model of `version`, nullopt if pruned or never stored; NotFound if no such run.
  Result<std::optional<std::vector<float>>> ModelAt(const std::string& run_id, uint32_t version);

  // Committed rounds in round order; NotFound if no such run.
  Result<std::vector<RoundRow>> Rounds(const std::string& run_id);
  // Appends ledger rows outside a round commit (a federated evaluation after
  // a committed round). Each row's round must be committed already
  // (FailedPrecondition otherwise); NotFound if no such run. All or nothing.
  Status AddLedgerRows(const std::string& run_id, const std::vector<LedgerRow>& rows);
  // Ledger rows in (round, insertion) order; NotFound if no such run.
  Result<std::vector<LedgerRow>> Ledger(const std::string& run_id);
  // Known clients by id; NotFound if no such run.
  Result<std::vector<ClientRow>> Clients(const std::string& run_id);

  // Records (or updates) a client's descriptive fields; keeps its held version.
  // NotFound if no such run.
  Status UpsertClient(const std::string& run_id, uint64_t client_id, const std::string& name,
                      const std::string& device, const std::string& radio,
                      const std::string& region);

 private:
  struct DbCloser {
    void operator()(sqlite3* db) const;
  };
  using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

  Store(std::string path, StoreOptions options, DbPtr db);

  Status Exec(const char* sql);
  Result<int64_t> RunDim(const std::string& run_id);
  Result<RunState> LoadRunLocked(const std::string& run_id);
  Status CommitRoundLocked(const RoundCommit& c);
  Status InsertLedgerRows(const std::string& run_id, const std::vector<LedgerRow>& rows);

  std::string path_;
  StoreOptions options_;
  DbPtr db_;
  std::mutex mu_;
};

}  // namespace frugal::coordinator
