// Tests of the coordinator's SQLite store: round trips, refusal of stale or
// malformed commits, pruning, refusal of corrupt or foreign files, and real
// kill -9 crash safety (a forked writer is SIGKILLed at random moments).
#include <doctest/doctest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "frugal/coordinator/store.h"
#include "frugal/core/random.h"

namespace frugal::coordinator {
namespace {

namespace fs = std::filesystem;

// A scratch directory removed with its files on scope exit.
class ScratchDir {
 public:
  ScratchDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("frugal_store_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string Path(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::unique_ptr<Store> MustOpen(const std::string& path, StoreOptions options = {}) {
  auto store = Store::Open(path, options);
  REQUIRE_MESSAGE(store.ok(), store.error().ToString());
  return std::move(store).value();
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

// The model of `version` in synthetic runs: a pure function of the version so
// a reopened store can be checked without remembering what was written.
std::vector<float> ModelFor(uint32_t version, size_t dim) {
  std::vector<float> m(dim);
  Rng rng(DeriveSeed(42, version));
  for (float& x : m) x = static_cast<float>(rng.Normal());
  return m;
}

std::vector<uint8_t> BytesFor(uint32_t tag, size_t n) {
  std::vector<uint8_t> b(n);
  Rng rng(DeriveSeed(7, tag));
  for (uint8_t& x : b) x = static_cast<uint8_t>(rng.NextU64());
  return b;
}

constexpr size_t kLedgerRowsPerRound = 3;

// An applied round `round` producing version round + 1, every field derived from `round`.
RoundCommit CommitFor(const std::string& run_id, uint32_t round, size_t dim) {
  RoundCommit c;
  c.run_id = run_id;
  c.round = round;
  c.new_version = round + 1;
  c.applied = true;
  c.model = ModelFor(c.new_version, dim);
  c.step_payload = BytesFor(round, 100 + round % 17);
  c.engine_state = BytesFor(1000 + round, 64);
  c.accuracy = 0.5 + round * 0.001;
  c.loss = 2.0 / round;
  c.bytes_up = 1000 * round;
  c.bytes_down = 3000 * round + 1;
  c.joules_compute = 0.25 * round;
  c.joules_radio = 0.125 * round;
  c.gco2e = 1e-4 * round;
  c.server_joules = 3.5;
  c.server_gco2e = 2e-4;
  c.selected = 12;
  c.completed = 10;
  c.stragglers = 2;
  c.virtual_seconds = 60.0 * round;
  c.utc_hour = 0.5 * round;
  c.wall_seconds = 0.75;
  for (uint64_t k = 0; k < kLedgerRowsPerRound; ++k) {
    LedgerRow r;
    r.round = round;
    r.client_id = (round * 7 + k) % 20;
    r.device = "pixel6";
    r.radio = k % 2 ? "lte" : "wifi";
    r.region = "DE";
    r.bytes_up = 100 + k;
    r.bytes_down = 300 + round;
    r.flops = 1e9 * (k + 1);
    r.compute_j = 0.5 * (k + 1);
    r.radio_j = 0.2;
    r.total_j = r.compute_j + r.radio_j;
    r.gco2e = 1e-5;
    r.outcome = k == 2 ? ClientOutcome::kStraggled : ClientOutcome::kParticipated;
    c.ledger_rows.push_back(r);
    c.client_versions.emplace_back(r.client_id, c.new_version);
  }
  return c;
}

// Everything the store says about a run, to compare before and after a refused write.
struct Snapshot {
  RunState state;
  std::vector<RoundRow> rounds;
  std::vector<LedgerRow> ledger;
  std::vector<ClientRow> clients;
};

Snapshot Take(Store& store, const std::string& run_id) {
  Snapshot s;
  auto state = store.LoadRun(run_id);
  REQUIRE_MESSAGE(state.ok(), state.error().ToString());
  REQUIRE(state->has_value());
  s.state = **state;
  auto rounds = store.Rounds(run_id);
  REQUIRE(rounds.ok());
  s.rounds = *rounds;
  auto ledger = store.Ledger(run_id);
  REQUIRE(ledger.ok());
  s.ledger = *ledger;
  auto clients = store.Clients(run_id);
  REQUIRE(clients.ok());
  s.clients = *clients;
  return s;
}

void CheckSameRound(const RoundRow& a, const RoundRow& b) {
  CHECK(a.round == b.round);
  CHECK(a.new_version == b.new_version);
  CHECK(a.applied == b.applied);
  CHECK(a.bytes_up == b.bytes_up);
  CHECK(a.wall_seconds == b.wall_seconds);
}

void CheckSameSnapshot(const Snapshot& a, const Snapshot& b) {
  CHECK(a.state.last_round == b.state.last_round);
  CHECK(a.state.version == b.state.version);
  CHECK(BitEqual(a.state.model, b.state.model));
  CHECK(a.state.engine_state == b.state.engine_state);
  CHECK(a.state.steps == b.state.steps);
  CHECK(a.state.retained_versions == b.state.retained_versions);
  CHECK(a.state.client_versions == b.state.client_versions);
  REQUIRE(a.rounds.size() == b.rounds.size());
  for (size_t i = 0; i < a.rounds.size(); ++i) CheckSameRound(a.rounds[i], b.rounds[i]);
  CHECK(a.ledger.size() == b.ledger.size());
  CHECK(a.clients.size() == b.clients.size());
}

// Checks a store holding rounds 1..n of CommitFor(), all applied.
void CheckCommittedPrefix(Store& store, const std::string& run_id, uint32_t n, size_t dim,
                          uint32_t keep) {
  auto state = store.LoadRun(run_id);
  REQUIRE_MESSAGE(state.ok(), state.error().ToString());
  REQUIRE(state->has_value());
  const RunState& s = **state;
  REQUIRE(s.last_round == n);
  CHECK(s.version == n + 1);
  CHECK(BitEqual(s.model, ModelFor(n + 1, dim)));
  if (n > 0) {
    CHECK(s.engine_state == BytesFor(1000 + n, 64));
    CHECK(s.last_accuracy == CommitFor(run_id, n, 1).accuracy);
  }
  const uint32_t oldest = n + 1 > keep ? n + 2 - keep : 1;
  std::vector<uint32_t> expected_versions;
  for (uint32_t v = oldest; v <= n + 1; ++v) expected_versions.push_back(v);
  CHECK(s.retained_versions == expected_versions);
  for (const auto& [v, step] : s.steps) CHECK(step == BytesFor(v - 1, 100 + (v - 1) % 17));

  auto rounds = store.Rounds(run_id);
  REQUIRE(rounds.ok());
  REQUIRE(rounds->size() == n);
  for (uint32_t i = 0; i < n; ++i) {
    CHECK((*rounds)[i].round == i + 1);  // each round exactly once, in order
    CHECK((*rounds)[i].new_version == i + 2);
    CHECK((*rounds)[i].bytes_down == CommitFor(run_id, i + 1, 1).bytes_down);
  }
  auto ledger = store.Ledger(run_id);
  REQUIRE(ledger.ok());
  REQUIRE(ledger->size() == n * kLedgerRowsPerRound);
  for (size_t i = 0; i < ledger->size(); ++i) {
    const uint32_t round = static_cast<uint32_t>(i / kLedgerRowsPerRound) + 1;
    CHECK((*ledger)[i].round == round);
    CHECK((*ledger)[i].client_id == CommitFor(run_id, round, 1).ledger_rows[i % kLedgerRowsPerRound].client_id);
  }
}

TEST_SUITE("coordinator") {

TEST_CASE("A run created, committed and reopened returns every field, the model bit-exact") {
  ScratchDir dir;
  const std::string path = dir.Path("state.db");
  std::vector<float> initial = {0.0f, -0.0f, 1.5f, std::numeric_limits<float>::denorm_min(),
                                std::numeric_limits<float>::max(), -std::numeric_limits<float>::min(),
                                3.14159265f, -1e-30f};
  RoundCommit c1;
  c1.run_id = "run-a";
  c1.round = 1;
  c1.new_version = 2;
  c1.applied = true;
  c1.model = {1.0f, -0.0f, 2.5f, std::numeric_limits<float>::denorm_min(), -7.0f, 1e30f, 0.1f, 0.2f};
  c1.step_payload = {1, 2, 3, 0, 255};
  c1.engine_state = {9, 8, 7};
  c1.accuracy = 0.8125;
  c1.loss = 0.4375;
  c1.bytes_up = 123456789012ull;
  c1.bytes_down = 42;
  c1.joules_compute = 1.25;
  c1.joules_radio = 2.5;
  c1.gco2e = 0.001;
  c1.server_joules = 7.5;
  c1.server_gco2e = 0.002;
  c1.selected = 12;
  c1.completed = 10;
  c1.stragglers = 2;
  c1.virtual_seconds = 600.5;
  c1.utc_hour = 23.75;
  c1.robust_clipped = 3;
  c1.robust_downweighted = 1;
  c1.robust_rejected = 2;
  c1.dp_epsilon = 1.25;
  c1.dp_delta = 1e-5;
  c1.protocol_bytes_up = 5000000123ull;
  c1.protocol_bytes_down = 77;
  c1.protocol_client_cpu_s = 0.375;
  c1.protocol_server_cpu_s = 1.0625;
  c1.secure_failed = true;
  c1.trigger = {.scanned = 1, .flagged = 3, .anomaly = 4.25, .known = 2, .unlearnt = 1, .pruned = 9};
  c1.defense_state = {0x54, 0x52, 0x47, 0x31, 0, 7};  // opaque to the store (TriggerDefense::State in a service)
  c1.wall_seconds = 1.75;
  c1.client_versions = {{5, 2}, {0xFFFFFFFFFFFFFFF0ull, 1}};
  LedgerRow row;
  row.round = 1;
  row.client_id = 0xFFFFFFFFFFFFFFF0ull;
  row.device = "raspberry-pi-4";
  row.radio = "lte";
  row.region = "FR";
  row.bytes_up = 2048;
  row.bytes_down = 4096;
  row.flops = 3.5e9;
  row.compute_j = 0.75;
  row.radio_j = 0.5;
  row.total_j = 1.25;
  row.gco2e = 5e-5;
  row.source = EnergySource::kMeasured;
  row.outcome = ClientOutcome::kStraggled;
  row.robust = "rejected: multi-krum score 12.5, 2 updates ranked better";
  c1.ledger_rows = {row};

  RoundCommit c2;  // a round that missed its quorum: model unchanged, NaN accuracy
  c2.run_id = "run-a";
  c2.round = 2;
  c2.new_version = 2;
  c2.applied = false;
  c2.engine_state = {};
  c2.accuracy = std::numeric_limits<double>::quiet_NaN();
  c2.loss = std::numeric_limits<double>::infinity();
  c2.selected = 12;
  c2.client_versions = {{5, 2}};
  c2.defense_state = {1, 2, 3};  // the latest round's memory is the run's
  {
    auto store = MustOpen(path);
    REQUIRE(store->CreateRun("run-a", "rounds = 3\n", initial).ok());
    REQUIRE(store->UpsertClient("run-a", 5, "phone-5", "pixel6", "wifi", "DE").ok());
    REQUIRE(store->UpsertClient("run-a", 5, "phone-5b", "pixel7", "5g", "SE").ok());
    auto before = store->LoadRun("run-a");
    REQUIRE(before.ok());
    REQUIRE(before->has_value());
    CHECK((*before)->last_round == 0);
    CHECK((*before)->version == 1);
    CHECK(!(*before)->last_accuracy.has_value());
    CHECK(BitEqual((*before)->model, initial));
    const Status s1 = store->CommitRound(c1);
    REQUIRE_MESSAGE(s1.ok(), s1.ToString());
    const Status s2 = store->CommitRound(c2);
    REQUIRE_MESSAGE(s2.ok(), s2.ToString());
  }
  auto store = MustOpen(path);
  auto loaded = store->LoadRun("run-a");
  REQUIRE_MESSAGE(loaded.ok(), loaded.error().ToString());
  REQUIRE(loaded->has_value());
  const RunState& s = **loaded;
  CHECK(s.run_id == "run-a");
  CHECK(s.config_text == "rounds = 3\n");
  CHECK(s.last_round == 2);
  CHECK(s.version == 2);
  CHECK(BitEqual(s.model, c1.model));
  CHECK(s.engine_state.empty());
  CHECK(s.defense_state == c2.defense_state);
  REQUIRE(s.last_accuracy.has_value());
  CHECK(std::isnan(*s.last_accuracy));
  CHECK(s.retained_versions == std::vector<uint32_t>{1, 2});
  REQUIRE(s.steps.size() == 1);
  CHECK(s.steps.at(2) == c1.step_payload);
  CHECK(s.client_versions == std::map<uint64_t, uint32_t>{{5, 2}, {0xFFFFFFFFFFFFFFF0ull, 1}});

  auto v1 = store->ModelAt("run-a", 1);
  REQUIRE(v1.ok());
  REQUIRE(v1->has_value());
  CHECK(BitEqual(**v1, initial));
  auto v9 = store->ModelAt("run-a", 9);
  REQUIRE(v9.ok());
  CHECK(!v9->has_value());

  auto rounds = store->Rounds("run-a");
  REQUIRE(rounds.ok());
  REQUIRE(rounds->size() == 2);
  const RoundRow& r1 = (*rounds)[0];
  CHECK(r1.round == 1);
  CHECK(r1.new_version == 2);
  CHECK(r1.applied);
  CHECK(r1.accuracy == c1.accuracy);
  CHECK(r1.loss == c1.loss);
  CHECK(r1.bytes_up == c1.bytes_up);
  CHECK(r1.bytes_down == c1.bytes_down);
  CHECK(r1.joules_compute == c1.joules_compute);
  CHECK(r1.joules_radio == c1.joules_radio);
  CHECK(r1.gco2e == c1.gco2e);
  CHECK(r1.server_joules == c1.server_joules);
  CHECK(r1.server_gco2e == c1.server_gco2e);
  CHECK(r1.selected == c1.selected);
  CHECK(r1.completed == c1.completed);
  CHECK(r1.stragglers == c1.stragglers);
  CHECK(r1.virtual_seconds == c1.virtual_seconds);
  CHECK(r1.utc_hour == c1.utc_hour);
  CHECK(r1.robust_clipped == 3);
  CHECK(r1.robust_downweighted == 1);
  CHECK(r1.robust_rejected == 2);
  CHECK(r1.dp_epsilon == 1.25);
  CHECK(r1.dp_delta == 1e-5);
  CHECK(r1.protocol_bytes_up == 5000000123ull);
  CHECK(r1.protocol_bytes_down == 77);
  CHECK(r1.protocol_client_cpu_s == 0.375);
  CHECK(r1.protocol_server_cpu_s == 1.0625);
  CHECK(r1.secure_failed);
  CHECK(r1.trigger.scanned == 1);
  CHECK(r1.trigger.flagged == 3);
  CHECK(r1.trigger.anomaly == 4.25);
  CHECK(r1.trigger.known == 2);
  CHECK(r1.trigger.unlearnt == 1);
  CHECK(r1.trigger.pruned == 9);
  CHECK(r1.wall_seconds == c1.wall_seconds);
  const RoundRow& r2 = (*rounds)[1];
  CHECK(r2.round == 2);
  CHECK(r2.dp_epsilon == -1);  // no DP: stored as NULL, read back as -1
  CHECK(r2.dp_delta == -1);
  CHECK(r2.protocol_bytes_up == 0);  // no secure pipeline
  CHECK(r2.protocol_server_cpu_s == 0);
  CHECK(!r2.secure_failed);
  CHECK(r2.trigger.scanned == 0);  // no scan
  CHECK(r2.trigger.flagged == -1);
  CHECK(!r2.applied);
  CHECK(r2.new_version == 2);
  CHECK(std::isnan(r2.accuracy));
  CHECK(r2.loss == std::numeric_limits<double>::infinity());

  auto ledger = store->Ledger("run-a");
  REQUIRE(ledger.ok());
  REQUIRE(ledger->size() == 1);
  const LedgerRow& l = (*ledger)[0];
  CHECK(l.run_id == "run-a");
  CHECK(l.round == 1);
  CHECK(l.client_id == row.client_id);
  CHECK(l.device == row.device);
  CHECK(l.radio == row.radio);
  CHECK(l.region == row.region);
  CHECK(l.bytes_up == row.bytes_up);
  CHECK(l.bytes_down == row.bytes_down);
  CHECK(l.flops == row.flops);
  CHECK(l.compute_j == row.compute_j);
  CHECK(l.radio_j == row.radio_j);
  CHECK(l.total_j == row.total_j);
  CHECK(l.gco2e == row.gco2e);
  CHECK(l.source == EnergySource::kMeasured);
  CHECK(l.outcome == ClientOutcome::kStraggled);
  CHECK(l.robust == row.robust);

  auto clients = store->Clients("run-a");
  REQUIRE(clients.ok());
  REQUIRE(clients->size() == 2);
  CHECK((*clients)[0].client_id == 5);
  CHECK((*clients)[0].name == "phone-5b");
  CHECK((*clients)[0].device == "pixel7");
  CHECK((*clients)[0].radio == "5g");
  CHECK((*clients)[0].region == "SE");
  CHECK((*clients)[0].held_version == 2);
  CHECK((*clients)[1].client_id == 0xFFFFFFFFFFFFFFF0ull);
  CHECK((*clients)[1].name.empty());
  CHECK((*clients)[1].held_version == 1);

  auto missing = store->LoadRun("no-such-run");
  REQUIRE(missing.ok());
  CHECK(!missing->has_value());
  CHECK(store->Rounds("no-such-run").error().code() == ErrorCode::kNotFound);
}

TEST_CASE("CreateRun resumes a run with the same config and refuses a different one") {
  ScratchDir dir;
  auto store = MustOpen(dir.Path("state.db"));
  REQUIRE(store->CreateRun("r", "cfg-1", ModelFor(1, 16)).ok());
  REQUIRE(store->CommitRound(CommitFor("r", 1, 16)).ok());
  // A restart with the same config keeps the committed state, whatever initial model it brings.
  CHECK(store->CreateRun("r", "cfg-1", ModelFor(99, 16)).ok());
  CheckCommittedPrefix(*store, "r", 1, 16, 64);
  const Status other = store->CreateRun("r", "cfg-2", ModelFor(1, 16));
  REQUIRE(!other.ok());
  CHECK(other.error().code() == ErrorCode::kAlreadyExists);
  CHECK(other.error().message().find("different config") != std::string::npos);
  CHECK(store->CreateRun("empty", "cfg", {}).error().code() == ErrorCode::kInvalidArgument);
  CHECK(store->UpsertClient("ghost", 1, "", "", "", "").error().code() == ErrorCode::kNotFound);
}

TEST_CASE("Committing a round twice or out of order fails and leaves the store unchanged") {
  ScratchDir dir;
  auto store = MustOpen(dir.Path("state.db"));
  REQUIRE(store->CreateRun("r", "cfg", ModelFor(1, 32)).ok());
  REQUIRE(store->CommitRound(CommitFor("r", 1, 32)).ok());
  REQUIRE(store->CommitRound(CommitFor("r", 2, 32)).ok());
  const Snapshot before = Take(*store, "r");

  const Status twice = store->CommitRound(CommitFor("r", 2, 32));
  REQUIRE(!twice.ok());
  CHECK(twice.error().code() == ErrorCode::kFailedPrecondition);
  CHECK(twice.error().message().find("last committed round is 2") != std::string::npos);

  const Status skip = store->CommitRound(CommitFor("r", 4, 32));
  REQUIRE(!skip.ok());
  CHECK(skip.error().code() == ErrorCode::kFailedPrecondition);

  const Status old = store->CommitRound(CommitFor("r", 1, 32));
  CHECK(old.error().code() == ErrorCode::kFailedPrecondition);

  RoundCommit wrong_version = CommitFor("r", 3, 32);
  wrong_version.new_version = 5;
  CHECK(store->CommitRound(wrong_version).error().code() == ErrorCode::kFailedPrecondition);

  RoundCommit wrong_dim = CommitFor("r", 3, 32);
  wrong_dim.model.pop_back();
  const Status dim_status = store->CommitRound(wrong_dim);
  CHECK(dim_status.error().code() == ErrorCode::kInvalidArgument);
  CHECK(dim_status.error().message().find("31 parameters") != std::string::npos);

  RoundCommit nan_model = CommitFor("r", 3, 32);
  nan_model.model[7] = std::numeric_limits<float>::quiet_NaN();
  CHECK(store->CommitRound(nan_model).error().code() == ErrorCode::kInvalidArgument);

  RoundCommit foreign_row = CommitFor("r", 3, 32);
  foreign_row.ledger_rows[1].round = 2;
  CHECK(store->CommitRound(foreign_row).error().code() == ErrorCode::kInvalidArgument);

  RoundCommit not_applied_with_model = CommitFor("r", 3, 32);
  not_applied_with_model.applied = false;
  not_applied_with_model.new_version = 3;
  CHECK(store->CommitRound(not_applied_with_model).error().code() == ErrorCode::kInvalidArgument);

  RoundCommit unknown = CommitFor("nope", 1, 32);
  CHECK(store->CommitRound(unknown).error().code() == ErrorCode::kNotFound);

  CheckSameSnapshot(before, Take(*store, "r"));
  // The refusals left no transaction open: the right next round still commits.
  REQUIRE(store->CommitRound(CommitFor("r", 3, 32)).ok());
  CheckCommittedPrefix(*store, "r", 3, 32, 64);
}

TEST_CASE("Two connections to one file never commit the same round twice") {
  ScratchDir dir;
  const std::string path = dir.Path("state.db");
  auto a = MustOpen(path);
  auto b = MustOpen(path);
  REQUIRE(a->CreateRun("r", "cfg", ModelFor(1, 16)).ok());
  REQUIRE(a->CommitRound(CommitFor("r", 1, 16)).ok());
  // b reads the run state inside its own write transaction, so it sees a's round 1.
  const Status again = b->CommitRound(CommitFor("r", 1, 16));
  CHECK(again.error().code() == ErrorCode::kFailedPrecondition);
  REQUIRE(b->CommitRound(CommitFor("r", 2, 16)).ok());
  CheckCommittedPrefix(*a, "r", 2, 16, 64);
}

TEST_CASE("Pruning keeps the newest K model versions and their steps") {
  ScratchDir dir;
  const std::string path = dir.Path("state.db");
  constexpr uint32_t kKeep = 4;
  {
    auto store = MustOpen(path, StoreOptions{.keep_versions = kKeep});
    REQUIRE(store->CreateRun("r", "cfg", ModelFor(1, 64)).ok());
    for (uint32_t round = 1; round <= 10; ++round) {
      REQUIRE(store->CommitRound(CommitFor("r", round, 64)).ok());
    }
    auto state = store->LoadRun("r");
    REQUIRE(state.ok());
    CHECK((*state)->retained_versions == std::vector<uint32_t>{8, 9, 10, 11});
    CHECK((*state)->steps.size() == kKeep);
    CHECK((*state)->steps.begin()->first == 8);
    for (uint32_t v = 8; v <= 11; ++v) {
      auto m = store->ModelAt("r", v);
      REQUIRE(m.ok());
      REQUIRE(m->has_value());
      CHECK(BitEqual(**m, ModelFor(v, 64)));
    }
    auto pruned = store->ModelAt("r", 7);
    REQUIRE(pruned.ok());
    CHECK(!pruned->has_value());
    // A round that is not applied changes no version, so prunes nothing.
    RoundCommit failed;
    failed.run_id = "r";
    failed.round = 11;
    failed.new_version = 11;
    REQUIRE(store->CommitRound(failed).ok());
    CHECK((*store->LoadRun("r"))->retained_versions == std::vector<uint32_t>{8, 9, 10, 11});
  }
  // Rounds and the ledger are never pruned.
  auto store = MustOpen(path, StoreOptions{.keep_versions = kKeep});
  CHECK(store->Rounds("r")->size() == 11);
  CHECK(store->Ledger("r")->size() == 10 * kLedgerRowsPerRound);
  CHECK(Store::Open(path, StoreOptions{.keep_versions = 0}).error().code() ==
        ErrorCode::kInvalidArgument);
}

// Makes a closed store at `path` with `rounds` committed rounds of CommitFor().
void MakeStore(const std::string& path, uint32_t rounds, size_t dim) {
  auto store = MustOpen(path);
  REQUIRE(store->CreateRun("r", "cfg", ModelFor(1, dim)).ok());
  for (uint32_t round = 1; round <= rounds; ++round) {
    REQUIRE(store->CommitRound(CommitFor("r", round, dim)).ok());
  }
}

void CheckRefused(const std::string& path, const std::string& expected_words) {
  auto opened = Store::Open(path);
  REQUIRE_MESSAGE(!opened.ok(), "the store at " << path << " opened");
  INFO(opened.error().ToString());
  CHECK(opened.error().message().find(path) != std::string::npos);
  CHECK(opened.error().message().find(expected_words) != std::string::npos);
}

TEST_CASE("A garbage file and a truncated store are refused with messages naming the file") {
  ScratchDir dir;
  const std::string original = dir.Path("state.db");
  MakeStore(original, 6, 4096);
  const std::vector<uint8_t> bytes = ReadBytes(original);
  REQUIRE(bytes.size() > 16 * 4096);

  const std::string garbage = dir.Path("garbage.db");
  WriteBytes(garbage, BytesFor(1, 20000));
  CheckRefused(garbage, "not a SQLite database");

  const std::string text = dir.Path("config.toml");
  WriteBytes(text, std::vector<uint8_t>{'r', 'o', 'u', 'n', 'd', 's', ' ', '=', ' ', '3', '\n'});
  CheckRefused(text, "not a SQLite database");

  const std::string tiny = dir.Path("tiny.db");
  WriteBytes(tiny, std::vector<uint8_t>(bytes.begin(), bytes.begin() + 100));
  CheckRefused(tiny, "truncated");

  const std::string half = dir.Path("half.db");
  WriteBytes(half, std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  CheckRefused(half, "corrupt");
  CHECK(Store::Open(half).error().code() == ErrorCode::kDataLoss);

  const std::string short_pages = dir.Path("short.db");
  WriteBytes(short_pages, std::vector<uint8_t>(bytes.begin(), bytes.end() - 3 * 4096));
  CheckRefused(short_pages, "corrupt");

  // Garbage over every page after the first: the b-trees no longer parse.
  const std::string smashed = dir.Path("smashed.db");
  std::vector<uint8_t> smashed_bytes = bytes;
  const std::vector<uint8_t> noise = BytesFor(2, bytes.size());
  std::copy(noise.begin() + 4096, noise.end(), smashed_bytes.begin() + 4096);
  WriteBytes(smashed, smashed_bytes);
  CheckRefused(smashed, "integrity check failed");
  CHECK(Store::Open(smashed).error().code() == ErrorCode::kDataLoss);

  // The original, copied from before any of this, is intact.
  CHECK(ReadBytes(original) == bytes);
  auto store = MustOpen(original);
  CheckCommittedPrefix(*store, "r", 6, 4096, 64);
}

TEST_CASE("A flipped byte inside a stored model is caught by its checksum") {
  ScratchDir dir;
  const std::string original = dir.Path("state.db");
  MakeStore(original, 2, 1024);
  std::vector<uint8_t> bytes = ReadBytes(original);
  // Find the current model's bytes in the file and flip one bit in the middle.
  const std::vector<float> model = ModelFor(3, 1024);
  const auto* needle = reinterpret_cast<const uint8_t*>(model.data());
  auto at = std::search(bytes.begin(), bytes.end(), needle, needle + 256);
  REQUIRE(at != bytes.end());
  at[100] ^= 0x10;
  const std::string copy = dir.Path("flipped.db");
  WriteBytes(copy, bytes);
  // SQLite's own checks pass (the b-tree is sound); the checksum is what catches it.
  auto store = MustOpen(copy);
  auto loaded = store->LoadRun("r");
  REQUIRE(!loaded.ok());
  CHECK(loaded.error().code() == ErrorCode::kDataLoss);
  CHECK(loaded.error().message().find("model version 3 fails its checksum") != std::string::npos);
  CHECK(loaded.error().message().find(copy) != std::string::npos);
  CHECK(store->ModelAt("r", 3).error().code() == ErrorCode::kDataLoss);
  auto intact = MustOpen(original);
  CheckCommittedPrefix(*intact, "r", 2, 1024, 64);
}

TEST_CASE("A SQLite database that is not a Frugal store, or has a newer schema, is refused") {
  ScratchDir dir;
  const std::string foreign = dir.Path("foreign.db");
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(foreign.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE photos (id INTEGER PRIMARY KEY, jpeg BLOB);"
                             "INSERT INTO photos (jpeg) VALUES (x'FFD8');",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  const std::vector<uint8_t> foreign_bytes = ReadBytes(foreign);
  CheckRefused(foreign, "not a Frugal store");
  CHECK(Store::Open(foreign).error().code() == ErrorCode::kInvalidArgument);
  CHECK(ReadBytes(foreign) == foreign_bytes);  // refused, and not touched (no WAL switch)

  const std::string newer = dir.Path("newer.db");
  MakeStore(newer, 1, 8);
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(newer.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  CheckRefused(newer, "schema version 99 is newer");
  CHECK(Store::Open(newer).error().code() == ErrorCode::kFailedPrecondition);

  const std::string dropped = dir.Path("dropped.db");
  MakeStore(dropped, 1, 8);
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(dropped.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "DROP TABLE ledger", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  CheckRefused(dropped, "table 'ledger' is missing");

  CheckRefused(dir.Path("no/such/dir/state.db"), "opening");
  // An empty file (say, made by touch) becomes a new store.
  const std::string empty = dir.Path("empty.db");
  WriteBytes(empty, {});
  auto store = MustOpen(empty);
  CHECK(store->CreateRun("r", "cfg", ModelFor(1, 8)).ok());
}

// Rewrites a store as the previous schema wrote it: version 1, whose ledger
// refused the outcome 'evaluated'. The table's own SQL is edited, so the
// test does not carry a copy of the schema.
void DowngradeToV1(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'ledger'", -1, &st,
                             nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  std::string sql = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  const std::string evaluated = ", 'evaluated'";
  const size_t at = sql.find(evaluated);
  REQUIRE(at != std::string::npos);
  sql.erase(at, evaluated.size());
  // Schema 4's column, which ALTER TABLE wrote after the last column.
  const std::string robust = ", robust TEXT NOT NULL DEFAULT ''";
  const size_t robust_at = sql.find(robust);
  REQUIRE(robust_at != std::string::npos);
  sql.erase(robust_at, robust.size());
  sql.replace(sql.find("ledger"), 6, "ledger_v1");
  const std::string script = "BEGIN; " + sql + "; INSERT INTO ledger_v1 SELECT id, run_id, round, client_id, device, "
                             "radio, region, bytes_up, bytes_down, flops, compute_j, radio_j, total_j, gco2e, source, "
                             "outcome FROM ledger; DROP TABLE ledger; " +
                             "ALTER TABLE ledger_v1 RENAME TO ledger; " +
                             "CREATE INDEX ledger_by_round ON ledger(run_id, round, id); "
                             "ALTER TABLE rounds DROP COLUMN utc_hour; ALTER TABLE rounds DROP COLUMN robust_clipped; "
                             "ALTER TABLE rounds DROP COLUMN robust_downweighted; "
                             "ALTER TABLE rounds DROP COLUMN robust_rejected; ALTER TABLE rounds DROP COLUMN dp_epsilon; "
                             "ALTER TABLE rounds DROP COLUMN dp_delta; ALTER TABLE runs DROP COLUMN shape; "
                             "ALTER TABLE runs DROP COLUMN shape_crc; ALTER TABLE rounds DROP COLUMN protocol_bytes_up; "
                             "ALTER TABLE rounds DROP COLUMN protocol_bytes_down; "
                             "ALTER TABLE rounds DROP COLUMN protocol_client_cpu_s; "
                             "ALTER TABLE rounds DROP COLUMN protocol_server_cpu_s; "
                             "ALTER TABLE rounds DROP COLUMN secure_failed; "
                             "ALTER TABLE rounds DROP COLUMN trigger_scanned; ALTER TABLE rounds DROP COLUMN trigger_flagged; "
                             "ALTER TABLE rounds DROP COLUMN trigger_anomaly; ALTER TABLE rounds DROP COLUMN trigger_known; "
                             "ALTER TABLE rounds DROP COLUMN trigger_unlearnt; ALTER TABLE rounds DROP COLUMN trigger_pruned; "
                             "ALTER TABLE runs DROP COLUMN defense_state; ALTER TABLE runs DROP COLUMN defense_state_crc; "
                             "PRAGMA user_version = 1; COMMIT;";
  REQUIRE(sqlite3_exec(db, script.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  // Version 1 indeed refuses an evaluation row.
  CHECK(sqlite3_exec(db, "INSERT INTO ledger (run_id, round, client_id, device, radio, region, bytes_up, bytes_down, "
                         "source, outcome) VALUES ('r', 1, 1, 'd', 'r', 'g', 0, 0, 'modelled', 'evaluated')",
                     nullptr, nullptr, nullptr) != SQLITE_OK);
  sqlite3_close(db);
}

LedgerRow EvaluationRow(uint32_t round, uint64_t client) {
  LedgerRow r;
  r.round = round;
  r.client_id = client;
  r.device = "phone-mid";
  r.radio = "wifi";
  r.region = "world";
  r.bytes_down = 7000 + client;
  r.flops = 1.5e6;
  r.compute_j = 0.01;
  r.radio_j = 0.02;
  r.total_j = 0.03;
  r.outcome = ClientOutcome::kEvaluated;
  return r;
}

TEST_CASE("A version-1 store is migrated on open: its ledger kept, evaluation rows accepted") {
  ScratchDir dir;
  const std::string path = dir.Path("v1.db");
  {
    auto store = MustOpen(path);
    REQUIRE(store->CreateRun("r", "cfg", ModelFor(1, 8)).ok());
    for (uint32_t round = 1; round <= 2; ++round) REQUIRE(store->CommitRound(CommitFor("r", round, 8)).ok());
  }
  DowngradeToV1(path);
  auto store = MustOpen(path);
  CheckCommittedPrefix(*store, "r", 2, 8, StoreOptions{}.keep_versions);
  REQUIRE(store->AddLedgerRows("r", {EvaluationRow(2, 5), EvaluationRow(2, 6)}).ok());
  store.reset();
  store = MustOpen(path);
  auto ledger = store->Ledger("r");
  REQUIRE(ledger.ok());
  REQUIRE(ledger->size() == 2 * kLedgerRowsPerRound + 2);
  const LedgerRow& last = ledger->back();
  CHECK(last.outcome == ClientOutcome::kEvaluated);
  CHECK(last.client_id == 6);
  CHECK(last.bytes_down == 7006);
  CHECK(last.flops == 1.5e6);
  // Schema 6's protocol columns: the old rounds read 0, a new round keeps its own.
  RoundCommit third = CommitFor("r", 3, 8);
  third.protocol_bytes_up = 900;
  third.protocol_bytes_down = 1200;
  third.protocol_client_cpu_s = 0.5;
  third.protocol_server_cpu_s = 0.25;
  REQUIRE(store->CommitRound(third).ok());
  auto rounds = store->Rounds("r");
  REQUIRE(rounds.ok());
  REQUIRE(rounds->size() == 3);
  CHECK((*rounds)[0].protocol_bytes_up == 0);
  CHECK((*rounds)[1].protocol_client_cpu_s == 0);
  CHECK((*rounds)[2].protocol_bytes_up == 900);
  CHECK((*rounds)[2].protocol_bytes_down == 1200);
  CHECK((*rounds)[2].protocol_client_cpu_s == 0.5);
  CHECK((*rounds)[2].protocol_server_cpu_s == 0.25);
  third.round = 4;
  third.protocol_server_cpu_s = std::nan("");
  CHECK_FALSE(store->CommitRound(third).ok());  // refused, naming the protocol CPU
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(sqlite3_column_int(st, 0) == 8);
  sqlite3_finalize(st);
  sqlite3_close(db);
  // Schema 6's column reads as never pruned.
  auto run = store->LoadRun("r");
  REQUIRE(run.ok());
  REQUIRE(run->has_value());
  CHECK((*run)->shape.empty());
  // Schema 8's: the old rounds read as without a scan, the run without a trigger memory.
  CHECK((*rounds)[0].trigger.scanned == 0);
  CHECK((*rounds)[0].trigger.flagged == -1);
  CHECK((*run)->defense_state.empty());
}

TEST_CASE("A prune step commits the pruned model with the shape after it, which a reopened store returns") {
  ScratchDir dir;
  const std::string path = dir.Path("state.db");
  const std::vector<uint8_t> shape = BytesFor(77, 72);  // opaque to the store (the FRSC bytes in a service)
  {
    auto store = MustOpen(path);
    REQUIRE(store->CreateRun("r", "cfg", ModelFor(1, 8)).ok());
    REQUIRE(store->CommitRound(CommitFor("r", 1, 8)).ok());
    RoundCommit c = CommitFor("r", 2, 8);
    c.pruned_model = ModelFor(4, 5);
    c.pruned_step = BytesFor(78, 20);
    // A prune step without the shape is refused, and nothing of it is written.
    Status missing = store->CommitRound(c);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().message().find("shape") != std::string::npos);
    c.pruned_shape = shape;
    REQUIRE(store->CommitRound(c).ok());
    CHECK_FALSE(store->CommitRound(CommitFor("r", 3, 5)).ok());  // its new version 4 is the pruned model's
  }
  auto store = MustOpen(path);
  auto run = store->LoadRun("r");
  REQUIRE(run.ok());
  REQUIRE(run->has_value());
  CHECK((*run)->version == 4);
  CHECK((*run)->last_round == 2);
  CHECK(BitEqual((*run)->model, ModelFor(4, 5)));
  CHECK((*run)->shape == shape);
  CHECK((*run)->steps.at(4) == BytesFor(78, 20));
  // A later round at the pruned dimension keeps the shape.
  RoundCommit next = CommitFor("r", 3, 5);
  next.new_version = 5;
  REQUIRE(store->CommitRound(next).ok());
  run = store->LoadRun("r");
  REQUIRE(run.ok());
  CHECK((*run)->shape == shape);
  store.reset();
  // A stored shape that was altered is caught by its checksum.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "UPDATE runs SET shape = substr(shape, 2)", nullptr, nullptr, nullptr) ==
          SQLITE_OK);
  sqlite3_close(db);
  store = MustOpen(path);
  run = store->LoadRun("r");
  REQUIRE_FALSE(run.ok());
  CHECK(run.error().code() == ErrorCode::kDataLoss);
  CHECK(run.error().message().find("shape") != std::string::npos);
}

TEST_CASE("Ledger rows added after a round need a committed round of a known run, all or nothing") {
  ScratchDir dir;
  auto store = MustOpen(dir.Path("state.db"));
  REQUIRE(store->CreateRun("r", "cfg", ModelFor(1, 8)).ok());
  REQUIRE(store->CommitRound(CommitFor("r", 1, 8)).ok());
  const Snapshot before = Take(*store, "r");
  auto future = store->AddLedgerRows("r", {EvaluationRow(1, 3), EvaluationRow(2, 4)});
  REQUIRE_FALSE(future.ok());
  CHECK(future.error().code() == ErrorCode::kFailedPrecondition);
  CHECK(future.error().message().find("round 2, but the last committed round is 1") != std::string::npos);
  CheckSameSnapshot(before, Take(*store, "r"));  // the good first row was not added either
  CHECK(store->AddLedgerRows("nope", {EvaluationRow(1, 3)}).error().code() == ErrorCode::kNotFound);
  LedgerRow other = EvaluationRow(1, 3);
  other.run_id = "other";
  CHECK(store->AddLedgerRows("r", {other}).error().code() == ErrorCode::kInvalidArgument);
  CHECK(store->AddLedgerRows("r", {EvaluationRow(0, 3)}).error().code() == ErrorCode::kInvalidArgument);
  CHECK(store->AddLedgerRows("r", {}).ok());
  REQUIRE(store->AddLedgerRows("r", {EvaluationRow(1, 3)}).ok());
  auto ledger = store->Ledger("r");
  REQUIRE(ledger.ok());
  CHECK(ledger->size() == kLedgerRowsPerRound + 1);
}

// The child side of the crash test: resumes the run and commits rounds until
// killed (or until `limit`), writing each committed round number to `fd`.
[[noreturn]] void CommitUntilKilled(const std::string& path, int fd, size_t dim, uint32_t keep,
                                    uint32_t limit) {
  auto store = Store::Open(path, StoreOptions{.keep_versions = keep});
  if (!store.ok()) _exit(10);
  if (!(*store)->CreateRun("r", "cfg", ModelFor(1, dim)).ok()) _exit(11);
  auto state = (*store)->LoadRun("r");
  if (!state.ok() || !state->has_value()) _exit(12);
  for (uint32_t round = (*state)->last_round + 1; round <= limit; ++round) {
    if (!(*store)->CommitRound(CommitFor("r", round, dim)).ok()) _exit(13);
    if (write(fd, &round, sizeof(round)) != sizeof(round)) _exit(14);
  }
  _exit(0);
}

TEST_CASE("A writer killed with SIGKILL at random moments loses no committed round") {
  ScratchDir dir;
  const std::string path = dir.Path("state.db");
  constexpr size_t kDim = 2048;  // 8 KiB models: every commit spans several pages
  constexpr uint32_t kKeep = 5;
  constexpr int kKills = 8;
  Rng rng(20261126);
  uint32_t acknowledged = 0;  // the last round a child reported as committed
  uint32_t limit = 0;
  int killed_mid_run = 0;
  for (int kill_no = 0; kill_no < kKills; ++kill_no) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    limit = acknowledged + 60;  // bounds the loop if the kill comes late
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      CommitUntilKilled(path, fds[1], kDim, kKeep, limit);
    }
    close(fds[1]);
    // Wait for a random number of commits, then a random delay, then kill.
    const uint64_t wait_for = 1 + rng.UniformInt(6);
    uint32_t round = 0;
    for (uint64_t seen = 0; seen < wait_for && read(fds[0], &round, sizeof(round)) == sizeof(round);
         ++seen) {
      acknowledged = round;
    }
    usleep(static_cast<useconds_t>(rng.UniformInt(20000)));
    kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    // Rounds reported between our last read and the kill are committed too.
    while (read(fds[0], &round, sizeof(round)) == sizeof(round)) acknowledged = round;
    close(fds[0]);
    if (WIFSIGNALED(status)) {
      ++killed_mid_run;
      // The writer died with its connection open, so its log was never
      // checkpointed away: reopening must recover from it.
      CHECK(fs::exists(path + "-wal"));
    } else {
      REQUIRE_MESSAGE(WIFEXITED(status), "child status " << status);
      REQUIRE_MESSAGE(WEXITSTATUS(status) == 0, "child failed with exit code " << WEXITSTATUS(status));
    }

    auto store = MustOpen(path, StoreOptions{.keep_versions = kKeep});
    auto state = store->LoadRun("r");
    REQUIRE_MESSAGE(state.ok(), state.error().ToString());
    REQUIRE(state->has_value());
    const uint32_t n = (*state)->last_round;
    INFO("kill " << kill_no << ": acknowledged " << acknowledged << ", stored " << n);
    // Every acknowledged round is durable; at most the one in flight is extra.
    REQUIRE(n >= acknowledged);
    REQUIRE(n <= acknowledged + 1);
    CheckCommittedPrefix(*store, "r", n, kDim, kKeep);
    acknowledged = n;
  }
  CHECK(killed_mid_run > 0);
  // Resuming after the last kill commits the next round normally.
  auto store = MustOpen(path, StoreOptions{.keep_versions = kKeep});
  REQUIRE(store->CommitRound(CommitFor("r", acknowledged + 1, kDim)).ok());
  CheckCommittedPrefix(*store, "r", acknowledged + 1, kDim, kKeep);
}

}  // TEST_SUITE

}  // namespace
}  // namespace frugal::coordinator
