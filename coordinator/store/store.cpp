// SQLite implementation of the coordinator's store. Every SQLite result code is
// converted to a frugal::Error here, with the file and the SQL that failed.
#include "frugal/coordinator/store.h"

#include <sqlite3.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string_view>

namespace frugal::coordinator {
namespace {

// 'FRGL' in PRAGMA application_id marks a file as a Frugal store.
constexpr int32_t kApplicationId = 0x4652474C;
// PRAGMA user_version: bump with every schema change, and teach Open to migrate.
constexpr int kSchemaVersion = 8;

constexpr const char* kTableNames[] = {"runs", "model_versions", "rounds", "clients", "ledger"};

// Schema v1; docs/operations.md ("State store") describes every column.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE runs (
  run_id           TEXT PRIMARY KEY NOT NULL,
  config_text      TEXT NOT NULL,
  dim              INTEGER NOT NULL CHECK (dim > 0),
  last_round       INTEGER NOT NULL DEFAULT 0 CHECK (last_round >= 0),
  version          INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
  engine_state     BLOB NOT NULL DEFAULT x'',
  engine_state_crc INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE model_versions (
  run_id    TEXT NOT NULL REFERENCES runs(run_id),
  version   INTEGER NOT NULL CHECK (version >= 1),
  round     INTEGER NOT NULL CHECK (round >= 0),
  model     BLOB NOT NULL,
  model_crc INTEGER NOT NULL,
  step      BLOB,
  step_crc  INTEGER,
  PRIMARY KEY (run_id, version)
);
CREATE TABLE rounds (
  run_id          TEXT NOT NULL REFERENCES runs(run_id),
  round           INTEGER NOT NULL CHECK (round >= 1),
  new_version     INTEGER NOT NULL,
  applied         INTEGER NOT NULL CHECK (applied IN (0, 1)),
  accuracy        REAL,
  loss            REAL,
  bytes_up        INTEGER NOT NULL,
  bytes_down      INTEGER NOT NULL,
  joules_compute  REAL,
  joules_radio    REAL,
  gco2e           REAL,
  server_joules   REAL,
  server_gco2e    REAL,
  selected        INTEGER NOT NULL,
  completed       INTEGER NOT NULL,
  stragglers      INTEGER NOT NULL,
  virtual_seconds REAL,
  wall_seconds    REAL,
  PRIMARY KEY (run_id, round)
);
CREATE TABLE clients (
  run_id       TEXT NOT NULL REFERENCES runs(run_id),
  client_id    INTEGER NOT NULL,
  name         TEXT NOT NULL DEFAULT '',
  device       TEXT NOT NULL DEFAULT '',
  radio        TEXT NOT NULL DEFAULT '',
  region       TEXT NOT NULL DEFAULT '',
  held_version INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, client_id)
);
CREATE TABLE ledger (
  id         INTEGER PRIMARY KEY,
  run_id     TEXT NOT NULL,
  round      INTEGER NOT NULL,
  client_id  INTEGER NOT NULL,
  device     TEXT NOT NULL,
  radio      TEXT NOT NULL,
  region     TEXT NOT NULL,
  bytes_up   INTEGER NOT NULL,
  bytes_down INTEGER NOT NULL,
  flops      REAL,
  compute_j  REAL,
  radio_j    REAL,
  total_j    REAL,
  gco2e      REAL,
  source     TEXT NOT NULL CHECK (source IN ('modelled', 'measured')),
  outcome    TEXT NOT NULL CHECK (outcome IN ('participated', 'straggled', 'dropped')),
  FOREIGN KEY (run_id, round) REFERENCES rounds(run_id, round)
);
CREATE INDEX ledger_by_round ON ledger(run_id, round, id);
)sql";

// Version 2: ledger rows may record a federated evaluation ('evaluated').
// SQLite cannot change a CHECK constraint, so the table is rebuilt, ids kept.
constexpr const char* kMigrateV1toV2 = R"sql(
CREATE TABLE ledger_v2 (
  id         INTEGER PRIMARY KEY,
  run_id     TEXT NOT NULL,
  round      INTEGER NOT NULL,
  client_id  INTEGER NOT NULL,
  device     TEXT NOT NULL,
  radio      TEXT NOT NULL,
  region     TEXT NOT NULL,
  bytes_up   INTEGER NOT NULL,
  bytes_down INTEGER NOT NULL,
  flops      REAL,
  compute_j  REAL,
  radio_j    REAL,
  total_j    REAL,
  gco2e      REAL,
  source     TEXT NOT NULL CHECK (source IN ('modelled', 'measured')),
  outcome    TEXT NOT NULL CHECK (outcome IN ('participated', 'straggled', 'dropped', 'evaluated')),
  FOREIGN KEY (run_id, round) REFERENCES rounds(run_id, round)
);
INSERT INTO ledger_v2 SELECT id, run_id, round, client_id, device, radio, region, bytes_up, bytes_down,
  flops, compute_j, radio_j, total_j, gco2e, source, outcome FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_v2 RENAME TO ledger;
CREATE INDEX ledger_by_round ON ledger(run_id, round, id);
)sql";

// Schema v3: the UTC hour each round ran at (its energy's carbon price; a
// replay runs each round at it). Rounds stored before it read as hour 0.
constexpr const char* kMigrateV2toV3 = R"sql(
ALTER TABLE rounds ADD COLUMN utc_hour REAL NOT NULL DEFAULT 0;
)sql";

// Schema v4: robust aggregation's verdicts (server.robust): per round, the
// updates it clipped, down-weighted or rejected; per ledger row, which and
// why ('' when kept as sent). Older rounds and rows read as none.
constexpr const char* kMigrateV3toV4 = R"sql(
ALTER TABLE rounds ADD COLUMN robust_clipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rounds ADD COLUMN robust_downweighted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rounds ADD COLUMN robust_rejected INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN robust TEXT NOT NULL DEFAULT '';
)sql";

// Schema v5: the differential privacy spent after each round (privacy.mode),
// so a restarted coordinator's rounds.csv keeps the epsilon of the rounds
// before it. NULL: no DP, or a round stored before v5.
constexpr const char* kMigrateV4toV5 = R"sql(
ALTER TABLE rounds ADD COLUMN dp_epsilon REAL;
ALTER TABLE rounds ADD COLUMN dp_delta REAL;
)sql";

// Schema v6: a pruned run's shape ([prune]): the kept units relative to the
// unpruned model after the last prune step (the FRSC bytes), so a restarted
// coordinator resumes the pruned model. Runs stored before it read as never
// pruned (a pruned one among them is refused on resume).
constexpr const char* kMigrateV5toV6 = R"sql(
ALTER TABLE runs ADD COLUMN shape BLOB NOT NULL DEFAULT x'';
ALTER TABLE runs ADD COLUMN shape_crc INTEGER NOT NULL DEFAULT 0;
)sql";

// Schema v7: the secure pipeline's protocol per round (bytes of its messages
// up and down, the clients' and the server's protocol CPU seconds, whether it
// failed), so a restarted coordinator's summary totals cover the whole run.
// Rounds stored before v7 read as 0.
constexpr const char* kMigrateV6toV7 = R"sql(
ALTER TABLE rounds ADD COLUMN protocol_bytes_up INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rounds ADD COLUMN protocol_bytes_down INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rounds ADD COLUMN protocol_client_cpu_s REAL NOT NULL DEFAULT 0;
ALTER TABLE rounds ADD COLUMN protocol_server_cpu_s REAL NOT NULL DEFAULT 0;
ALTER TABLE rounds ADD COLUMN secure_failed INTEGER NOT NULL DEFAULT 0;
)sql";
// v7 -> v8: the trigger scan (server.trigger_scan_every): each round's
// trigger_* columns of rounds.csv, and the scan's memory (remembered triggers,
// flags per class, pruned inputs; TriggerDefense::State) with the run, so a
// restarted coordinator keeps what it had found. Older rounds read as "no scan".
constexpr const char* kMigrateV7toV8 = R"sql(
ALTER TABLE rounds ADD COLUMN trigger_scanned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rounds ADD COLUMN trigger_flagged INTEGER NOT NULL DEFAULT -1;
ALTER TABLE rounds ADD COLUMN trigger_anomaly REAL NOT NULL DEFAULT 0;
ALTER TABLE rounds ADD COLUMN trigger_known INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rounds ADD COLUMN trigger_unlearnt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rounds ADD COLUMN trigger_pruned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN defense_state BLOB NOT NULL DEFAULT x'';
ALTER TABLE runs ADD COLUMN defense_state_crc INTEGER NOT NULL DEFAULT 0;
)sql";

const char* ResultCodeName(int rc) {
  switch (rc & 0xff) {
    case SQLITE_ERROR: return "SQLITE_ERROR";
    case SQLITE_INTERNAL: return "SQLITE_INTERNAL";
    case SQLITE_PERM: return "SQLITE_PERM";
    case SQLITE_ABORT: return "SQLITE_ABORT";
    case SQLITE_BUSY: return "SQLITE_BUSY";
    case SQLITE_LOCKED: return "SQLITE_LOCKED";
    case SQLITE_NOMEM: return "SQLITE_NOMEM";
    case SQLITE_READONLY: return "SQLITE_READONLY";
    case SQLITE_INTERRUPT: return "SQLITE_INTERRUPT";
    case SQLITE_IOERR: return "SQLITE_IOERR";
    case SQLITE_CORRUPT: return "SQLITE_CORRUPT";
    case SQLITE_NOTFOUND: return "SQLITE_NOTFOUND";
    case SQLITE_FULL: return "SQLITE_FULL";
    case SQLITE_CANTOPEN: return "SQLITE_CANTOPEN";
    case SQLITE_PROTOCOL: return "SQLITE_PROTOCOL";
    case SQLITE_SCHEMA: return "SQLITE_SCHEMA";
    case SQLITE_TOOBIG: return "SQLITE_TOOBIG";
    case SQLITE_CONSTRAINT: return "SQLITE_CONSTRAINT";
    case SQLITE_MISMATCH: return "SQLITE_MISMATCH";
    case SQLITE_MISUSE: return "SQLITE_MISUSE";
    case SQLITE_NOLFS: return "SQLITE_NOLFS";
    case SQLITE_AUTH: return "SQLITE_AUTH";
    case SQLITE_RANGE: return "SQLITE_RANGE";
    case SQLITE_NOTADB: return "SQLITE_NOTADB";
    default: return "SQLITE_?";
  }
}

ErrorCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_PROTOCOL:
      return ErrorCode::kUnavailable;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return ErrorCode::kDataLoss;
    case SQLITE_FULL:
    case SQLITE_TOOBIG:
    case SQLITE_NOMEM:
      return ErrorCode::kResourceExhausted;
    case SQLITE_CANTOPEN:
      return ErrorCode::kNotFound;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return ErrorCode::kPermissionDenied;
    case SQLITE_CONSTRAINT:
      return ErrorCode::kFailedPrecondition;
    default:
      return ErrorCode::kInternal;
  }
}

// `prefix` then the SQL text quoted on one line, shortened, for error messages.
// Built by appends: GCC 12 warns falsely (-Wrestrict) on "x" + std::string + "y".
std::string SqlContext(std::string_view prefix, std::string_view sql) {
  std::string out(prefix);
  out += '"';
  const size_t start = out.size();
  bool space = false;
  for (char ch : sql) {
    if (ch == '\n' || ch == ' ' || ch == '\t') {
      space = out.size() > start;
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += ch;
    if (out.size() - start > 120) {
      out += "...";
      break;
    }
  }
  out += '"';
  return out;
}

// "store <path>: <context>: <sqlite message> (SQLITE_X)".
Error SqlError(const std::string& path, sqlite3* db, int rc, std::string_view context) {
  std::string msg = "store " + path + ": " + std::string(context) + ": ";
  msg += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  msg += " (";
  msg += ResultCodeName(rc);
  msg += ")";
  return Error(CodeFor(rc), std::move(msg));
}

struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};

// A prepared statement. Bind errors are remembered and reported by Step(), so
// call sites read as one chain of binds then one checked Step().
class Statement {
 public:
  static Result<Statement> Prepare(sqlite3* db, const std::string& path, std::string_view sql) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(raw);
      return SqlError(path, db, rc, SqlContext("preparing ", sql));
    }
    return Statement(db, path, sql, raw);
  }

  Statement& Bind(int i, int64_t v) { return Check(sqlite3_bind_int64(stmt_.get(), i, v)); }
  Statement& Bind(int i, uint64_t v) { return Bind(i, static_cast<int64_t>(v)); }
  Statement& Bind(int i, uint32_t v) { return Bind(i, static_cast<int64_t>(v)); }
  Statement& Bind(int i, bool v) { return Bind(i, static_cast<int64_t>(v ? 1 : 0)); }
  // SQLite stores NaN as NULL; Double() reads NULL back as NaN.
  Statement& Bind(int i, double v) {
    return Check(std::isnan(v) ? sqlite3_bind_null(stmt_.get(), i)
                               : sqlite3_bind_double(stmt_.get(), i, v));
  }
  Statement& Bind(int i, std::string_view v) {
    return Check(sqlite3_bind_text64(stmt_.get(), i, v.data(), v.size(), SQLITE_TRANSIENT,
                                     SQLITE_UTF8));
  }
  Statement& Bind(int i, const std::string& v) { return Bind(i, std::string_view(v)); }
  Statement& Bind(int i, const char* v) { return Bind(i, std::string_view(v)); }
  // An empty span binds a zero-length blob (not NULL). The bytes must outlive Step().
  Statement& BindBlob(int i, std::span<const uint8_t> v) {
    if (v.empty()) return Check(sqlite3_bind_zeroblob(stmt_.get(), i, 0));
    return Check(sqlite3_bind_blob64(stmt_.get(), i, v.data(), v.size(), SQLITE_STATIC));
  }
  Statement& BindNull(int i) { return Check(sqlite3_bind_null(stmt_.get(), i)); }

  // True: a row is ready; false: done.
  Result<bool> Step() {
    if (bind_rc_ != SQLITE_OK) {
      return SqlError(path_, nullptr, bind_rc_, SqlContext("binding ", sql_));
    }
    int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqlError(path_, db_, rc, SqlContext("", sql_));
  }
  // Steps a statement that returns no rows.
  Status Run() {
    FRUGAL_ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return OkStatus();
  }

  // Readies the statement for its next set of bindings.
  Status Reset() {
    int rc = sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
    bind_rc_ = SQLITE_OK;
    if (rc != SQLITE_OK) return SqlError(path_, db_, rc, SqlContext("resetting ", sql_));
    return OkStatus();
  }

  bool IsNull(int col) const { return sqlite3_column_type(stmt_.get(), col) == SQLITE_NULL; }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_.get(), col); }
  uint64_t U64(int col) const { return static_cast<uint64_t>(Int(col)); }
  uint32_t U32(int col) const { return static_cast<uint32_t>(Int(col)); }
  double Double(int col) const {
    return IsNull(col) ? std::numeric_limits<double>::quiet_NaN()
                       : sqlite3_column_double(stmt_.get(), col);
  }
  std::string Text(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_.get(), col);
    int n = sqlite3_column_bytes(stmt_.get(), col);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
  }
  std::vector<uint8_t> Blob(int col) const {
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(stmt_.get(), col));
    int n = sqlite3_column_bytes(stmt_.get(), col);
    return p == nullptr ? std::vector<uint8_t>() : std::vector<uint8_t>(p, p + n);
  }

 private:
  Statement(sqlite3* db, const std::string& path, std::string_view sql, sqlite3_stmt* s)
      : db_(db), path_(path), sql_(sql), stmt_(s) {}

  Statement& Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
    return *this;
  }

  sqlite3* db_;
  std::string path_;
  std::string_view sql_;  // points at a string literal at every call site
  std::unique_ptr<sqlite3_stmt, StmtFinalizer> stmt_;
  int bind_rc_ = SQLITE_OK;
};

Status ExecSql(sqlite3* db, const std::string& path, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return OkStatus();
  std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  return Error(CodeFor(rc), "store " + path + ": " + SqlContext("", sql) + ": " + msg + " (" +
                                ResultCodeName(rc) + ")");
}

// BEGIN on construction (by Begin), ROLLBACK on scope exit unless committed.
class Transaction {
 public:
  Transaction(sqlite3* db, const std::string& path) : db_(db), path_(path) {}
  ~Transaction() {
    if (open_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  // IMMEDIATE takes the write lock up front, so a writer waits (busy_timeout)
  // at BEGIN instead of failing half-way through.
  Status Begin(bool write) {
    FRUGAL_RETURN_IF_ERROR(ExecSql(db_, path_, write ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED"));
    open_ = true;
    return OkStatus();
  }
  Status Commit() {
    FRUGAL_RETURN_IF_ERROR(ExecSql(db_, path_, "COMMIT"));
    open_ = false;
    return OkStatus();
  }

 private:
  sqlite3* db_;
  const std::string& path_;
  bool open_ = false;
};

uint32_t Crc(std::span<const uint8_t> bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths; feed large blobs in pieces.
  size_t off = 0;
  while (off < bytes.size()) {
    size_t n = std::min<size_t>(bytes.size() - off, 1u << 30);
    crc = crc32(crc, bytes.data() + off, static_cast<uInt>(n));
    off += n;
  }
  return static_cast<uint32_t>(crc);
}

// Raw little-endian fp32, the layout docs/operations.md promises.
std::vector<uint8_t> EncodeFloats(std::span<const float> v) {
  std::vector<uint8_t> out(v.size() * 4);
  if constexpr (std::endian::native == std::endian::little) {
    if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  } else {
    for (size_t i = 0; i < v.size(); ++i) {
      uint32_t u = std::bit_cast<uint32_t>(v[i]);
      for (int b = 0; b < 4; ++b) out[4 * i + b] = static_cast<uint8_t>(u >> (8 * b));
    }
  }
  return out;
}

std::vector<float> DecodeFloats(std::span<const uint8_t> bytes) {
  std::vector<float> out(bytes.size() / 4);
  if constexpr (std::endian::native == std::endian::little) {
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * 4);
  } else {
    for (size_t i = 0; i < out.size(); ++i) {
      uint32_t u = 0;
      for (int b = 0; b < 4; ++b) u |= static_cast<uint32_t>(bytes[4 * i + b]) << (8 * b);
      out[i] = std::bit_cast<float>(u);
    }
  }
  return out;
}

std::optional<ClientOutcome> ParseOutcome(std::string_view s) {
  for (ClientOutcome o :
       {ClientOutcome::kParticipated, ClientOutcome::kStraggled, ClientOutcome::kDropped,
        ClientOutcome::kEvaluated}) {
    if (ClientOutcomeName(o) == s) return o;
  }
  return std::nullopt;
}

std::optional<EnergySource> ParseSource(std::string_view s) {
  for (EnergySource e : {EnergySource::kModelled, EnergySource::kMeasured}) {
    if (EnergySourceName(e) == s) return e;
  }
  return std::nullopt;
}

// Refuses a non-empty file that does not start with the SQLite header before
// SQLite sees it, so the message says what is wrong rather than "file is not a database".
Status CheckHeader(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return OkStatus();
  if (!std::filesystem::is_regular_file(path, ec)) {
    return InvalidArgumentError("store " + path + ": not a regular file");
  }
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return UnavailableError("store " + path + ": cannot stat: " + ec.message());
  if (size == 0) return OkStatus();
  std::ifstream in(path, std::ios::binary);
  if (!in) return UnavailableError("store " + path + ": cannot open for reading");
  char header[16] = {};
  in.read(header, sizeof(header));
  static constexpr char kMagic[16] = "SQLite format 3";  // 15 chars + NUL, as on disk
  if (in.gcount() != 16 || std::memcmp(header, kMagic, 16) != 0) {
    return DataLossError("store " + path + ": not a SQLite database (the file does not start with " +
                         "the SQLite header; " + std::to_string(size) + " bytes)");
  }
  if (size < 512) {
    return DataLossError("store " + path + ": truncated SQLite database (" + std::to_string(size) +
                         " bytes, less than one page)");
  }
  return OkStatus();
}

// Rewords SQLite's "database disk image is malformed" as what it means for a store file.
template <typename T>
Result<T> ExplainCorrupt(const std::string& path, Result<T> r) {
  if (r.ok() || r.error().code() != ErrorCode::kDataLoss) return r;
  std::string detail = r.error().message();
  const std::string prefix = "store " + path + ": ";
  if (detail.starts_with(prefix)) detail.erase(0, prefix.size());
  return DataLossError("store " + path + ": corrupt or truncated file (" + detail + ")");
}

Result<int64_t> PragmaInt(sqlite3* db, const std::string& path, const char* sql) {
  FRUGAL_ASSIGN_OR_RETURN(Statement st, Statement::Prepare(db, path, sql));
  FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return InternalError("store " + path + ": \"" + std::string(sql) + "\" returned no row");
  return st.Int(0);
}

}  // namespace

void Store::DbCloser::operator()(sqlite3* db) const { sqlite3_close_v2(db); }

Store::Store(std::string path, StoreOptions options, DbPtr db)
    : path_(std::move(path)), options_(options), db_(std::move(db)) {}

Store::~Store() = default;

Status Store::Exec(const char* sql) { return ExecSql(db_.get(), path_, sql); }

Result<std::unique_ptr<Store>> Store::Open(const std::string& path, StoreOptions options) {
  if (options.keep_versions == 0) {
    return InvalidArgumentError("store " + path + ": keep_versions must be at least 1");
  }
  FRUGAL_RETURN_IF_ERROR(CheckHeader(path));

  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) return SqlError(path, raw, rc, "opening");
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), std::max(0, options.busy_timeout_ms));

  // Identify the file before changing anything in it: a refused file keeps its bytes.
  FRUGAL_ASSIGN_OR_RETURN(int64_t app_id,
                          ExplainCorrupt(path, PragmaInt(db.get(), path, "PRAGMA application_id")));
  FRUGAL_ASSIGN_OR_RETURN(int64_t user_version,
                          ExplainCorrupt(path, PragmaInt(db.get(), path, "PRAGMA user_version")));
  FRUGAL_ASSIGN_OR_RETURN(
      int64_t objects,
      ExplainCorrupt(path, PragmaInt(db.get(), path, "SELECT count(*) FROM sqlite_schema")));
  const bool fresh = app_id == 0 && user_version == 0 && objects == 0;
  if (!fresh) {
    if (app_id != kApplicationId) {
      return InvalidArgumentError("store " + path + ": a SQLite database but not a Frugal store " +
                                  "(application_id " + std::to_string(app_id) + ", " +
                                  std::to_string(objects) + " schema objects)");
    }
    if (user_version > kSchemaVersion) {
      return FailedPreconditionError("store " + path + ": schema version " +
                                     std::to_string(user_version) +
                                     " is newer than this build supports (" +
                                     std::to_string(kSchemaVersion) + "); use a newer Frugal");
    }
    if (user_version < 1) {
      return DataLossError("store " + path + ": Frugal store with invalid schema version " +
                           std::to_string(user_version));
    }
    FRUGAL_ASSIGN_OR_RETURN(Statement check,
                            Statement::Prepare(db.get(), path, "PRAGMA quick_check(8)"));
    // quick_check reports "ok", or problems as rows that may hold several lines each.
    std::vector<std::string> problems;
    for (;;) {
      FRUGAL_ASSIGN_OR_RETURN(bool row, ExplainCorrupt(path, check.Step()));
      if (!row) break;
      std::string text = check.Text(0);
      if (text == "ok") continue;
      size_t start = 0;
      while (start <= text.size()) {
        size_t end = std::min(text.find('\n', start), text.size());
        if (end > start) problems.push_back(text.substr(start, end - start));
        start = end + 1;
      }
    }
    if (!problems.empty()) {
      constexpr size_t kShown = 4;
      std::string msg = "store " + path + ": corrupt file, integrity check failed: ";
      for (size_t i = 0; i < std::min(kShown, problems.size()); ++i) {
        if (i > 0) msg += "; ";
        msg += problems[i];
      }
      if (problems.size() > kShown) msg += "; and " + std::to_string(problems.size() - kShown) + " more";
      return DataLossError(std::move(msg));
    }
    for (const char* table : kTableNames) {
      FRUGAL_ASSIGN_OR_RETURN(
          Statement st,
          Statement::Prepare(db.get(), path,
                             "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?"));
      st.Bind(1, table);
      FRUGAL_ASSIGN_OR_RETURN(bool found, st.Step());
      if (!found) return DataLossError("store " + path + ": table '" + table + "' is missing");
    }
  }

  std::unique_ptr<Store> store(new Store(path, options, std::move(db)));
  // WAL: readers never block the one writer, and a commit is one append to the log.
  {
    FRUGAL_ASSIGN_OR_RETURN(Statement wal,
                            Statement::Prepare(store->db_.get(), path, "PRAGMA journal_mode=WAL"));
    FRUGAL_ASSIGN_OR_RETURN(bool wal_row, wal.Step());
    if (!wal_row || wal.Text(0) != "wal") {
      return UnavailableError("store " + path + ": could not switch to WAL journal mode (got '" +
                              (wal_row ? wal.Text(0) : std::string()) + "')");
    }
  }
  // FULL, not NORMAL: in WAL mode NORMAL skips the fsync of the log at commit,
  // so a committed round could vanish on power loss (it would survive kill -9).
  // A round the coordinator announced as committed must survive both.
  FRUGAL_RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=FULL"));
  FRUGAL_RETURN_IF_ERROR(store->Exec("PRAGMA foreign_keys=ON"));

  if (fresh || user_version < kSchemaVersion) {
    // A new file gets version 1 and then every migration, so each migration
    // runs on every new store, not only on old files.
    Transaction txn(store->db_.get(), store->path_);
    FRUGAL_RETURN_IF_ERROR(txn.Begin(/*write=*/true));
    // Another process may have initialised or migrated the file between our check and the lock.
    FRUGAL_ASSIGN_OR_RETURN(int64_t app_now,
                            PragmaInt(store->db_.get(), path, "PRAGMA application_id"));
    if (app_now == 0) {
      FRUGAL_RETURN_IF_ERROR(store->Exec(kSchemaV1));
      const std::string ids = "PRAGMA application_id=" + std::to_string(kApplicationId) + "; PRAGMA user_version=1";
      FRUGAL_RETURN_IF_ERROR(store->Exec(ids.c_str()));
    }
    FRUGAL_ASSIGN_OR_RETURN(int64_t version_now, PragmaInt(store->db_.get(), path, "PRAGMA user_version"));
    if (version_now == 1) {
      FRUGAL_RETURN_IF_ERROR(store->Exec(kMigrateV1toV2));
      FRUGAL_RETURN_IF_ERROR(store->Exec("PRAGMA user_version=2"));
      version_now = 2;
    }
    if (version_now == 2) {
      FRUGAL_RETURN_IF_ERROR(store->Exec(kMigrateV2toV3));
      FRUGAL_RETURN_IF_ERROR(store->Exec("PRAGMA user_version=3"));
      version_now = 3;
    }
    if (version_now == 3) {
      FRUGAL_RETURN_IF_ERROR(store->Exec(kMigrateV3toV4));
      FRUGAL_RETURN_IF_ERROR(store->Exec("PRAGMA user_version=4"));
      version_now = 4;
    }
    if (version_now == 4) {
      FRUGAL_RETURN_IF_ERROR(store->Exec(kMigrateV4toV5));
      FRUGAL_RETURN_IF_ERROR(store->Exec("PRAGMA user_version=5"));
      version_now = 5;
    }
    if (version_now == 5) {
      FRUGAL_RETURN_IF_ERROR(store->Exec(kMigrateV5toV6));
      FRUGAL_RETURN_IF_ERROR(store->Exec("PRAGMA user_version=6"));
      version_now = 6;
    }
    if (version_now == 6) {
      FRUGAL_RETURN_IF_ERROR(store->Exec(kMigrateV6toV7));
      FRUGAL_RETURN_IF_ERROR(store->Exec("PRAGMA user_version=7"));
      version_now = 7;
    }
    if (version_now == 7) {
      FRUGAL_RETURN_IF_ERROR(store->Exec(kMigrateV7toV8));
      FRUGAL_RETURN_IF_ERROR(store->Exec("PRAGMA user_version=8"));
    }
    FRUGAL_RETURN_IF_ERROR(txn.Commit());
  }
  return store;
}

Result<int64_t> Store::RunDim(const std::string& run_id) {
  FRUGAL_ASSIGN_OR_RETURN(Statement st,
                          Statement::Prepare(db_.get(), path_, "SELECT dim FROM runs WHERE run_id = ?"));
  st.Bind(1, run_id);
  FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return NotFoundError("store " + path_ + ": no run '" + run_id + "'");
  return st.Int(0);
}

Status Store::CreateRun(const std::string& run_id, const std::string& config_text,
                        const std::vector<float>& initial_model) {
  if (run_id.empty()) return InvalidArgumentError("store " + path_ + ": empty run id");
  if (initial_model.empty()) {
    return InvalidArgumentError("store " + path_ + ": run '" + run_id + "' has an empty initial model");
  }
  std::lock_guard lock(mu_);
  Transaction txn(db_.get(), path_);
  FRUGAL_RETURN_IF_ERROR(txn.Begin(/*write=*/true));
  {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st,
        Statement::Prepare(db_.get(), path_, "SELECT config_text FROM runs WHERE run_id = ?"));
    st.Bind(1, run_id);
    FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) {
      if (st.Text(0) == config_text) return OkStatus();
      return Error(ErrorCode::kAlreadyExists,
                   "store " + path_ + ": run '" + run_id +
                       "' already exists with a different config; use a new run id");
    }
  }
  const std::vector<uint8_t> model = EncodeFloats(initial_model);
  {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st, Statement::Prepare(db_.get(), path_,
                                         "INSERT INTO runs (run_id, config_text, dim, last_round, "
                                         "version, engine_state, engine_state_crc) "
                                         "VALUES (?, ?, ?, 0, 1, x'', 0)"));
    st.Bind(1, run_id).Bind(2, config_text).Bind(3, static_cast<int64_t>(initial_model.size()));
    FRUGAL_RETURN_IF_ERROR(st.Run());
  }
  {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st, Statement::Prepare(db_.get(), path_,
                                         "INSERT INTO model_versions (run_id, version, round, "
                                         "model, model_crc, step, step_crc) "
                                         "VALUES (?, 1, 0, ?, ?, NULL, NULL)"));
    st.Bind(1, run_id).BindBlob(2, model).Bind(3, static_cast<int64_t>(Crc(model)));
    FRUGAL_RETURN_IF_ERROR(st.Run());
  }
  return txn.Commit();
}

Result<std::optional<RunState>> Store::LoadRun(const std::string& run_id) {
  std::lock_guard lock(mu_);
  Result<RunState> state = LoadRunLocked(run_id);
  if (!state.ok()) {
    if (state.error().code() == ErrorCode::kNotFound) return std::optional<RunState>();
    return state.error();
  }
  return std::optional<RunState>(std::move(state).value());
}

Result<RunState> Store::LoadRunLocked(const std::string& run_id) {
  // One read transaction: a consistent snapshot even if another process writes.
  Transaction txn(db_.get(), path_);
  FRUGAL_RETURN_IF_ERROR(txn.Begin(/*write=*/false));
  RunState s;
  s.run_id = run_id;
  int64_t dim = 0;
  {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st,
        Statement::Prepare(db_.get(), path_,
                           "SELECT config_text, dim, last_round, version, engine_state, "
                           "engine_state_crc, shape, shape_crc, defense_state, defense_state_crc "
                           "FROM runs WHERE run_id = ?"));
    st.Bind(1, run_id);
    FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return NotFoundError("store " + path_ + ": no run '" + run_id + "'");
    s.config_text = st.Text(0);
    dim = st.Int(1);
    s.last_round = st.U32(2);
    s.version = st.U32(3);
    s.engine_state = st.Blob(4);
    if (Crc(s.engine_state) != st.U32(5)) {
      return DataLossError("store " + path_ + ": run '" + run_id +
                           "': engine state fails its checksum");
    }
    s.shape = st.Blob(6);
    if (Crc(s.shape) != st.U32(7)) {
      return DataLossError("store " + path_ + ": run '" + run_id + "': model shape ([prune]) fails its checksum");
    }
    s.defense_state = st.Blob(8);
    if (Crc(s.defense_state) != st.U32(9)) {
      return DataLossError("store " + path_ + ": run '" + run_id + "': the trigger scan's memory fails its checksum");
    }
  }
  {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st,
        Statement::Prepare(db_.get(), path_,
                           "SELECT version, model_crc, step, step_crc, length(model) "
                           "FROM model_versions WHERE run_id = ? ORDER BY version"));
    st.Bind(1, run_id);
    for (;;) {
      FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      const uint32_t v = st.U32(0);
      // A version from before a prune step ([prune]) has more parameters than the run's dimension now.
      if (st.Int(4) < dim * 4 || st.Int(4) % 4 != 0) {
        return DataLossError("store " + path_ + ": run '" + run_id + "' model version " +
                             std::to_string(v) + " holds " + std::to_string(st.Int(4)) +
                             " bytes, expected " + std::to_string(dim * 4));
      }
      s.retained_versions.push_back(v);
      if (!st.IsNull(2)) {
        std::vector<uint8_t> step = st.Blob(2);
        if (Crc(step) != st.U32(3)) {
          return DataLossError("store " + path_ + ": run '" + run_id + "' step of version " +
                               std::to_string(v) + " fails its checksum");
        }
        s.steps.emplace(v, std::move(step));
      }
    }
  }
  if (s.retained_versions.empty() || s.retained_versions.back() != s.version) {
    return DataLossError("store " + path_ + ": run '" + run_id + "' current model version " +
                         std::to_string(s.version) + " is missing");
  }
  {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st,
        Statement::Prepare(db_.get(), path_,
                           "SELECT model, model_crc FROM model_versions "
                           "WHERE run_id = ? AND version = ?"));
    st.Bind(1, run_id).Bind(2, s.version);
    FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return InternalError("store " + path_ + ": model version vanished mid-read");
    std::vector<uint8_t> bytes = st.Blob(0);
    if (Crc(bytes) != st.U32(1)) {
      return DataLossError("store " + path_ + ": run '" + run_id + "' model version " +
                           std::to_string(s.version) + " fails its checksum");
    }
    s.model = DecodeFloats(bytes);
  }
  if (s.last_round > 0) {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st,
        Statement::Prepare(db_.get(), path_,
                           "SELECT accuracy FROM rounds WHERE run_id = ? AND round = ?"));
    st.Bind(1, run_id).Bind(2, s.last_round);
    FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) {
      return DataLossError("store " + path_ + ": run '" + run_id + "' last round " +
                           std::to_string(s.last_round) + " is missing");
    }
    s.last_accuracy = st.Double(0);
  }
  {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st, Statement::Prepare(db_.get(), path_,
                                         "SELECT client_id, held_version FROM clients "
                                         "WHERE run_id = ?"));
    st.Bind(1, run_id);
    for (;;) {
      FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      s.client_versions[st.U64(0)] = st.U32(1);
    }
  }
  FRUGAL_RETURN_IF_ERROR(txn.Commit());
  return s;
}

Status Store::CommitRound(const RoundCommit& c) {
  // Checks that need no database come first, outside the lock.
  const std::string where = "store " + path_ + ": run '" + c.run_id + "' round " +
                            std::to_string(c.round);
  if (c.round == 0) return InvalidArgumentError(where + ": rounds start at 1");
  if (!(c.protocol_client_cpu_s >= 0) || !std::isfinite(c.protocol_client_cpu_s) || !(c.protocol_server_cpu_s >= 0) ||
      !std::isfinite(c.protocol_server_cpu_s)) {
    return InvalidArgumentError(where + ": protocol CPU seconds must be finite and >= 0");
  }
  if (c.applied) {
    for (size_t i = 0; i < c.model.size(); ++i) {
      if (!std::isfinite(c.model[i])) {
        return InvalidArgumentError(where + ": model parameter " + std::to_string(i) +
                                    " is not finite");
      }
    }
  } else if (!c.model.empty() || !c.step_payload.empty()) {
    return InvalidArgumentError(where + ": a round that was not applied carries no model or step");
  }
  for (size_t i = 0; i < c.pruned_model.size(); ++i) {
    if (!std::isfinite(c.pruned_model[i])) {
      return InvalidArgumentError(where + ": pruned model parameter " + std::to_string(i) + " is not finite");
    }
  }
  if (c.pruned_model.empty() && (!c.pruned_step.empty() || !c.pruned_shape.empty())) {
    return InvalidArgumentError(where + ": a prune step without its pruned model");
  }
  if (!c.pruned_model.empty() && c.pruned_shape.empty()) {
    return InvalidArgumentError(where + ": a prune step without the model's shape after it");
  }
  for (const LedgerRow& r : c.ledger_rows) {
    if (r.round != c.round || (!r.run_id.empty() && r.run_id != c.run_id)) {
      return InvalidArgumentError(where + ": ledger row for client " + std::to_string(r.client_id) +
                                  " belongs to run '" + r.run_id + "' round " +
                                  std::to_string(r.round));
    }
  }
  for (const auto& [client, held] : c.client_versions) {
    if (held > c.new_version) {
      return InvalidArgumentError(where + ": client " + std::to_string(client) + " cannot hold version " +
                                  std::to_string(held) + " after version " +
                                  std::to_string(c.new_version));
    }
  }
  std::lock_guard lock(mu_);
  return CommitRoundLocked(c);
}

Status Store::CommitRoundLocked(const RoundCommit& c) {
  const std::string where = "store " + path_ + ": run '" + c.run_id + "' round " +
                            std::to_string(c.round);
  Transaction txn(db_.get(), path_);
  FRUGAL_RETURN_IF_ERROR(txn.Begin(/*write=*/true));
  int64_t dim = 0;
  uint32_t last_round = 0, version = 0;
  {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st, Statement::Prepare(db_.get(), path_,
                                         "SELECT dim, last_round, version FROM runs WHERE run_id = ?"));
    st.Bind(1, c.run_id);
    FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return NotFoundError("store " + path_ + ": no run '" + c.run_id + "'");
    dim = st.Int(0);
    last_round = st.U32(1);
    version = st.U32(2);
  }
  if (c.round != last_round + 1) {
    return FailedPreconditionError(where + " cannot commit: the last committed round is " +
                                   std::to_string(last_round) + ", so the next must be " +
                                   std::to_string(last_round + 1));
  }
  const uint32_t expected_version = c.applied ? version + 1 : version;
  if (c.new_version != expected_version) {
    return FailedPreconditionError(where + ": new_version " + std::to_string(c.new_version) +
                                   " does not follow current version " + std::to_string(version) +
                                   (c.applied ? " (applied: expected +1)" : " (not applied: unchanged)"));
  }
  if (c.applied && static_cast<int64_t>(c.model.size()) != dim) {
    return InvalidArgumentError(where + ": model has " + std::to_string(c.model.size()) +
                                " parameters, the run has " + std::to_string(dim));
  }
  {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st,
        Statement::Prepare(
            db_.get(), path_,
            "INSERT INTO rounds (run_id, round, new_version, applied, accuracy, loss, bytes_up, "
            "bytes_down, joules_compute, joules_radio, gco2e, server_joules, server_gco2e, "
            "selected, completed, stragglers, virtual_seconds, wall_seconds, utc_hour, "
            "robust_clipped, robust_downweighted, robust_rejected, dp_epsilon, dp_delta, "
            "protocol_bytes_up, protocol_bytes_down, protocol_client_cpu_s, protocol_server_cpu_s, secure_failed, "
            "trigger_scanned, trigger_flagged, trigger_anomaly, trigger_known, trigger_unlearnt, trigger_pruned) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?, ?, ?, ?)"));
    st.Bind(1, c.run_id).Bind(2, c.round).Bind(3, c.new_version).Bind(4, c.applied);
    st.Bind(5, c.accuracy).Bind(6, c.loss).Bind(7, c.bytes_up).Bind(8, c.bytes_down);
    st.Bind(9, c.joules_compute).Bind(10, c.joules_radio).Bind(11, c.gco2e);
    st.Bind(12, c.server_joules).Bind(13, c.server_gco2e);
    st.Bind(14, c.selected).Bind(15, c.completed).Bind(16, c.stragglers);
    st.Bind(17, c.virtual_seconds).Bind(18, c.wall_seconds).Bind(19, c.utc_hour);
    st.Bind(20, c.robust_clipped).Bind(21, c.robust_downweighted).Bind(22, c.robust_rejected);
    if (c.dp_epsilon >= 0) {
      st.Bind(23, c.dp_epsilon).Bind(24, c.dp_delta);
    } else {
      st.BindNull(23).BindNull(24);
    }
    st.Bind(25, c.protocol_bytes_up).Bind(26, c.protocol_bytes_down);
    st.Bind(27, c.protocol_client_cpu_s).Bind(28, c.protocol_server_cpu_s).Bind(29, c.secure_failed);
    st.Bind(30, c.trigger.scanned).Bind(31, static_cast<int64_t>(c.trigger.flagged)).Bind(32, c.trigger.anomaly);
    st.Bind(33, c.trigger.known).Bind(34, c.trigger.unlearnt).Bind(35, c.trigger.pruned);
    FRUGAL_RETURN_IF_ERROR(st.Run());
  }
  // One model_versions row: the version's weights and the step (chain payload) that made it.
  auto insert_version = [&](uint32_t row_version, const std::vector<float>& weights,
                            const std::vector<uint8_t>& step) -> Status {
    const std::vector<uint8_t> model = EncodeFloats(weights);
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st, Statement::Prepare(db_.get(), path_,
                                         "INSERT INTO model_versions (run_id, version, round, "
                                         "model, model_crc, step, step_crc) "
                                         "VALUES (?, ?, ?, ?, ?, ?, ?)"));
    st.Bind(1, c.run_id).Bind(2, row_version).Bind(3, c.round);
    st.BindBlob(4, model).Bind(5, static_cast<int64_t>(Crc(model)));
    if (step.empty()) {
      st.BindNull(6).BindNull(7);
    } else {
      st.BindBlob(6, step).Bind(7, static_cast<int64_t>(Crc(step)));
    }
    return st.Run();
  };
  if (c.applied) FRUGAL_RETURN_IF_ERROR(insert_version(c.new_version, c.model, c.step_payload));
  const bool pruned = !c.pruned_model.empty();
  const uint32_t final_version = pruned ? c.new_version + 1 : c.new_version;
  if (pruned) {
    FRUGAL_RETURN_IF_ERROR(insert_version(final_version, c.pruned_model, c.pruned_step));
    dim = static_cast<int64_t>(c.pruned_model.size());
  }
  {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st, Statement::Prepare(db_.get(), path_,
                                         "UPDATE runs SET last_round = ?, version = ?, engine_state = ?, engine_state_crc = ?, "
                                         "dim = ?, defense_state = ?, defense_state_crc = ? WHERE run_id = ?"));
    st.Bind(1, c.round).Bind(2, final_version).BindBlob(3, c.engine_state);
    st.Bind(4, static_cast<int64_t>(Crc(c.engine_state))).Bind(5, dim);
    st.BindBlob(6, c.defense_state).Bind(7, static_cast<int64_t>(Crc(c.defense_state))).Bind(8, c.run_id);
    FRUGAL_RETURN_IF_ERROR(st.Run());
  }
  if (pruned) {
    FRUGAL_ASSIGN_OR_RETURN(Statement st, Statement::Prepare(db_.get(), path_,
                                                             "UPDATE runs SET shape = ?, shape_crc = ? WHERE run_id = ?"));
    st.BindBlob(1, c.pruned_shape).Bind(2, static_cast<int64_t>(Crc(c.pruned_shape))).Bind(3, c.run_id);
    FRUGAL_RETURN_IF_ERROR(st.Run());
  }
  if (!c.client_versions.empty()) {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st, Statement::Prepare(db_.get(), path_,
                                         "INSERT INTO clients (run_id, client_id, held_version) "
                                         "VALUES (?, ?, ?) ON CONFLICT (run_id, client_id) "
                                         "DO UPDATE SET held_version = excluded.held_version"));
    for (const auto& [client, held] : c.client_versions) {
      st.Bind(1, c.run_id).Bind(2, client).Bind(3, held);
      FRUGAL_RETURN_IF_ERROR(st.Run());
      FRUGAL_RETURN_IF_ERROR(st.Reset());
    }
  }
  FRUGAL_RETURN_IF_ERROR(InsertLedgerRows(c.run_id, c.ledger_rows));
  if ((c.applied || pruned) && final_version > options_.keep_versions) {
    FRUGAL_ASSIGN_OR_RETURN(
        Statement st, Statement::Prepare(db_.get(), path_,
                                         "DELETE FROM model_versions WHERE run_id = ? AND version <= ?"));
    st.Bind(1, c.run_id).Bind(2, final_version - options_.keep_versions);
    FRUGAL_RETURN_IF_ERROR(st.Run());
  }
  return txn.Commit();
}

Status Store::InsertLedgerRows(const std::string& run_id, const std::vector<LedgerRow>& rows) {
  if (rows.empty()) return OkStatus();
  FRUGAL_ASSIGN_OR_RETURN(
      Statement st,
      Statement::Prepare(db_.get(), path_,
                         "INSERT INTO ledger (run_id, round, client_id, device, radio, region, "
                         "bytes_up, bytes_down, flops, compute_j, radio_j, total_j, gco2e, "
                         "source, outcome, robust) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  for (const LedgerRow& r : rows) {
    st.Bind(1, run_id).Bind(2, r.round).Bind(3, r.client_id).Bind(4, r.device);
    st.Bind(5, r.radio).Bind(6, r.region).Bind(7, r.bytes_up).Bind(8, r.bytes_down);
    st.Bind(9, r.flops).Bind(10, r.compute_j).Bind(11, r.radio_j).Bind(12, r.total_j);
    st.Bind(13, r.gco2e).Bind(14, EnergySourceName(r.source)).Bind(15, ClientOutcomeName(r.outcome));
    st.Bind(16, r.robust);
    FRUGAL_RETURN_IF_ERROR(st.Run());
    FRUGAL_RETURN_IF_ERROR(st.Reset());
  }
  return OkStatus();
}

Status Store::AddLedgerRows(const std::string& run_id, const std::vector<LedgerRow>& rows) {
  const std::string where = "store " + path_ + ": run '" + run_id + "'";
  for (const LedgerRow& r : rows) {
    if (r.round == 0 || (!r.run_id.empty() && r.run_id != run_id)) {
      return InvalidArgumentError(where + ": ledger row for client " + std::to_string(r.client_id) +
                                  " belongs to run '" + r.run_id + "' round " + std::to_string(r.round));
    }
  }
  std::lock_guard lock(mu_);
  Transaction txn(db_.get(), path_);
  FRUGAL_RETURN_IF_ERROR(txn.Begin(/*write=*/true));
  FRUGAL_ASSIGN_OR_RETURN(Statement st,
                          Statement::Prepare(db_.get(), path_, "SELECT last_round FROM runs WHERE run_id = ?"));
  st.Bind(1, run_id);
  FRUGAL_ASSIGN_OR_RETURN(bool found, st.Step());
  if (!found) return NotFoundError(where + ": no such run");
  const uint32_t last_round = st.U32(0);
  for (const LedgerRow& r : rows) {
    if (r.round > last_round) {
      return FailedPreconditionError(where + ": ledger row for client " + std::to_string(r.client_id) +
                                     " is for round " + std::to_string(r.round) + ", but the last committed round is " +
                                     std::to_string(last_round));
    }
  }
  FRUGAL_RETURN_IF_ERROR(InsertLedgerRows(run_id, rows));
  return txn.Commit();
}

Result<std::optional<std::vector<float>>> Store::ModelAt(const std::string& run_id,
                                                         uint32_t version) {
  std::lock_guard lock(mu_);
  Transaction txn(db_.get(), path_);
  FRUGAL_RETURN_IF_ERROR(txn.Begin(/*write=*/false));
  FRUGAL_ASSIGN_OR_RETURN(int64_t dim, RunDim(run_id));
  FRUGAL_ASSIGN_OR_RETURN(
      Statement st, Statement::Prepare(db_.get(), path_,
                                       "SELECT model, model_crc FROM model_versions "
                                       "WHERE run_id = ? AND version = ?"));
  st.Bind(1, run_id).Bind(2, version);
  FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<std::vector<float>>();
  std::vector<uint8_t> bytes = st.Blob(0);
  // A version from before a prune step ([prune]) has more parameters than the run's dimension now.
  if (bytes.empty() || bytes.size() % 4 != 0 || static_cast<int64_t>(bytes.size()) < dim * 4 ||
      Crc(bytes) != st.U32(1)) {
    return DataLossError("store " + path_ + ": run '" + run_id + "' model version " +
                         std::to_string(version) + " fails its checksum or size check");
  }
  return std::optional<std::vector<float>>(DecodeFloats(bytes));
}

Result<std::vector<RoundRow>> Store::Rounds(const std::string& run_id) {
  std::lock_guard lock(mu_);
  Transaction txn(db_.get(), path_);
  FRUGAL_RETURN_IF_ERROR(txn.Begin(/*write=*/false));
  FRUGAL_RETURN_IF_ERROR(RunDim(run_id).status());
  FRUGAL_ASSIGN_OR_RETURN(
      Statement st,
      Statement::Prepare(db_.get(), path_,
                         "SELECT round, new_version, applied, accuracy, loss, bytes_up, bytes_down, "
                         "joules_compute, joules_radio, gco2e, server_joules, server_gco2e, "
                         "selected, completed, stragglers, virtual_seconds, wall_seconds, utc_hour, "
                         "robust_clipped, robust_downweighted, robust_rejected, dp_epsilon, dp_delta, "
                         "protocol_bytes_up, protocol_bytes_down, protocol_client_cpu_s, protocol_server_cpu_s, "
                         "secure_failed, trigger_scanned, trigger_flagged, trigger_anomaly, trigger_known, trigger_unlearnt, "
                         "trigger_pruned FROM rounds WHERE run_id = ? ORDER BY round"));
  st.Bind(1, run_id);
  std::vector<RoundRow> rows;
  for (;;) {
    FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    RoundRow r;
    r.round = st.U32(0);
    r.new_version = st.U32(1);
    r.applied = st.Int(2) != 0;
    r.accuracy = st.Double(3);
    r.loss = st.Double(4);
    r.bytes_up = st.U64(5);
    r.bytes_down = st.U64(6);
    r.joules_compute = st.Double(7);
    r.joules_radio = st.Double(8);
    r.gco2e = st.Double(9);
    r.server_joules = st.Double(10);
    r.server_gco2e = st.Double(11);
    r.selected = st.U32(12);
    r.completed = st.U32(13);
    r.stragglers = st.U32(14);
    r.virtual_seconds = st.Double(15);
    r.wall_seconds = st.Double(16);
    r.utc_hour = st.Double(17);
    r.robust_clipped = st.U32(18);
    r.robust_downweighted = st.U32(19);
    r.robust_rejected = st.U32(20);
    r.dp_epsilon = st.IsNull(21) ? -1 : st.Double(21);
    r.dp_delta = st.IsNull(22) ? -1 : st.Double(22);
    r.protocol_bytes_up = st.U64(23);
    r.protocol_bytes_down = st.U64(24);
    r.protocol_client_cpu_s = st.Double(25);
    r.protocol_server_cpu_s = st.Double(26);
    r.secure_failed = st.Int(27) != 0;
    r.trigger.scanned = st.U32(28);
    r.trigger.flagged = static_cast<int32_t>(st.Int(29));
    r.trigger.anomaly = st.Double(30);
    r.trigger.known = st.U32(31);
    r.trigger.unlearnt = st.U32(32);
    r.trigger.pruned = st.U32(33);
    rows.push_back(r);
  }
  FRUGAL_RETURN_IF_ERROR(txn.Commit());
  return rows;
}

Result<std::vector<LedgerRow>> Store::Ledger(const std::string& run_id) {
  std::lock_guard lock(mu_);
  Transaction txn(db_.get(), path_);
  FRUGAL_RETURN_IF_ERROR(txn.Begin(/*write=*/false));
  FRUGAL_RETURN_IF_ERROR(RunDim(run_id).status());
  FRUGAL_ASSIGN_OR_RETURN(
      Statement st,
      Statement::Prepare(db_.get(), path_,
                         "SELECT round, client_id, device, radio, region, bytes_up, bytes_down, "
                         "flops, compute_j, radio_j, total_j, gco2e, source, outcome, robust "
                         "FROM ledger WHERE run_id = ? ORDER BY round, id"));
  st.Bind(1, run_id);
  std::vector<LedgerRow> rows;
  for (;;) {
    FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    LedgerRow r;
    r.run_id = run_id;
    r.round = st.U32(0);
    r.client_id = st.U64(1);
    r.device = st.Text(2);
    r.radio = st.Text(3);
    r.region = st.Text(4);
    r.bytes_up = st.U64(5);
    r.bytes_down = st.U64(6);
    r.flops = st.Double(7);
    r.compute_j = st.Double(8);
    r.radio_j = st.Double(9);
    r.total_j = st.Double(10);
    r.gco2e = st.Double(11);
    std::optional<EnergySource> source = ParseSource(st.Text(12));
    std::optional<ClientOutcome> outcome = ParseOutcome(st.Text(13));
    if (!source || !outcome) {
      return DataLossError("store " + path_ + ": run '" + run_id + "' ledger row for client " +
                           std::to_string(r.client_id) + " has source '" + st.Text(12) +
                           "' / outcome '" + st.Text(13) + "'");
    }
    r.source = *source;
    r.outcome = *outcome;
    r.robust = st.Text(14);
    rows.push_back(std::move(r));
  }
  FRUGAL_RETURN_IF_ERROR(txn.Commit());
  return rows;
}

Result<std::vector<ClientRow>> Store::Clients(const std::string& run_id) {
  std::lock_guard lock(mu_);
  Transaction txn(db_.get(), path_);
  FRUGAL_RETURN_IF_ERROR(txn.Begin(/*write=*/false));
  FRUGAL_RETURN_IF_ERROR(RunDim(run_id).status());
  FRUGAL_ASSIGN_OR_RETURN(
      Statement st, Statement::Prepare(db_.get(), path_,
                                       "SELECT client_id, name, device, radio, region, held_version "
                                       "FROM clients WHERE run_id = ?"));
  st.Bind(1, run_id);
  std::vector<ClientRow> rows;
  for (;;) {
    FRUGAL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    rows.push_back(ClientRow{.client_id = st.U64(0),
                             .name = st.Text(1),
                             .device = st.Text(2),
                             .radio = st.Text(3),
                             .region = st.Text(4),
                             .held_version = st.U32(5)});
  }
  FRUGAL_RETURN_IF_ERROR(txn.Commit());
  // SQLite orders the ids as signed 64-bit integers; callers expect unsigned order.
  std::sort(rows.begin(), rows.end(),
            [](const ClientRow& a, const ClientRow& b) { return a.client_id < b.client_id; });
  return rows;
}

Status Store::UpsertClient(const std::string& run_id, uint64_t client_id, const std::string& name,
                           const std::string& device, const std::string& radio,
                           const std::string& region) {
  std::lock_guard lock(mu_);
  Transaction txn(db_.get(), path_);
  FRUGAL_RETURN_IF_ERROR(txn.Begin(/*write=*/true));
  FRUGAL_RETURN_IF_ERROR(RunDim(run_id).status());
  FRUGAL_ASSIGN_OR_RETURN(
      Statement st,
      Statement::Prepare(db_.get(), path_,
                         "INSERT INTO clients (run_id, client_id, name, device, radio, region) "
                         "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, client_id) DO UPDATE SET "
                         "name = excluded.name, device = excluded.device, "
                         "radio = excluded.radio, region = excluded.region"));
  st.Bind(1, run_id).Bind(2, client_id).Bind(3, name).Bind(4, device).Bind(5, radio).Bind(6, region);
  FRUGAL_RETURN_IF_ERROR(st.Run());
  return txn.Commit();
}

}  // namespace frugal::coordinator
