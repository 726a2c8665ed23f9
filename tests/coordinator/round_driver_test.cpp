// The coordinator's round driver without sockets: registration checks, tasks
// issued to the selected clients, updates refused by reason with the model
// untouched, vanished clients not stalling a round, commits to the store, and
// resuming a run from the store as a restarted coordinator does, and federated
// evaluation (EvalTask + ModelPayload, results weighted by examples), and the
// secure pipeline's five stages relayed with its refusals and deadlines.
#include "frugal/coordinator/round_driver.h"
#include "frugal/core/random.h"
#include "frugal/core/streams.h"

#include <doctest/doctest.h>

#include "frugal/privacy/secure_pipeline.h"
#include <sqlite3.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "data/temp_dir.h"
#include "frugal/codec/frame.h"
#include "frugal/codec/shared_support.h"
#include "frugal/codec/uplink.h"
#include "frugal/model/model.h"
#include "frugal/model/prune.h"
#include "frugal/privacy/accountant.h"
#include "frugal/privacy/dp.h"
#include "frugal/privacy/secure_round.h"
#include "frugal/proto/convert.h"
#include "frugal/proto/frame.h"
#include "frugal/report/run_report.h"
#include "frugal/round/model_payload.h"
#include "frugal/round/lean_round.h"
#include "frugal/round/planner.h"
#include "frugal/round/trigger_scan.h"
#include "frugal/train/trainer.h"
#include "privacy/target_noise_case.h"

namespace frugal::coordinator {
namespace {

class FakeTransport : public DriverTransport {
 public:
  void Send(uint64_t conn, const v1::Envelope& env) override { sent[conn].push_back(env); }
  // The last message of `kind` sent to conn, if any.
  const v1::Envelope* Last(uint64_t conn, v1::Envelope::BodyCase kind) const {
    auto it = sent.find(conn);
    if (it == sent.end()) return nullptr;
    for (auto e = it->second.rbegin(); e != it->second.rend(); ++e) {
      if (e->body_case() == kind) return &*e;
    }
    return nullptr;
  }
  std::map<uint64_t, std::vector<v1::Envelope>> sent;
};

v1::Hello MakeHello(const std::string& name) {
  v1::Hello h;
  h.set_protocol_version(kProtocolVersion);
  h.set_client_name(name);
  h.set_device_class("phone-mid");
  h.set_radio("wifi");
  h.set_region("world");
  h.set_num_examples(100);
  h.set_input_dim(784);
  return h;
}

CoordinatorConfig TestConfig(const testing::TempDir& dir) {
  auto c = ParseCoordinatorConfig("", "test", {"rounds=3", "model=\"logreg\"", "round.clients_per_round=2",
                                               "round.min_clients=2", "round.deadline_s=100",
                                               "data.eval_examples=500", "uplink.density=0.1"});
  REQUIRE(c.ok());
  c->service.out_dir = dir.Path("run");
  return *c;
}

// The model each test client holds: (version, parameters), by connection.
std::map<uint64_t, std::pair<uint32_t, std::vector<float>>> held;

// The Update a client sends for `task`: `delta` encoded with `uc` (no error feedback), priced at 1e6 FLOPs.
v1::Update UpdateFor(const v1::Envelope& task, std::span<const float> delta, const UplinkConfig& uc) {
  auto enc = EncodeUplink(delta, uc, {});
  REQUIRE(enc.ok());
  v1::Update u;
  u.set_round(task.task().round());
  u.set_base_version(task.task().model_version());
  u.set_update(reinterpret_cast<const char*>(enc->data()), enc->size());
  u.mutable_ledger()->set_flops(1e6);
  return u;
}

// What a well-behaved client sends for the task on `conn`: a small sparse step.
v1::Update GoodUpdate(const FakeTransport& t, uint64_t conn, float step, bool dense = false) {
  const v1::Envelope* task = t.Last(conn, v1::Envelope::kTask);
  const v1::Envelope* model = t.Last(conn, v1::Envelope::kModel);
  REQUIRE(task != nullptr);
  REQUIRE(model != nullptr);
  auto& [version, params] = held[conn];
  const auto& bytes = model->model().payload();
  const std::span<const uint8_t> payload(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  std::vector<std::span<const uint8_t>> pieces;
  auto header = ParseModelPayload(payload, 7850, &pieces);
  REQUIRE(header.ok());
  if (version == 0 && header->kind != ModelPayloadKind::kFull) {
    // Register said seed_init (the driver returns it from OnHello; see the
    // seed_init test): a client holding nothing builds version 1 from the
    // run's seed (1 in every test here), as the agent does.
    auto m = MakeModel("logreg", 784, 10);
    REQUIRE(m.ok());
    params.assign(7850, 0.0f);
    (*m)->InitParams(params, StreamSeed(1, SeedStream::kInit));
    version = 1;
  }
  if (version != task->task().model_version()) {
    auto v = ApplyModelPayload(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), version,
                               params, 7850);
    REQUIRE(v.ok());
    version = *v;
  }
  // The payload brings the client to exactly the task's version (also after a restart).
  REQUIRE(version == task->task().model_version());
  std::vector<float> delta(7850, 0.0f);
  for (size_t i = 0; i < delta.size(); i += 7) delta[i] = step;
  UplinkConfig uc;
  uc.density = 0.1;
  uc.dense = dense;
  return UpdateFor(*task, delta, uc);
}

// What most driver tests need: a temp dir with a real SQLite store, the test
// set, the shipped energy profiles, a FakeTransport, and a driver made from
// `overrides`. Held by pointer, so the driver's references stay valid.
struct Rig {
  testing::TempDir dir;
  Dataset test;
  std::unique_ptr<Store> store;
  CoordinatorConfig cfg;
  FakeTransport transport;
  std::unique_ptr<RoundDriver> driver;
};

// A number of the summary.json in `dir`'s run directory, by key (absent: the test fails).
double SummaryMetricAt(const testing::TempDir& dir, const std::string& key) {
  std::ifstream js(dir.Path("run") + "/summary.json");
  const std::string json((std::istreambuf_iterator<char>(js)), std::istreambuf_iterator<char>());
  const size_t at = json.find("\"" + key + "\"");
  REQUIRE(at != std::string::npos);
  return std::stod(json.substr(json.find(':', at) + 1));
}

// The same of the rig's run directory.
double SummaryMetric(Rig& rig, const std::string& key) { return SummaryMetricAt(rig.dir, key); }

// A restarted coordinator: a fresh driver on the rig's store and configuration.
std::unique_ptr<RoundDriver> RestartDriver(Rig& rig) {
  rig.driver.reset();
  DriverDeps deps;
  deps.store = rig.store.get();
  deps.test = &rig.test;
  auto profiles = EnergyProfiles::LoadDefault();
  REQUIRE(profiles.ok());
  deps.profiles = *profiles;
  deps.transport = &rig.transport;
  auto driver = RoundDriver::Create(rig.cfg, std::move(deps));
  REQUIRE(driver.ok());
  return std::move(*driver);
}

// DriverDeps::run_close for the tests of a closing round: the close work runs
// on a thread of its own, as on the service's close worker, but only once
// the test releases it, and its result is applied on the test's thread (the
// driver's) when the test says so. A hook rather than a slow close: what the
// test sees while a round is closing must not depend on how long the close
// takes. One close at a time.
class HeldClose {
 public:
  void Run(uint32_t round, std::function<void()> work, std::function<void()> apply) {
    REQUIRE_FALSE(worker_.joinable());
    round_ = round;
    apply_ = std::move(apply);
    release_ = std::promise<void>();
    released_ = false;
    worker_ = std::thread([work = std::move(work), go = release_.get_future()]() mutable {
      go.wait();
      work();
    });
  }
  // The round whose close work is waiting or running (0: none yet).
  uint32_t round() const { return round_; }
  bool pending() const { return worker_.joinable(); }
  // Lets the close work start; the driver's thread goes on meanwhile.
  void Release() {
    release_.set_value();
    released_ = true;
  }
  // Waits for the work and applies its result on this thread.
  void Apply() {
    worker_.join();
    std::function<void()> apply = std::move(apply_);
    apply_ = nullptr;
    apply();
  }
  ~HeldClose() {
    if (worker_.joinable()) {
      if (!released_) release_.set_value();
      worker_.join();
    }
  }

 private:
  uint32_t round_ = 0;
  std::function<void()> apply_;
  std::promise<void> release_;
  bool released_ = false;
  std::thread worker_;
};
// What a rig's driver gets beyond the store, the test set, the default
// energy profiles and the fake transport.
struct RigOptions {
  // The test set is also the trusted sample's and the distillation pool's
  // source (DriverDeps::train): any 784-feature set will do.
  bool trusted = false;
  HeldClose* hold = nullptr;  // non-null: every close runs through it (DriverDeps::run_close)
  bool noon = false;          // carbon priced at 12:00 UTC, so that two runs price alike
};

// Fills `rig` (its directory already made) with a new run of `overrides` and its driver.
void InitRig(Rig& rig, const std::vector<std::string>& overrides, const RigOptions& opts = {}) {
  held.clear();
  auto test = LoadFashionMnist(Split::kTest);
  REQUIRE(test.ok());
  rig.test = std::move(*test);
  auto store = Store::Open(rig.dir.Path("coordinator.db"));
  REQUIRE(store.ok());
  rig.store = std::move(*store);
  auto cfg = ParseCoordinatorConfig("", "test", overrides);
  REQUIRE_MESSAGE(cfg.ok(), cfg.error().ToString());
  rig.cfg = std::move(*cfg);
  rig.cfg.service.out_dir = rig.dir.Path("run");
  DriverDeps deps;
  deps.store = rig.store.get();
  deps.test = &rig.test;
  if (opts.trusted) deps.train = &rig.test;
  auto profiles = EnergyProfiles::LoadDefault();
  REQUIRE(profiles.ok());
  deps.profiles = *profiles;
  deps.transport = &rig.transport;
  if (opts.noon) deps.utc_hour = [] { return 12.0; };
  if (HeldClose* hold = opts.hold) {
    deps.run_close = [hold](uint32_t round, std::function<void()> work, std::function<void()> apply) {
      hold->Run(round, std::move(work), std::move(apply));
    };
  }
  auto driver = RoundDriver::Create(rig.cfg, std::move(deps));
  REQUIRE_MESSAGE(driver.ok(), driver.error().ToString());
  rig.driver = std::move(*driver);
}

// What must match between a run whose closes were held on another thread and
// the same run closed inline: the driver's model, the stored model, version
// and engine state, `rounds` round rows (server joules apart: measured CPU
// seconds, priced on whichever thread ran them) and every ledger row.
void CheckSameStoredRun(const Rig& ref, const Rig& run, size_t rounds) {
  const std::span<const float> m_ref = ref.driver->global_model(), m_run = run.driver->global_model();
  CHECK(std::equal(m_run.begin(), m_run.end(), m_ref.begin(), m_ref.end()));
  auto state_ref = ref.store->LoadRun(ref.cfg.run_id), state_run = run.store->LoadRun(run.cfg.run_id);
  REQUIRE(state_ref.ok());
  REQUIRE(state_run.ok());
  CHECK((*state_run)->version == (*state_ref)->version);
  CHECK((*state_run)->model == (*state_ref)->model);
  CHECK((*state_run)->engine_state == (*state_ref)->engine_state);
  auto rows_ref = ref.store->Rounds(ref.cfg.run_id), rows_run = run.store->Rounds(run.cfg.run_id);
  REQUIRE(rows_ref.ok());
  REQUIRE(rows_run.ok());
  REQUIRE(rows_run->size() == rounds);
  REQUIRE(rows_ref->size() == rounds);
  for (size_t i = 0; i < rounds; ++i) {
    CAPTURE(i);
    const RoundRow &a = (*rows_ref)[i], &b = (*rows_run)[i];
    CHECK(b.round == a.round);
    CHECK(b.new_version == a.new_version);
    CHECK(b.applied == a.applied);
    CHECK(b.accuracy == a.accuracy);
    CHECK(b.loss == a.loss);
    CHECK(b.bytes_up == a.bytes_up);
    CHECK(b.bytes_down == a.bytes_down);
    CHECK(b.joules_compute == a.joules_compute);
    CHECK(b.joules_radio == a.joules_radio);
    CHECK(b.gco2e == a.gco2e);
    CHECK(b.selected == a.selected);
    CHECK(b.completed == a.completed);
    CHECK(b.wall_seconds == a.wall_seconds);
    CHECK(b.robust_clipped == a.robust_clipped);
    CHECK(b.robust_downweighted == a.robust_downweighted);
    CHECK(b.robust_rejected == a.robust_rejected);
    CHECK(b.protocol_bytes_up == a.protocol_bytes_up);
    CHECK(b.protocol_bytes_down == a.protocol_bytes_down);
    CHECK(b.protocol_client_cpu_s == a.protocol_client_cpu_s);
    CHECK(b.secure_failed == a.secure_failed);
    CHECK(b.server_joules > 0);
  }
  auto ledger_ref = ref.store->Ledger(ref.cfg.run_id), ledger_run = run.store->Ledger(run.cfg.run_id);
  REQUIRE(ledger_ref.ok());
  REQUIRE(ledger_run.ok());
  REQUIRE(ledger_run->size() == ledger_ref->size());
  for (size_t i = 0; i < ledger_ref->size(); ++i) {
    CAPTURE(i);
    const LedgerRow &a = (*ledger_ref)[i], &b = (*ledger_run)[i];
    CHECK(b.round == a.round);
    CHECK(b.client_id == a.client_id);
    CHECK(b.bytes_up == a.bytes_up);
    CHECK(b.bytes_down == a.bytes_down);
    CHECK(b.flops == a.flops);
    CHECK(b.total_j == a.total_j);
    CHECK(b.gco2e == a.gco2e);
    CHECK(b.outcome == a.outcome);
    CHECK(b.robust == a.robust);
  }
}

std::unique_ptr<Rig> MakeRig(const std::vector<std::string>& overrides) {
  auto rig = std::make_unique<Rig>();
  InitRig(*rig, overrides);
  return rig;
}

// The error of a driver that must refuse to start with these overrides.
Error StartRefusal(const std::vector<std::string>& overrides) {
  testing::TempDir dir;
  auto test = LoadFashionMnist(Split::kTest);
  REQUIRE(test.ok());
  auto store = Store::Open(dir.Path("coordinator.db"));
  REQUIRE(store.ok());
  auto cfg = ParseCoordinatorConfig("", "test", overrides);
  REQUIRE(cfg.ok());
  FakeTransport transport;
  DriverDeps deps;
  deps.store = store->get();
  deps.test = &*test;
  deps.transport = &transport;
  auto driver = RoundDriver::Create(*cfg, std::move(deps));
  REQUIRE_FALSE(driver.ok());
  return driver.error();
}

// A driver of `cfg` over `store` and `transport`, with the default energy
// profiles; the test set is also its trusted sample's source (any
// 784-feature set will do for the trigger defence's tests).
std::unique_ptr<RoundDriver> MakeTrustedDriver(const CoordinatorConfig& cfg, Store* store, const Dataset& test,
                                               FakeTransport& transport) {
  DriverDeps deps;
  deps.store = store;
  deps.test = &test;
  deps.train = &test;
  auto profiles = EnergyProfiles::LoadDefault();
  REQUIRE(profiles.ok());
  deps.profiles = *profiles;
  deps.transport = &transport;
  auto d = RoundDriver::Create(cfg, std::move(deps));
  REQUIRE_MESSAGE(d.ok(), d.error().ToString());
  return std::move(*d);
}


}  // namespace

TEST_SUITE("coordinator") {
  TEST_CASE("the round driver rejects bad updates by reason, leaves the model untouched, and resumes from the store") {
    testing::TempDir dir;
    held.clear();
    auto test = LoadFashionMnist(Split::kTest);
    REQUIRE(test.ok());
    auto store = Store::Open(dir.Path("coordinator.db"));
    REQUIRE(store.ok());
    const CoordinatorConfig cfg = TestConfig(dir);
    FakeTransport transport;
    auto make_driver = [&]() {
      DriverDeps deps;
      deps.store = store->get();
      deps.test = &*test;
      auto profiles = EnergyProfiles::LoadDefault();
      REQUIRE(profiles.ok());
      deps.profiles = *profiles;
      deps.transport = &transport;
      deps.utc_hour = [] { return 12.0; };
      deps.iso_timestamp = [] { return std::string("2026-01-01T00:00:00Z"); };
      auto d = RoundDriver::Create(cfg, std::move(deps));
      REQUIRE(d.ok());
      return std::move(*d);
    };
    auto driver = make_driver();

    // Registration checks.
    v1::Hello wrong_name = MakeHello("mallory");
    auto refused = driver->OnHello(9, "alice", wrong_name, 0);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code() == ErrorCode::kUnauthenticated);
    v1::Hello wrong_dim = MakeHello("alice");
    wrong_dim.set_input_dim(100);
    CHECK_FALSE(driver->OnHello(9, "alice", wrong_dim, 0).ok());
    v1::Hello unknown_device = MakeHello("alice");
    unknown_device.set_device_class("toaster");
    CHECK_FALSE(driver->OnHello(9, "alice", unknown_device, 0).ok());

    REQUIRE(driver->OnHello(1, "alice", MakeHello("alice"), 0).ok());
    driver->Tick(0);
    CHECK_FALSE(driver->Metrics().round_open);  // waits for min_clients = 2
    REQUIRE(driver->OnHello(2, "bob", MakeHello("bob"), 0).ok());
    driver->Tick(0);
    REQUIRE(driver->Metrics().round_open);
    CHECK(driver->Metrics().round == 1);
    REQUIRE(transport.Last(1, v1::Envelope::kTask) != nullptr);
    REQUIRE(transport.Last(2, v1::Envelope::kModel) != nullptr);
    CHECK(transport.Last(1, v1::Envelope::kTask)->task().model_version() == 1);

    const std::vector<float> before(driver->global_model().begin(), driver->global_model().end());

    SUBCASE("wrong dimension, NaN and a stale base are refused with the model unchanged") {
      // Wrong dimension: a dense update of 7851 values.
      auto wrong = EncodeUplink(std::vector<float>(7851, 0.01f), UplinkConfig{.dense = true}, {});
      REQUIRE(wrong.ok());
      v1::Update u = GoodUpdate(transport, 1, 0.01f);
      u.set_update(reinterpret_cast<const char*>(wrong->data()), wrong->size());
      driver->OnUpdate(1, u, 1);
      const v1::Envelope* err = transport.Last(1, v1::Envelope::kError);
      REQUIRE(err != nullptr);
      CHECK(err->error().reason() == "wrong_dimension");
      CHECK(err->error().round() == 1);

      // NaN: a valid dense update with one value patched to NaN and the frame resealed.
      auto dense = EncodeUplink(std::vector<float>(7850, 0.01f), UplinkConfig{.dense = true}, {});
      REQUIRE(dense.ok());
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::memcpy(dense->data() + kFrameHeaderSize + 40, &nan, sizeof nan);
      REQUIRE(SealFrame(*dense).ok());
      u.set_update(reinterpret_cast<const char*>(dense->data()), dense->size());
      driver->OnUpdate(2, u, 1);
      err = transport.Last(2, v1::Envelope::kError);
      REQUIRE(err != nullptr);
      CHECK(err->error().reason() == "non_finite");

      const DriverMetrics m = driver->Metrics();
      CHECK(m.updates_rejected.at("wrong_dimension") == 1);
      CHECK(m.updates_rejected.at("non_finite") == 1);
      CHECK(m.updates_accepted == 0);
      const std::vector<float> after(driver->global_model().begin(), driver->global_model().end());
      CHECK(after == before);
      CHECK(driver->version() == 1);
      // Both selected clients answered (rejected): the round closes, quorum not met.
      driver->Tick(2);
      auto rows = (*store)->Rounds(cfg.run_id);
      REQUIRE(rows.ok());
      REQUIRE(rows->size() == 1);
      CHECK_FALSE((*rows)[0].applied);
      CHECK(driver->version() == 1);
      const std::vector<float> after_close(driver->global_model().begin(), driver->global_model().end());
      CHECK(after_close == before);
    }

    SUBCASE("good updates are aggregated, a vanished client does not stall the next round, and a restart resumes") {
      CHECK(driver->Busy(1));  // owes an update: silence is training, not idleness
      driver->OnUpdate(1, GoodUpdate(transport, 1, 0.01f), 1);
      CHECK_FALSE(driver->Busy(1));
      CHECK(driver->Metrics().round_open);
      driver->OnUpdate(2, GoodUpdate(transport, 2, 0.02f), 1);
      // K = 2 updates: closed, committed, and round 2 opened at once.
      CHECK(driver->version() == 2);
      CHECK(driver->Metrics().updates_accepted == 2);
      CHECK(driver->Metrics().round == 2);
      const std::vector<float> v2(driver->global_model().begin(), driver->global_model().end());
      CHECK(v2 != before);

      // A late update for round 1 is refused.
      v1::Update late = GoodUpdate(transport, 1, 0.01f);
      late.set_round(1);
      driver->OnUpdate(1, late, 2);
      REQUIRE(transport.Last(1, v1::Envelope::kError) != nullptr);
      CHECK(transport.Last(1, v1::Envelope::kError)->error().reason() == "stale_round");

      // Round 2: alice vanishes; bob's update closes the round.
      driver->OnDisconnect(1, 3);
      driver->OnUpdate(2, GoodUpdate(transport, 2, 0.01f), 3);
      CHECK(driver->version() == 3);
      auto rows = (*store)->Rounds(cfg.run_id);
      REQUIRE(rows.ok());
      REQUIRE(rows->size() == 2);
      CHECK((*rows)[1].completed == 1);
      auto ledger = (*store)->Ledger(cfg.run_id);
      REQUIRE(ledger.ok());
      REQUIRE(ledger->size() == 4);
      CHECK((*ledger)[2].outcome == ClientOutcome::kDropped);  // alice, id 1, round 2
      CHECK(std::filesystem::exists(dir.Path("run/rounds.csv")));
      CHECK(std::filesystem::exists(dir.Path("run/summary.json")));
      {
        // The coordinator's own peak RSS is in its summary, as in the simulator's.
        std::ifstream in(dir.Path("run/summary.json"));
        const std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const size_t at = json.find("\"peak_rss_bytes\"");
        REQUIRE(at != std::string::npos);
        const size_t colon = json.find(':', at);
        CHECK(std::stoull(json.substr(colon + 1)) > 1000000);  // a process with Fashion-MNIST loaded
      }
      const std::vector<float> v3(driver->global_model().begin(), driver->global_model().end());

      // A restarted coordinator resumes at round 3 with the committed model.
      driver.reset();
      transport.sent.clear();
      // Bob keeps the copy he holds across the coordinator's restart; alice starts afresh.
      held[12] = held[2];
      auto resumed = make_driver();
      CHECK(resumed->version() == 3);
      CHECK(resumed->records().size() == 2);
      const std::vector<float> r3(resumed->global_model().begin(), resumed->global_model().end());
      CHECK(r3 == v3);
      v1::Hello a = MakeHello("alice"), b = MakeHello("bob");
      b.set_model_version(held[12].first);
      REQUIRE(resumed->OnHello(11, "alice", a, 0).ok());
      REQUIRE(resumed->OnHello(12, "bob", b, 0).ok());
      resumed->Tick(0);
      CHECK(resumed->Metrics().round == 3);
      CHECK(transport.Last(11, v1::Envelope::kTask)->task().model_version() == 3);
      resumed->OnUpdate(11, GoodUpdate(transport, 11, 0.01f), 1);
      resumed->OnUpdate(12, GoodUpdate(transport, 12, 0.01f), 1);
      CHECK(resumed->done());
      CHECK(resumed->version() == 4);
      auto all = (*store)->Rounds(cfg.run_id);
      REQUIRE(all.ok());
      REQUIRE(all->size() == 3);
      for (uint32_t i = 0; i < 3; ++i) CHECK((*all)[i].round == i + 1);
    }
  }
}

}  // namespace frugal::coordinator

namespace frugal::coordinator {

TEST_SUITE("coordinator") {
  TEST_CASE("the dense baseline pipeline runs and commits rounds through the same driver") {
    auto rig = MakeRig({"rounds=1", "model=\"logreg\"", "pipeline=\"dense\"", "round.clients_per_round=1",
                        "data.eval_examples=200"});
    RoundDriver* driver = rig->driver.get();
    FakeTransport& transport = rig->transport;
    auto reg = driver->OnHello(1, "alice", MakeHello("alice"), 0);
    REQUIRE(reg.ok());
    CHECK(reg->codec().dense());  // the run's task configuration travels in Register
    CHECK_FALSE(reg->codec().error_feedback());
    driver->Tick(0);
    REQUIRE(driver->Metrics().round_open);
    const v1::Envelope* task = transport.Last(1, v1::Envelope::kTask);
    REQUIRE(task != nullptr);
    CHECK(reg->seed() == 1);  // the client derives its training seed: RoundClientSeed(seed, kTrain, round, id)
    CHECK(reg->client_id() == 1);
    driver->OnUpdate(1, GoodUpdate(transport, 1, 0.01f), 1);
    CHECK(driver->done());
    CHECK(driver->version() == 2);
    auto rows = rig->store->Rounds(rig->cfg.run_id);
    REQUIRE(rows.ok());
    REQUIRE(rows->size() == 1);
    CHECK((*rows)[0].applied);
  }

  TEST_CASE("server.robust in the driver: an oversized update is clipped, logged, counted and stored per client") {
    auto rig = MakeRig({"rounds=1", "model=\"logreg\"", "round.clients_per_round=3", "round.min_clients=3",
                        "uplink.density=0.1", "eval.examples=200", "server.robust=\"norm_bound\"",
                        "server.clip_bound=0.5"});
    RoundDriver* driver = rig->driver.get();
    FakeTransport& transport = rig->transport;
    for (uint64_t conn : {1, 2, 3}) {
      const std::string name = "client-" + std::to_string(conn);
      REQUIRE(driver->OnHello(conn, name, MakeHello(name), 0).ok());
    }
    driver->Tick(0);
    REQUIRE(driver->Metrics().round_open);
    // Two small steps (norm about 0.03) and one of norm about 280: clipped to 0.5.
    driver->OnUpdate(1, GoodUpdate(transport, 1, 0.001f), 1);
    driver->OnUpdate(2, GoodUpdate(transport, 2, 0.001f), 1);
    driver->OnUpdate(3, GoodUpdate(transport, 3, 10.0f), 1);
    REQUIRE(driver->done());
    auto rows = rig->store->Rounds(rig->cfg.run_id);
    REQUIRE(rows.ok());
    REQUIRE(rows->size() == 1);
    CHECK((*rows)[0].robust_clipped == 1);
    CHECK((*rows)[0].robust_rejected == 0);
    auto ledger = rig->store->Ledger(rig->cfg.run_id);
    REQUIRE(ledger.ok());
    int clipped = 0;
    for (const LedgerRow& row : *ledger) {
      if (row.robust.empty()) continue;
      ++clipped;
      CHECK(row.robust.starts_with("clipped: "));
      CHECK(row.robust.find("0.5") != std::string::npos);  // names the bound
    }
    CHECK(clipped == 1);
    // The run directory says the same.
    std::ifstream csv(rig->dir.Path("run") + "/rounds.csv");
    std::string header, line;
    std::getline(csv, header);
    std::getline(csv, line);
    CHECK(header.find("robust_clipped,robust_downweighted,robust_rejected") != std::string::npos);
    CHECK(line.find(",1,0,0,-1") != std::string::npos);
  }

  TEST_CASE("server.robust = fltrust without a training set for the trusted sample is refused at start") {
    const Error e = StartRefusal({"model=\"logreg\"", "server.robust=\"fltrust\""});
    CHECK(e.message().find("fltrust") != std::string::npos);
  }

  TEST_CASE("what the coordinator cannot run is refused at start, naming it: [prune] of a model without hidden units, [widths] of an unknown device class") {
    const Error prune = StartRefusal({"model=\"logreg\"", "prune.target_flops_fraction=0.5"});
    CHECK(prune.code() == ErrorCode::kInvalidArgument);
    CHECK(prune.message().find("[prune]") != std::string::npos);
    const Error widths =
        StartRefusal({"model=\"mlp\"", "server.averaging=\"support\"", "widths.devices={phone-nokia=0.5}"});
    CHECK(widths.message().find("widths.devices") != std::string::npos);
    // The service always runs the SecAgg+ protocol: skipping it is the simulator's accuracy shortcut.
    auto skip = ParseCoordinatorConfig("", "test", {"pipeline=\"secure\"", "secure.run_protocol=false"});
    REQUIRE(!skip.ok());
    CHECK(skip.error().message().find("secure.run_protocol") != std::string::npos);
    CHECK(ParseCoordinatorConfig("", "test", {"pipeline=\"secure\"", "secure.run_protocol=true"}).ok());
  }

  TEST_CASE("distributed DP starts with the secure pipeline, its tasks carry the engine's clip and noise; other pipelines and a ring too small are refused") {
    // Refused before the first round, naming what is wrong: another pipeline
    // (by the configuration's parser), no noise, a ring too small for the noise.
    auto refusal = [](const std::vector<std::string>& overrides) {
      auto cfg = ParseCoordinatorConfig("", "test", overrides);
      return cfg.ok() ? StartRefusal(overrides) : cfg.error();
    };
    for (const char* pipeline : {"pipeline=\"frugal\"", "pipeline=\"dense\""}) {
      CAPTURE(pipeline);
      const Error e = refusal({"model=\"logreg\"", pipeline, "privacy.mode=\"distributed\"", "privacy.clip=0.5",
                               "privacy.noise_multiplier=1"});
      CHECK(e.message().find("distributed") != std::string::npos);
      CHECK(e.message().find("secure") != std::string::npos);
    }
    const Error no_noise = refusal({"model=\"logreg\"", "pipeline=\"secure\"", "privacy.mode=\"distributed\"",
                                         "privacy.clip=0.5"});
    CHECK(no_noise.message().find("privacy.noise_multiplier") != std::string::npos);
    const Error small = refusal({"model=\"logreg\"", "pipeline=\"secure\"", "privacy.mode=\"distributed\"",
                                      "privacy.clip=0.5", "privacy.noise_multiplier=1", "secure.bits=8",
                                      "round.clients_per_round=4"});
    CHECK(small.message().find("secure.bits") != std::string::npos);

    // Accepted with the secure pipeline: each task's plan carries the ring
    // the engine planned (PlanDistributedRing), which the client quantizes into.
    const std::vector<std::string> keys = {"rounds=1", "model=\"logreg\"", "pipeline=\"secure\"",
                                           "round.clients_per_round=4", "round.min_clients=4", "eval.examples=100",
                                           "privacy.mode=\"distributed\"", "privacy.clip=0.5",
                                           "privacy.noise_multiplier=1", "round.deadline_s=100"};
    auto rig = MakeRig(keys);
    RoundDriver& d = *rig->driver;
    for (uint64_t c = 1; c <= 4; ++c) {
      std::string name = "c";
      name += std::to_string(c);
      REQUIRE(d.OnHello(c, name, MakeHello(name), 0).ok());
    }
    d.Tick(0);
    REQUIRE_FALSE(d.fatal().has_value());
    const CoordinatorConfig& cfg = rig->cfg;
    auto model = MakeModel("logreg", 784, 10);
    REQUIRE(model.ok());
    auto ring = privacy::PlanDistributedRing(cfg.engine.dp, cfg.engine.secure.ring, cfg.engine.secure.dropout,
                                             UplinkKeepCount(cfg.engine.uplink_density, (*model)->num_params()));
    REQUIRE(ring.ok());
    CHECK(ring->ring.noise_mu > 0);
    for (uint64_t c = 1; c <= 4; ++c) {
      const v1::Envelope* task = rig->transport.Last(c, v1::Envelope::kTask);
      REQUIRE(task != nullptr);
      REQUIRE(task->task().has_secagg());
      CHECK(task->task().secagg().distributed_dp());
      auto plan = FromWire(task->task().secagg(), 1);
      REQUIRE(plan.ok());
      CHECK(plan->ring.noise_mu == ring->ring.noise_mu);
      CHECK(plan->ring.l2_clip == 0.5);
      CHECK(plan->ring.noise_margin == ring->ring.noise_margin);
      CHECK(plan->ring.max_summands == ring->ring.max_summands);
      CHECK(plan->ring.clip == ring->ring.clip);
      CHECK(plan->ring.bits == ring->ring.bits);
    }
  }

  TEST_CASE("privacy.target_epsilon without a noise multiplier: the coordinator derives frugal-sim's z at round.min_clients, reports it, and refuses a target no z meets") {
    // frugal-sim's half is in sim_test.cpp, on the same keys with population.clients = 40.
    const double expected = testing::ExpectedTargetNoise();
    REQUIRE(expected > 0);
    std::vector<std::string> sets = testing::kTargetNoiseSets;
    sets.push_back("round.min_clients=" + std::to_string(testing::kTargetNoiseEligible));
    {
      auto rig = MakeRig(sets);
      const DriverMetrics m = rig->driver->Metrics();
      REQUIRE(m.dp_noise_multiplier.has_value());
      CHECK(*m.dp_noise_multiplier == expected);
    }
    // A target no noise multiplier up to 1e4 meets at q = 1: refused at start, naming the keys to change.
    sets.back() = "round.min_clients=6";
    sets.push_back("rounds=1000");
    sets.push_back("privacy.target_epsilon=1e-6");
    Rig rig;
    auto test = LoadFashionMnist(Split::kTest);
    REQUIRE(test.ok());
    rig.test = std::move(*test);
    auto store = Store::Open(rig.dir.Path("coordinator.db"));
    REQUIRE(store.ok());
    rig.store = std::move(*store);
    auto cfg = ParseCoordinatorConfig("", "test", sets);
    REQUIRE_MESSAGE(cfg.ok(), cfg.error().ToString());
    rig.cfg = std::move(*cfg);
    DriverDeps deps;
    deps.store = rig.store.get();
    deps.test = &rig.test;
    auto profiles = EnergyProfiles::LoadDefault();
    REQUIRE(profiles.ok());
    deps.profiles = *profiles;
    deps.transport = &rig.transport;
    auto driver = RoundDriver::Create(rig.cfg, std::move(deps));
    REQUIRE_FALSE(driver.ok());
    const std::string msg = driver.error().ToString();
    INFO(msg);
    CHECK(msg.find("privacy.target_epsilon") != std::string::npos);
    CHECK(msg.find("round.min_clients = 6") != std::string::npos);
    CHECK(msg.find("set privacy.noise_multiplier") != std::string::npos);
  }

  TEST_CASE("central DP: the coordinator stops before the round that would pass privacy.target_epsilon, saying why") {
    // q = 2 selected / 2 connected = 1, z = 2: the target lies between ε after
    // 3 and after 4 rounds, by the accountant's plain closed form for q = 1
    // under replace-one adjacency (fixed-size selection), 2 α / z² per round.
    const double delta = 1e-5;
    constexpr auto kFixed = privacy::SamplingScheme::kFixedSize;
    auto e3 = privacy::SubsampledGaussianEpsilon(kFixed, 1.0, 2.0, 3, delta);
    auto e4 = privacy::SubsampledGaussianEpsilon(kFixed, 1.0, 2.0, 4, delta);
    REQUIRE(e3.ok());
    REQUIRE(e4.ok());
    const double target = (e3->epsilon + e4->epsilon) / 2;
    auto rig = MakeRig({"rounds=10", "model=\"logreg\"", "pipeline=\"dense\"", "round.clients_per_round=2",
                        "round.min_clients=2", "eval.examples=100", "privacy.mode=\"central\"", "privacy.clip=1",
                        "privacy.noise_multiplier=2", "privacy.target_epsilon=" + std::to_string(target)});
    RoundDriver& d = *rig->driver;
    REQUIRE(d.OnHello(1, "alice", MakeHello("alice"), 0).ok());
    REQUIRE(d.OnHello(2, "bob", MakeHello("bob"), 0).ok());
    d.Tick(0);
    for (int guard = 0; guard < 10 && d.Metrics().round_open; ++guard) {
      d.OnUpdate(1, GoodUpdate(rig->transport, 1, 0.01f, true), guard + 1);
      d.OnUpdate(2, GoodUpdate(rig->transport, 2, 0.02f, true), guard + 1);
      d.Tick(guard + 1);
    }
    REQUIRE_FALSE(d.fatal().has_value());
    CHECK(d.done());
    REQUIRE(d.records().size() == 3);
    for (uint32_t r = 0; r < 3; ++r) {
      auto e = privacy::SubsampledGaussianEpsilon(kFixed, 1.0, 2.0, r + 1, delta);
      REQUIRE(e.ok());
      CHECK(d.records()[r].dp_epsilon == doctest::Approx(e->epsilon).epsilon(1e-12));
    }
    const DriverMetrics m = d.Metrics();
    INFO(m.stop_reason);
    CHECK(m.stop_reason.find("round 4 would take epsilon") != std::string::npos);
    CHECK(m.stop_reason.find("privacy.target_epsilon") != std::string::npos);
    REQUIRE(m.dp_epsilon.has_value());
    CHECK(*m.dp_epsilon == d.records()[2].dp_epsilon);
    CHECK(*m.dp_epsilon <= target);
    // /status and the dashboard carry the same labels as summary.json (DescribeDpAccounting).
    CHECK(m.dp_sampling == "fixed_size");
    CHECK(m.dp_adjacency == "replace_one");
    CHECK(m.dp_bound == "proven");
    CHECK(d.Dashboard(100).status.dp_bound == "proven");
    std::ifstream js(rig->dir.Path("run") + "/summary.json");
    const std::string json((std::istreambuf_iterator<char>(js)), std::istreambuf_iterator<char>());
    CHECK(json.find("round 4 would take epsilon") != std::string::npos);
    CHECK(json.find("\"dp_sampling\": \"fixed_size\"") != std::string::npos);
    CHECK(json.find("\"dp_adjacency\": \"replace_one\"") != std::string::npos);
    CHECK(json.find("\"dp_bound\": \"proven\"") != std::string::npos);
    CHECK(d.version() == 4);  // three rounds applied, none after
  }

  TEST_CASE("central DP with more clients connected than round.min_clients: each round is accounted at q = selected / connected under the fixed-size bound") {
    // z is derived from the target at round.min_clients = 2 (q = 1, the largest a round can have); with 5
    // connected, the round selects 2 of 5 without replacement, and its epsilon is the fixed-size bound's
    // at q = 0.4, not the planned q = 1 and not the Poisson bound at 0.4.
    const double delta = 1e-5;
    auto rig = MakeRig({"rounds=1", "model=\"logreg\"", "pipeline=\"dense\"", "round.clients_per_round=2",
                        "round.min_clients=2", "eval.examples=100", "privacy.mode=\"central\"", "privacy.clip=1",
                        "privacy.target_epsilon=6"});
    RoundDriver& d = *rig->driver;
    const double z = *d.Metrics().dp_noise_multiplier;
    CHECK(z == *privacy::NoiseMultiplierForEpsilon(privacy::SamplingScheme::kFixedSize, 6, 1.0, 1, delta));
    for (uint64_t id = 1; id <= 5; ++id) {
      std::string name = "c";
      name += std::to_string(id);
      REQUIRE(d.OnHello(id, name, MakeHello(name), 0).ok());
    }
    d.Tick(0);
    for (int guard = 0; guard < 10 && d.Metrics().round_open; ++guard) {
      for (uint64_t id = 1; id <= 5; ++id) {
        if (rig->transport.Last(id, v1::Envelope::kTask) == nullptr) continue;  // not selected
        d.OnUpdate(id, GoodUpdate(rig->transport, id, 0.01f, true), guard + 1);
      }
      d.Tick(guard + 1);
    }
    REQUIRE_FALSE(d.fatal().has_value());
    REQUIRE(d.records().size() == 1);
    CHECK(d.records()[0].selected == 2);
    auto fixed = privacy::SubsampledGaussianEpsilon(privacy::SamplingScheme::kFixedSize, 0.4, z, 1, delta);
    auto poisson = privacy::SubsampledGaussianEpsilon(privacy::SamplingScheme::kPoisson, 0.4, z, 1, delta);
    REQUIRE(fixed.ok());
    REQUIRE(poisson.ok());
    CHECK(d.records()[0].dp_epsilon == doctest::Approx(fixed->epsilon).epsilon(1e-12));
    CHECK(d.records()[0].dp_epsilon != doctest::Approx(poisson->epsilon).epsilon(1e-6));
    CHECK(d.records()[0].dp_epsilon < 6.0);
  }

  TEST_CASE("central DP with energy-aware selection: /status labels its epsilon approximate, as summary.json does") {
    auto rig = MakeRig({"rounds=1", "model=\"logreg\"", "pipeline=\"dense\"", "round.clients_per_round=2",
                        "round.min_clients=2", "eval.examples=100", "round.selection=\"energy\"",
                        "privacy.mode=\"central\"", "privacy.clip=1", "privacy.noise_multiplier=2"});
    const DriverMetrics m = rig->driver->Metrics();
    CHECK(m.dp_sampling == "fixed_size");
    CHECK(m.dp_adjacency == "replace_one");
    CHECK(m.dp_bound.rfind("approximate: round.selection = \"energy\"", 0) == 0);
    auto plain = MakeRig({"rounds=1", "model=\"logreg\"", "pipeline=\"dense\"", "round.clients_per_round=2",
                          "round.min_clients=2", "eval.examples=100"});
    CHECK(plain->driver->Metrics().dp_bound.empty());
    CHECK(plain->driver->Metrics().dp_sampling.empty());
  }

  TEST_CASE("[prune] and [widths] on the coordinator: a device class's width in Register, a narrow client's update of its sub-network, and a prune step after round 1 committed and sent as a shape change") {
    auto rig = MakeRig({"rounds=2", "model=\"mlp\"", "round.clients_per_round=2", "round.min_clients=2",
                        "round.deadline_s=100", "eval.examples=100", "server.averaging=\"support\"",
                        "prune.target_flops_fraction=0.5", "prune.start_round=1", "prune.steps=1", "prune.every=1",
                        "widths.devices={phone-low=0.5}"});
    RoundDriver& d = *rig->driver;
    const std::vector<float> v1(d.global_model().begin(), d.global_model().end());
    const auto full_dim = static_cast<uint32_t>(v1.size());
    const std::vector<uint32_t> sizes = {784, 200, 200, 10};
    REQUIRE(MlpParamCount(sizes) == full_dim);
    v1::Hello low = MakeHello("low");
    low.set_device_class("Phone-Low");  // any spelling of the profile's id
    auto reg_mid = d.OnHello(1, "mid", MakeHello("mid"), 0);
    auto reg_low = d.OnHello(2, "low", low, 0);
    REQUIRE(reg_mid.ok());
    REQUIRE(reg_low.ok());
    CHECK(reg_mid->width() == 0);  // the whole model
    CHECK(reg_low->width() == 0.5);
    CHECK(reg_low->shape().empty());  // not pruned yet
    // Each client's copy: version 1 from the seed, then the payloads (shape changes included).
    std::map<uint64_t, std::vector<float>> copy = {{1, v1}, {2, v1}};
    std::map<uint64_t, uint32_t> version = {{1, 1}, {2, 1}};
    std::map<uint64_t, std::vector<uint32_t>> shape = {{1, sizes}, {2, sizes}};
    auto answer = [&](uint64_t conn) {
      const v1::Envelope* task = rig->transport.Last(conn, v1::Envelope::kTask);
      const v1::Envelope* model = rig->transport.Last(conn, v1::Envelope::kModel);
      REQUIRE(task != nullptr);
      REQUIRE(model != nullptr);
      const auto& bytes = model->model().payload();
      std::vector<uint32_t> new_sizes;
      auto v = ApplyModelPayload(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
                                 version[conn], copy[conn], static_cast<uint32_t>(copy[conn].size()), &new_sizes);
      REQUIRE_MESSAGE(v.ok(), v.error().ToString());
      version[conn] = *v;
      if (!new_sizes.empty()) shape[conn] = new_sizes;
      // The narrow client sends an update of its nested sub-network only.
      const size_t dim = conn == 2 ? MakeNestedNetwork(shape[conn], 0.5).map.size() : copy[conn].size();
      std::vector<float> delta(dim, 0.0f);
      for (size_t i = 0; i < dim; i += 5) delta[i] = 0.01f;
      UplinkConfig uc;
      uc.density = 0.02;
      return UpdateFor(*task, delta, uc);
    };
    d.Tick(0);
    d.OnUpdate(1, answer(1), 1);
    d.OnUpdate(2, answer(2), 1);
    d.Tick(2);
    REQUIRE(d.records().size() == 1);
    CHECK(d.records()[0].completed == 2);
    // Pruned after round 1: version 2 is the round's, version 3 the pruned model, both in the store.
    CHECK(d.version() == 3);
    const size_t pruned_dim = d.global_model().size();
    CHECK(pruned_dim < full_dim);
    auto stored = rig->store->LoadRun(rig->cfg.run_id);
    REQUIRE(stored.ok());
    REQUIRE(stored->has_value());
    CHECK((*stored)->version == 3);
    CHECK((*stored)->model.size() == pruned_dim);
    // A client registering now learns the pruned shape.
    auto reg_late = d.OnHello(3, "late", MakeHello("late"), 2);
    REQUIRE(reg_late.ok());
    CHECK(reg_late->dim() == pruned_dim);
    auto late_shape = DecodeShapeChange(std::span(reinterpret_cast<const uint8_t*>(reg_late->shape().data()),
                                                  reg_late->shape().size()));
    REQUIRE(late_shape.ok());
    CHECK(MlpParamCount(late_shape->NewSizes()) == pruned_dim);
    d.OnDisconnect(3, 2);  // not part of round 2
    // Round 2: the payload's shape change brings both clients to the pruned model, bit for bit.
    d.Tick(3);
    const v1::Envelope* task_low = rig->transport.Last(2, v1::Envelope::kTask);
    REQUIRE(task_low != nullptr);
    REQUIRE(task_low->task().round() == 2);
    d.OnUpdate(1, answer(1), 4);
    d.OnUpdate(2, answer(2), 4);
    CHECK(shape[1] == late_shape->NewSizes());
    CHECK(shape[2] == late_shape->NewSizes());
    CHECK(copy[2].size() == pruned_dim);
    d.Tick(5);
    REQUIRE(d.records().size() == 2);
    CHECK(d.records()[1].completed == 2);
  }

  TEST_CASE("widths.rolling on the coordinator: Register says so, and a narrow client's update lands on the round's rolling window") {
    auto rig = MakeRig({"rounds=1", "model=\"mlp\"", "round.clients_per_round=1", "round.min_clients=1",
                        "round.deadline_s=100", "eval.examples=100", "server.averaging=\"support\"",
                        "widths.devices={phone-low=0.5}", "widths.rolling=true"});
    RoundDriver& d = *rig->driver;
    const std::vector<float> v1(d.global_model().begin(), d.global_model().end());
    const std::vector<uint32_t> sizes = {784, 200, 200, 10};
    v1::Hello low = MakeHello("low");
    low.set_device_class("phone-low");
    auto reg_low = d.OnHello(1, "low", low, 0);
    REQUIRE(reg_low.ok());
    CHECK(reg_low->width() == 0.5);
    CHECK(reg_low->rolling_width());
    d.Tick(0);
    const v1::Envelope* task = rig->transport.Last(1, v1::Envelope::kTask);
    REQUIRE(task != nullptr);
    REQUIRE(task->task().round() == 1);
    // Round 1's window starts at unit 1 of each hidden layer (the round mod 200), not at unit 0.
    const std::vector<uint32_t> window = MakeNestedNetwork(sizes, 0.5, task->task().round()).map;
    const std::vector<uint32_t> first = MakeNestedNetwork(sizes, 0.5).map;
    REQUIRE(window != first);
    // The update moves only the window's coordinates outside the first units (unit 100's weights, mostly).
    const std::set<uint32_t> in_window(window.begin(), window.end());
    const std::set<uint32_t> in_first(first.begin(), first.end());
    std::vector<float> delta(window.size(), 0.0f);
    size_t sent = 0;
    for (size_t i = 0; i < delta.size(); ++i) {
      if (in_first.contains(window[i])) continue;
      delta[i] = 0.01f;
      ++sent;
    }
    REQUIRE(sent > 0);
    UplinkConfig uc;
    uc.density = 0.02;
    d.OnUpdate(1, UpdateFor(*task, delta, uc), 1);
    d.Tick(2);
    REQUIRE(d.records().size() == 1);
    CHECK(d.records()[0].completed == 1);
    // What moved is where the window's map put it: outside the first units (fixed slices would have moved those).
    size_t moved = 0;
    for (uint32_t j = 0; j < v1.size(); ++j) {
      if (d.global_model()[j] == v1[j]) continue;
      ++moved;
      CHECK(in_window.contains(j));
      CHECK(!in_first.contains(j));
    }
    CHECK(moved > 0);
  }

  TEST_CASE("pipeline = secure: the driver relays the SecAgg+ stages, refuses messages of another round or stage, and the engine gets the survivors' exact sum") {
    // The clients are the core's SecureAggClient driven by the test (no agent):
    // the driver's side is what is under test; tests/coordinator/service_e2e_test.cpp runs real agents.
    auto rig = MakeRig({"rounds=1", "model=\"logreg\"", "pipeline=\"secure\"", "round.clients_per_round=4",
                        "round.min_clients=4", "eval.examples=100", "secure.bits=16", "secure.debug_dump=true",
                        "secure.stage_timeout_s=5", "round.deadline_s=100"});
    RoundDriver& d = *rig->driver;
    for (uint64_t c = 1; c <= 4; ++c) {
      std::string name = "c";  // not "c" + std::to_string(c): GCC 12 warns (-Wrestrict) on that inlined insert
      name += std::to_string(c);
      REQUIRE(d.OnHello(c, name, MakeHello(name), 0).ok());
    }
    d.Tick(0);
    std::map<uint64_t, privacy::SecureAggClient> clients;
    std::map<uint64_t, SecureTaskPlan> plans;
    for (uint64_t c = 1; c <= 4; ++c) {
      const v1::Envelope* task = rig->transport.Last(c, v1::Envelope::kTask);
      REQUIRE(task != nullptr);
      REQUIRE(task->task().has_secagg());
      auto plan = FromWire(task->task().secagg(), 1);
      REQUIRE(plan.ok());
      auto client = privacy::SecureAggClient::Create(plan->round, plan->position);
      REQUIRE(client.ok());
      clients.emplace(c, std::move(*client));
      plans[c] = *plan;
    }
    // Stages 3 and 5 carry the protocol CPU a client reports (0.25 s each)
    // and its FLOPs (500 with the masked input, 1000 for stages 4-5).
    auto send = [&](uint64_t c, uint32_t round, uint32_t stage, std::span<const uint8_t> body) {
      v1::SecAgg m;
      m.set_round(round);
      m.set_stage(stage);
      m.set_body(reinterpret_cast<const char*>(body.data()), body.size());
      if (stage == 3 || stage == 5) {
        m.set_protocol_cpu_s(0.25);
        m.mutable_ledger()->set_flops(stage == 3 ? 500 : 1000);
      }
      d.OnSecAgg(c, m, 1);
    };
    auto body_of = [&](uint64_t c, uint32_t stage) {
      const v1::Envelope* e = rig->transport.Last(c, v1::Envelope::kSecagg);
      REQUIRE(e != nullptr);
      REQUIRE(e->secagg().stage() == stage);
      const std::string& b = e->secagg().body();
      return std::vector<uint8_t>(b.begin(), b.end());
    };
    auto last_error = [&](uint64_t c) {
      const v1::Envelope* e = rig->transport.Last(c, v1::Envelope::kError);
      return e != nullptr ? e->error().message() : std::string();
    };
    // Stage 1, with refusals that leave the round as it was.
    auto keys1 = clients.at(1).AdvertiseKeys();
    REQUIRE(keys1.ok());
    send(1, 2, 1, *keys1);
    CHECK(last_error(1).find("for round 2: the open secure round is 1") != std::string::npos);
    send(1, 1, 3, *keys1);
    CHECK(last_error(1).find("round 1 is in stage 1") != std::string::npos);
    send(1, 1, 1, std::vector<uint8_t>(600, 0));  // over the 512 bytes of an identity-bound advertisement
    CHECK(last_error(1).find("over the stage's bound") != std::string::npos);
    send(1, 1, 1, *keys1);
    send(1, 1, 1, *keys1);
    CHECK(last_error(1).find("duplicate") != std::string::npos);
    for (uint64_t c = 2; c <= 4; ++c) {
      CHECK(rig->transport.Last(c, v1::Envelope::kSecagg) == nullptr);  // the stage waits for every client
      auto keys = clients.at(c).AdvertiseKeys();
      REQUIRE(keys.ok());
      send(c, 1, 1, *keys);
    }
    // Stage 2: the key directories came; everyone shares keys.
    for (uint64_t c = 1; c <= 4; ++c) {
      auto shares = clients.at(c).ShareKeys(body_of(c, 2));
      REQUIRE(shares.ok());
      send(c, 1, 2, *shares);
    }
    // Stage 3: client 4 vanishes after sharing its keys; the others mask small ring inputs.
    d.OnDisconnect(4, 1);
    const uint32_t length = plans[1].round.length;
    const uint64_t mask = (uint64_t{1} << 16) - 1;
    std::vector<uint64_t> expect(length, 0);
    Rng rng(5);
    for (uint64_t c = 1; c <= 3; ++c) {
      std::vector<uint64_t> input(length);
      for (uint64_t& v : input) v = static_cast<uint64_t>(static_cast<int64_t>(rng.UniformInt(201)) - 100) & mask;
      for (uint32_t j = 0; j < length; ++j) expect[j] = (expect[j] + input[j]) & mask;
      auto masked = clients.at(c).MaskedInput(body_of(c, 3), input);
      REQUIRE(masked.ok());
      send(c, 1, 3, *masked);
    }
    CHECK(d.Metrics().round_open);
    // Stage 4: the survivors sign the one survivor list; stage 5: they reveal
    // their shares against their neighbours' signatures; the round closes with their sum.
    for (uint64_t c = 1; c <= 3; ++c) {
      auto signature = clients.at(c).SignSurvivors(body_of(c, 4));
      REQUIRE(signature.ok());
      send(c, 1, 4, *signature);
    }
    for (uint64_t c = 1; c <= 3; ++c) {
      auto response = clients.at(c).Unmask(body_of(c, 5));
      REQUIRE(response.ok());
      send(c, 1, 5, *response);
    }
    REQUIRE_FALSE(d.fatal().has_value());
    REQUIRE(d.records().size() == 1);
    CHECK(d.records()[0].completed == 3);
    CHECK(d.records()[0].selected == 4);
    CHECK(d.version() == 2);
    std::ifstream in(rig->dir.Path("run") + "/secagg_sum_r1.bin", std::ios::binary);
    std::vector<uint64_t> sum(length, 0);
    for (uint64_t& v : sum) {
      for (int b = 0; b < 8; ++b) v |= static_cast<uint64_t>(static_cast<uint8_t>(in.get())) << (8 * b);
    }
    CHECK(in.good());
    CHECK(sum == expect);
    // The vanished client's keys and shares are on its ledger row.
    auto ledger = rig->store->Ledger(rig->cfg.run_id);
    REQUIRE(ledger.ok());
    uint64_t up = 0, down = 0, payload = 0;
    for (const LedgerRow& row : *ledger) {
      CHECK(row.bytes_up > 0);
      if (row.client_id == 4) CHECK(row.outcome == ClientOutcome::kDropped);
      // Stage 4's CPU (1000 FLOPs) on the survivors' rows beside the masked input's 500.
      CHECK(row.flops == (row.client_id == 4 ? 0 : 1500));
      up += row.bytes_up;
      down += row.bytes_down;
      const v1::Envelope* model = rig->transport.Last(row.client_id, v1::Envelope::kModel);
      REQUIRE(model != nullptr);
      payload += model->model().payload().size();
    }
    // rounds.csv's protocol columns: every byte up is a protocol message, every
    // byte down but the model payload; the CPU the three survivors reported.
    const RoundRecord& rec = d.records()[0];
    CHECK(rec.protocol_bytes_up == up);
    CHECK(rec.protocol_bytes_down == down - payload);
    CHECK(rec.protocol_bytes_down > 0);
    CHECK(rec.protocol_cpu_seconds == 1.5);
    std::ifstream csv(rig->dir.Path("run") + "/rounds.csv");
    const std::string csv_text((std::istreambuf_iterator<char>(csv)), std::istreambuf_iterator<char>());
    auto parsed = ParseRoundsCsv(csv_text);
    REQUIRE(parsed.ok());
    REQUIRE(parsed->size() == 1);
    CHECK((*parsed)[0].protocol_bytes_up == rec.protocol_bytes_up);
    CHECK((*parsed)[0].protocol_bytes_down == rec.protocol_bytes_down);
    CHECK((*parsed)[0].protocol_cpu_seconds == 1.5);
    // summary.json's totals, as frugal-sim's.
    auto metric = [&](const std::string& key) { return SummaryMetric(*rig, key); };
    CHECK(metric("secure_protocol_bytes_up") == static_cast<double>(up));
    CHECK(metric("secure_protocol_bytes_down") == static_cast<double>(down - payload));
    CHECK(metric("secure_client_cpu_seconds") == 1.5);
    CHECK(metric("secure_server_cpu_seconds") > 0);
    CHECK(metric("secure_failed_rounds") == 0);
  }

  TEST_CASE("pipeline = secure with secure.guided: round 2's tasks carry the guide of round 1's public broadcast step, or tell a client keeping its steps to derive it") {
  // secure.derive_guide: clients 1 and 2 keep their last 20 steps (Hello.history_steps), 3 and 4 are older agents.
  for (const bool derive : {false, true}) {
    CAPTURE(derive);
    // guide_rounds = 1 and blocks of 1: the guide is the coordinates of the one
    // step broadcast so far (all of them: 0.5% of 7,850 is under the 10% guide),
    // i.e. exactly where the global model changed from version 1 to 2.
    auto rig = MakeRig({"rounds=2", "model=\"logreg\"", "pipeline=\"secure\"", "round.clients_per_round=4",
                        "round.min_clients=4", "eval.examples=100", "secure.bits=16", "secure.stage_timeout_s=5",
                        "round.deadline_s=100", "secure.guided=0.1", "secure.guide_rounds=1", "secure.guide_block=1",
                        derive ? "secure.derive_guide=true" : "secure.derive_guide=false"});
    RoundDriver& d = *rig->driver;
    for (uint64_t c = 1; c <= 4; ++c) {
      std::string name = "c";
      name += std::to_string(c);
      v1::Hello hello = MakeHello(name);
      if (c <= 2) hello.set_history_steps(20);
      REQUIRE(d.OnHello(c, name, hello, 0).ok());
    }
    d.Tick(0);
    const std::vector<float> version1(d.global_model().begin(), d.global_model().end());
    std::map<uint64_t, privacy::SecureAggClient> clients;
    uint32_t length = 0;
    for (uint64_t c = 1; c <= 4; ++c) {
      const v1::Envelope* task = rig->transport.Last(c, v1::Envelope::kTask);
      REQUIRE(task != nullptr);
      auto plan = FromWire(task->task().secagg(), 1);
      REQUIRE(plan.ok());
      CHECK(DecodeSupportGuide(plan->support_guide, static_cast<uint32_t>(version1.size()), plan->round.length)->empty());
      auto client = privacy::SecureAggClient::Create(plan->round, plan->position);
      REQUIRE(client.ok());
      clients.emplace(c, std::move(*client));
      length = plan->round.length;
    }
    auto send = [&](uint64_t c, uint32_t stage, std::span<const uint8_t> body) {
      v1::SecAgg m;
      m.set_round(1);
      m.set_stage(stage);
      m.set_body(reinterpret_cast<const char*>(body.data()), body.size());
      d.OnSecAgg(c, m, 1);
    };
    auto body_of = [&](uint64_t c, uint32_t stage) {
      const v1::Envelope* e = rig->transport.Last(c, v1::Envelope::kSecagg);
      REQUIRE(e != nullptr);
      REQUIRE(e->secagg().stage() == stage);
      const std::string& b = e->secagg().body();
      return std::vector<uint8_t>(b.begin(), b.end());
    };
    for (uint64_t c = 1; c <= 4; ++c) send(c, 1, *clients.at(c).AdvertiseKeys());
    for (uint64_t c = 1; c <= 4; ++c) send(c, 2, *clients.at(c).ShareKeys(body_of(c, 2)));
    Rng rng(9);
    for (uint64_t c = 1; c <= 4; ++c) {
      std::vector<uint64_t> input(length);
      for (uint64_t& v : input) v = static_cast<uint64_t>(static_cast<int64_t>(rng.UniformInt(201)) - 100) & 0xffff;
      send(c, 3, *clients.at(c).MaskedInput(body_of(c, 3), input));
    }
    for (uint64_t c = 1; c <= 4; ++c) send(c, 4, *clients.at(c).SignSurvivors(body_of(c, 4)));
    for (uint64_t c = 1; c <= 4; ++c) send(c, 5, *clients.at(c).Unmask(body_of(c, 5)));
    REQUIRE_FALSE(d.fatal().has_value());
    REQUIRE(d.version() == 2);
    std::vector<uint32_t> changed;
    for (uint32_t i = 0; i < version1.size(); ++i) {
      if (d.global_model()[i] != version1[i]) changed.push_back(i);
    }
    REQUIRE(!changed.empty());
    for (double t = 1; t < 100 && rig->transport.Last(1, v1::Envelope::kTask)->task().round() != 2; t += 1) d.Tick(t);
    for (uint64_t c = 1; c <= 4; ++c) {
      const v1::Envelope* task = rig->transport.Last(c, v1::Envelope::kTask);
      REQUIRE(task != nullptr);
      REQUIRE(task->task().round() == 2);
      auto plan = FromWire(task->task().secagg(), 2);
      REQUIRE(plan.ok());
      const auto dim = static_cast<uint32_t>(version1.size());
      if (derive && c <= 2) {
        // Told to derive it: from the one step the round's payload (a chain from version 1) carries.
        CHECK(plan->support_guide.empty());
        REQUIRE(plan->guide_steps == 1);
        const v1::Envelope* model = rig->transport.Last(c, v1::Envelope::kModel);
        REQUIRE(model != nullptr);
        const std::string& b = model->model().payload();
        auto steps = ChainPayloadSteps(std::span(reinterpret_cast<const uint8_t*>(b.data()), b.size()), dim);
        REQUIRE(steps.ok());
        privacy::SecurePipelineConfig gc;
        gc.guided = plan->guided;
        gc.guide_rounds = plan->guide_steps;
        gc.guide_decay = plan->guide_decay;
        gc.guide_block = plan->guide_block;
        CHECK(ExpandGuideBlocks(privacy::GuideBlocksFromSteps(*steps, dim, gc, plan->density), dim, plan->guide_block) ==
              changed);
        continue;
      }
      CHECK(plan->guide_steps == 0);
      auto guide = DecodeSupportGuide(plan->support_guide, dim, plan->round.length);
      REQUIRE(guide.ok());
      CHECK(*guide == changed);
    }
  }
  }

  TEST_CASE("pipeline = secure: a stage that misses its deadline with too few clients fails the round cleanly, recorded, model unchanged") {
    auto rig = MakeRig({"rounds=2", "model=\"logreg\"", "pipeline=\"secure\"", "round.clients_per_round=4",
                        "round.min_clients=4", "eval.examples=100", "secure.stage_timeout_s=5"});
    RoundDriver& d = *rig->driver;
    for (uint64_t c = 1; c <= 4; ++c) {
      std::string name = "c";  // not "c" + std::to_string(c): GCC 12 warns (-Wrestrict) on that inlined insert
      name += std::to_string(c);
      REQUIRE(d.OnHello(c, name, MakeHello(name), 0).ok());
    }
    d.Tick(0);
    // Only two advertise keys; the threshold needs three.
    for (uint64_t c = 1; c <= 2; ++c) {
      const v1::Envelope* task = rig->transport.Last(c, v1::Envelope::kTask);
      REQUIRE(task != nullptr);
      auto plan = FromWire(task->task().secagg(), 1);
      REQUIRE(plan.ok());
      auto client = privacy::SecureAggClient::Create(plan->round, plan->position);
      REQUIRE(client.ok());
      auto keys = client->AdvertiseKeys();
      REQUIRE(keys.ok());
      v1::SecAgg m;
      m.set_round(1);
      m.set_stage(1);
      m.set_body(reinterpret_cast<const char*>(keys->data()), keys->size());
      d.OnSecAgg(c, m, 1);
    }
    d.Tick(4);
    CHECK(d.records().empty());  // before the stage deadline
    d.Tick(6);
    REQUIRE_FALSE(d.fatal().has_value());
    REQUIRE(d.records().size() == 1);
    CHECK(d.records()[0].completed == 0);
    CHECK(d.version() == 1);
    // The store keeps the round's protocol: the two clients' keys, the server's CPU, the failure.
    const RoundRecord first = d.records()[0];
    CHECK(first.protocol_bytes_up > 0);
    auto rows = rig->store->Rounds(rig->cfg.run_id);
    REQUIRE(rows.ok());
    REQUIRE(rows->size() == 1);
    CHECK((*rows)[0].protocol_bytes_up == first.protocol_bytes_up);
    CHECK((*rows)[0].protocol_bytes_down == first.protocol_bytes_down);
    CHECK((*rows)[0].protocol_server_cpu_s > 0);
    CHECK((*rows)[0].secure_failed);
    // The next round opens and plans its own protocol.
    d.Tick(6 + rig->cfg.round_interval_s);
    CHECK(d.Metrics().round_open);
    CHECK(d.Metrics().round == 2);

    // A restart before round 2 ends: the resumed run's records and summary.json
    // totals still hold round 1's protocol, read back from the store.
    auto resumed = RestartDriver(*rig);
    REQUIRE(resumed->records().size() == 1);
    CHECK(resumed->records()[0].protocol_bytes_up == first.protocol_bytes_up);
    CHECK(resumed->records()[0].protocol_bytes_down == first.protocol_bytes_down);
    for (uint64_t c = 11; c <= 14; ++c) {
      std::string name = "c";
      name += std::to_string(c);
      REQUIRE(resumed->OnHello(c, name, MakeHello(name), 0).ok());
    }
    resumed->Tick(0);
    REQUIRE(resumed->Metrics().round_open);
    resumed->Tick(6);  // no client advertised keys: round 2 fails too, and the run is over
    REQUIRE(resumed->records().size() == 2);
    REQUIRE(resumed->done());
    rows = rig->store->Rounds(rig->cfg.run_id);
    REQUIRE(rows.ok());
    REQUIRE(rows->size() == 2);
    auto metric = [&](const std::string& key) { return SummaryMetric(*rig, key); };
    CHECK(metric("secure_failed_rounds") == 2);
    CHECK(metric("secure_protocol_bytes_up") ==
          static_cast<double>(first.protocol_bytes_up + resumed->records()[1].protocol_bytes_up));
    CHECK(metric("secure_protocol_bytes_down") ==
          static_cast<double>(first.protocol_bytes_down + resumed->records()[1].protocol_bytes_down));
    CHECK(metric("secure_server_cpu_seconds") ==
          doctest::Approx((*rows)[0].protocol_server_cpu_s + (*rows)[1].protocol_server_cpu_s).epsilon(1e-6));
    CHECK(metric("secure_server_cpu_seconds") > (*rows)[1].protocol_server_cpu_s);
  }

  TEST_CASE("a client holding nothing is told to build version 1 from the seed, so round 1 sends no full model") {
    auto rig = MakeRig({"rounds=1", "model=\"logreg\"", "round.clients_per_round=1", "eval.examples=100", "seed=7"});
    auto reg = rig->driver->OnHello(1, "alice", MakeHello("alice"), 0);
    REQUIRE(reg.ok());
    CHECK(reg->seed_init());
    CHECK(reg->seed() == 7);
    rig->driver->Tick(0);
    const v1::Envelope* model = rig->transport.Last(1, v1::Envelope::kModel);
    REQUIRE(model != nullptr);
    CHECK(model->model().from_version() == 1);
    const auto& bytes = model->model().payload();
    std::vector<std::span<const uint8_t>> pieces;
    auto h = ParseModelPayload(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 7850, &pieces);
    REQUIRE(h.ok());
    CHECK(h->kind == ModelPayloadKind::kChain);
    CHECK(bytes.size() < 100);  // an empty chain; a full 8-bit logreg model is about 8 KB
    // The copy the client builds is the coordinator's version 1, bit for bit.
    auto m = MakeModel("logreg", 784, 10);
    REQUIRE(m.ok());
    std::vector<float> v1(7850);
    (*m)->InitParams(v1, StreamSeed(7, SeedStream::kInit));
    CHECK(std::memcmp(v1.data(), rig->driver->global_model().data(), 4 * v1.size()) == 0);

    auto dense = MakeRig({"rounds=1", "model=\"logreg\"", "pipeline=\"dense\"", "round.clients_per_round=1"});
    auto dense_reg = dense->driver->OnHello(1, "alice", MakeHello("alice"), 0);
    REQUIRE(dense_reg.ok());
    CHECK_FALSE(dense_reg->seed_init());
  }

  TEST_CASE("downlink.merge_chains on the coordinator: a client that missed three steps gets one merged payload (format version 1, 2, or 3 sent as 2 without a guide) and rebuilds the global model bit for bit") {
  for (int format : {1, 2, 3}) {
    CAPTURE(format);
    held.clear();  // the test's clients' copies: each format starts from nothing
    // Round 4 opens for alice as round 3 closes and fails when she leaves; round 5 is bob's.
    auto rig = MakeRig({"rounds=5", "model=\"logreg\"", "round.clients_per_round=1", "data.eval_examples=200",
                        "uplink.density=0.1", "downlink.merge_chains=true",
                        "downlink.merge_version=" + std::to_string(format)});
    RoundDriver* driver = rig->driver.get();
    REQUIRE(driver->OnHello(1, "alice", MakeHello("alice"), 0).ok());
    for (int r = 1; r <= 3; ++r) {
      driver->Tick(r);
      REQUIRE(rig->transport.Last(1, v1::Envelope::kTask) != nullptr);
      driver->OnUpdate(1, GoodUpdate(rig->transport, 1, 0.01f * static_cast<float>(r)), r);
    }
    REQUIRE(driver->version() == 4);
    driver->OnDisconnect(1, 4);
    // bob holds nothing: version 1 from the seed, then versions 2-4 in one merged piece.
    REQUIRE(driver->OnHello(2, "bob", MakeHello("bob"), 4).ok());
    driver->Tick(5);
    driver->Tick(6);
    const v1::Envelope* model = rig->transport.Last(2, v1::Envelope::kModel);
    REQUIRE(model != nullptr);
    const auto& bytes = model->model().payload();
    std::vector<std::span<const uint8_t>> pieces;
    auto h = ParseModelPayload(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 7850, &pieces);
    REQUIRE(h.ok());
    CHECK(h->kind == ModelPayloadKind::kMerged);
    CHECK(h->from_version == 1);
    CHECK(h->to_version == 4);
    // The merged piece's codec version; with no support guide (not the secure pipeline)
    // version 3 would only add its fixed fields, so version 2 goes.
    CHECK(pieces[0][5] == std::min(format, 2));
    const v1::Update up = GoodUpdate(rig->transport, 2, 0.01f);  // applies the payload as the agent does
    CHECK(held[2].first == 4);
    CHECK(std::memcmp(held[2].second.data(), driver->global_model().data(), 4 * 7850) == 0);
    driver->OnUpdate(2, up, 7);
    CHECK(driver->done());
    CHECK(driver->version() == 5);
  }
  }

  TEST_CASE("ledger rows keep the profiles' ids, whatever spelling the client used") {
    auto rig = MakeRig({"rounds=1", "model=\"logreg\"", "round.clients_per_round=1", "eval.examples=100"});
    v1::Hello h = MakeHello("alice");
    h.set_device_class("PHONE-MID");
    h.set_radio("WiFi");
    h.set_region("WORLD");
    REQUIRE(rig->driver->OnHello(1, "alice", h, 0).ok());
    rig->driver->Tick(0);
    rig->driver->OnUpdate(1, GoodUpdate(rig->transport, 1, 0.01f), 1);
    REQUIRE(rig->driver->done());
    auto ledger = rig->store->Ledger(rig->cfg.run_id);
    REQUIRE(ledger.ok());
    REQUIRE(ledger->size() == 1);
    CHECK((*ledger)[0].device == "phone-mid");
    CHECK((*ledger)[0].radio == "wifi");
    CHECK((*ledger)[0].region == "world");
  }

  TEST_CASE("energy-aware selection estimates the upload from the previous round's updates, not the download") {
    // Two rounds of 1 of 2 clients; the run directory's rounds.csv says what round 1 moved.
    auto rig = MakeRig({"rounds=2", "model=\"logreg\"", "round.clients_per_round=1", "round.min_clients=2",
                        "round.selection=\"energy\"", "eval.examples=100"});
    RoundDriver* driver = rig->driver.get();
    REQUIRE(driver->OnHello(1, "alice", MakeHello("alice"), 0).ok());
    REQUIRE(driver->OnHello(2, "bob", MakeHello("bob"), 0).ok());
    driver->Tick(0);
    for (uint64_t conn : {1, 2}) {
      if (driver->Busy(conn)) driver->OnUpdate(conn, GoodUpdate(rig->transport, conn, 0.01f), 1);
    }
    REQUIRE(driver->records().size() == 1);
    const RoundRecord& r1 = driver->records()[0];
    REQUIRE(r1.bytes_up > 0);
    REQUIRE(r1.bytes_up != r1.bytes_down);
    // The planner the driver uses, fed the same round, estimates what the driver's did.
    RoundPlanner planner(rig->cfg, FlopCount{1, 1});
    planner.Observe(r1);
    const Candidate c{1, nullptr, nullptr, nullptr, 100};
    const ParticipationEstimate e = planner.Estimate(c, 0);
    CHECK(e.bytes_up == r1.bytes_up / r1.selected);
    CHECK(e.bytes_down == r1.bytes_down / r1.selected);
    // And the driver's own planner was fed: a restart resumes it from the stored round.
    auto rows = rig->store->Rounds(rig->cfg.run_id);
    REQUIRE(rows.ok());
    CHECK((*rows)[0].bytes_up == r1.bytes_up);
  }

  TEST_CASE("the old names of renamed keys still work, with a deprecation warning; both at once are refused") {
    auto old = ParseCoordinatorConfig("", "test", {"round.eval_every=3", "data.eval_examples=200"});
    REQUIRE(old.ok());
    CHECK(old->federated_eval_every == 3);
    CHECK(old->eval_examples == 200);
    CHECK(old->eval_every == 1);  // the server still evaluates every round
    REQUIRE(old->warnings.size() == 2);
    CHECK(old->warnings[0].find("deprecated") != std::string::npos);
    auto both = ParseCoordinatorConfig("", "test", {"round.eval_every=3", "eval.federated_every=2"});
    REQUIRE_FALSE(both.ok());
    CHECK(both.error().message().find("round.eval_every") != std::string::npos);
    auto run = ParseCoordinatorConfig("", "test", {"round.interval_s=5", "eval.every=2"});
    REQUIRE(run.ok());
    CHECK(run->round_interval_s == 5);
    CHECK(run->eval_every == 2);
    // run.toml holds the run keys, not the service's.
    const std::string toml = run->RunToml();
    CHECK(toml.find("[service]") == std::string::npos);
    CHECK(toml.find("interval_s = 5") != std::string::npos);
  }

  TEST_CASE("with server.release_ema the coordinator evaluates and records the moving average of the versions") {
    auto rig = MakeRig({"rounds=1", "model=\"logreg\"", "round.clients_per_round=1", "eval.examples=300",
                        "server.release_ema=0.5", "uplink.density=0.1"});  // GoodUpdate's density
    RoundDriver* driver = rig->driver.get();
    const std::vector<float> v1(driver->global_model().begin(), driver->global_model().end());
    REQUIRE(driver->OnHello(1, "alice", MakeHello("alice"), 0).ok());
    driver->Tick(0);
    driver->OnUpdate(1, GoodUpdate(rig->transport, 1, 0.05f), 1);
    REQUIRE(driver->done());
    const auto v2 = driver->global_model();
    const auto release = driver->release_model();
    REQUIRE(release.size() == v1.size());
    CHECK(std::memcmp(release.data(), v2.data(), 4 * v1.size()) != 0);
    for (size_t j = 0; j < v1.size(); ++j) {
      CHECK(release[j] == static_cast<float>(0.5 * double{v1[j]} + 0.5 * double{v2[j]}));
    }
    auto model = MakeModel("logreg", 784, 10);
    REQUIRE(model.ok());
    auto ws = (*model)->MakeWorkspace();
    std::vector<uint32_t> first(300);
    for (uint32_t i = 0; i < 300; ++i) first[i] = i;
    auto of_release = Evaluate(**model, release, rig->test, first, *ws);
    REQUIRE(of_release.ok());
    auto rows = rig->store->Rounds(rig->cfg.run_id);
    REQUIRE(rows.ok());
    REQUIRE(rows->size() == 1);
    CHECK((*rows)[0].accuracy == of_release->accuracy);
  }
}

}  // namespace frugal::coordinator

namespace frugal::coordinator {

TEST_SUITE("coordinator") {
  TEST_CASE("federated evaluation every eval_every rounds sends the new model and weights clients' results") {
    auto rig = MakeRig({"rounds=3", "model=\"logreg\"", "round.clients_per_round=2",
                                                   "round.min_clients=2", "round.deadline_s=100",
                                                   "round.eval_every=2", "data.eval_examples=200",
                                                   "uplink.density=0.1"});
    RoundDriver& driver = *rig->driver;
    FakeTransport& transport = rig->transport;
    testing::TempDir& dir = rig->dir;
    REQUIRE(driver.OnHello(1, "alice", MakeHello("alice"), 0).ok());
    REQUIRE(driver.OnHello(2, "bob", MakeHello("bob"), 0).ok());
    driver.Tick(0);

    // Round 1 is not a multiple of eval_every: no evaluation.
    driver.OnUpdate(1, GoodUpdate(transport, 1, 0.01f), 1);
    driver.OnUpdate(2, GoodUpdate(transport, 2, 0.02f), 1);
    REQUIRE(driver.Metrics().rounds_completed == 1);
    CHECK(transport.Last(1, v1::Envelope::kEvalTask) == nullptr);

    // Round 2 closes: both clients are asked to evaluate version 3, and the
    // payload that follows brings their copy exactly to it.
    driver.OnUpdate(1, GoodUpdate(transport, 1, 0.01f), 2);
    driver.OnUpdate(2, GoodUpdate(transport, 2, 0.02f), 2);
    REQUIRE(driver.Metrics().rounds_completed == 2);
    REQUIRE(driver.version() == 3);
    const std::vector<float> v3(driver.global_model().begin(), driver.global_model().end());
    for (uint64_t conn : {1, 2}) {
      const auto& msgs = transport.sent[conn];
      auto at = std::find_if(msgs.begin(), msgs.end(),
                             [](const v1::Envelope& e) { return e.body_case() == v1::Envelope::kEvalTask; });
      REQUIRE(at != msgs.end());
      CHECK(at->eval_task().round() == 2);
      CHECK(at->eval_task().model_version() == 3);
      REQUIRE(at + 1 != msgs.end());
      REQUIRE((at + 1)->body_case() == v1::Envelope::kModel);
      CHECK((at + 1)->model().round() == 2);
      auto& [version, params] = held[conn];
      const auto& bytes = (at + 1)->model().payload();
      auto v = ApplyModelPayload(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), version,
                                 params, 7850);
      REQUIRE(v.ok());
      version = *v;
      CHECK(version == 3);
      // The copy is the 8-bit full download of v1 plus the exact steps since:
      // the server's v3 up to that quantization error.
      double diff = 0, norm = 0;
      for (size_t i = 0; i < v3.size(); ++i) {
        diff += (params[i] - v3[i]) * (params[i] - v3[i]);
        norm += v3[i] * v3[i];
      }
      CHECK(std::sqrt(diff / norm) < 0.02);
    }
    // Round 3 is already open; its task needs no further download for clients at v3.
    CHECK(driver.Metrics().round == 3);
    CHECK(transport.Last(1, v1::Envelope::kTask)->task().model_version() == 3);

    // A result for another evaluation is ignored; the real ones are weighted by examples.
    v1::EvalResult stale;
    stale.set_round(1);
    stale.set_model_version(2);
    stale.set_examples(100);
    stale.set_accuracy(1.0);
    driver.OnEvalResult(1, stale, 3);
    CHECK(driver.federated_evals().empty());
    v1::EvalResult a = stale, b = stale;
    a.set_round(2);
    b.set_round(2);
    a.set_model_version(3);
    a.set_accuracy(0.5);
    a.set_loss(1.0);
    a.set_examples(25);
    b.set_model_version(3);
    b.set_accuracy(0.9);
    b.set_loss(0.2);
    b.set_examples(75);
    driver.OnEvalResult(1, a, 3);
    CHECK(driver.federated_evals().empty());  // bob has not answered yet
    driver.OnEvalResult(2, b, 3);
    REQUIRE(driver.federated_evals().size() == 1);
    const FederatedEval& fe = driver.federated_evals()[0];
    CHECK(fe.round == 2);
    CHECK(fe.model_version == 3);
    CHECK(fe.asked == 2);
    CHECK(fe.answered == 2);
    CHECK(fe.examples == 100);
    CHECK(fe.accuracy == doctest::Approx(0.8));
    CHECK(fe.loss == doctest::Approx(0.4));
    CHECK(fe.bytes_down > 0);
    REQUIRE(driver.Metrics().last_federated_accuracy.has_value());
    CHECK(*driver.Metrics().last_federated_accuracy == doctest::Approx(0.8));
    std::ifstream csv(dir.Path("run/federated_eval.csv"));
    std::string header, row;
    REQUIRE(std::getline(csv, header));
    REQUIRE(std::getline(csv, row));
    CHECK(header == "round,model_version,asked,answered,examples,accuracy,loss,bytes_down");
    CHECK(row.rfind("2,3,2,2,100,0.8,", 0) == 0);

    // Both evaluations are on the energy ledger, in the store: each client's
    // download, and a forward pass over the examples it evaluated.
    auto ledger = rig->store->Ledger(rig->cfg.run_id);
    REQUIRE(ledger.ok());
    std::map<uint64_t, LedgerRow> evals;
    for (const LedgerRow& r : *ledger) {
      if (r.outcome == ClientOutcome::kEvaluated) evals[r.client_id] = r;
    }
    REQUIRE(evals.size() == 2);
    uint64_t eval_bytes = 0;
    const double forward = (*MakeModel("logreg"))->flops_per_example().forward;
    for (const auto& [id, r] : evals) {
      CHECK(r.round == 2);
      CHECK(r.bytes_up == 0);
      CHECK(r.bytes_down > 0);
      CHECK(r.radio_j > 0);
      eval_bytes += r.bytes_down;
    }
    CHECK(eval_bytes == fe.bytes_down);
    std::vector<double> flops;
    for (const auto& [id, r] : evals) flops.push_back(r.flops);
    std::sort(flops.begin(), flops.end());
    CHECK(flops[0] == doctest::Approx(25 * forward));
    CHECK(flops[1] == doctest::Approx(75 * forward));

    // The training of round 3 still works from the evaluated copy.
    driver.OnUpdate(1, GoodUpdate(transport, 1, 0.01f), 4);
    driver.OnUpdate(2, GoodUpdate(transport, 2, 0.02f), 4);
    CHECK(driver.done());
    CHECK(driver.finished());  // round 3 is not a multiple of 2: nothing to wait for
  }

  TEST_CASE("eval.int8: clients are asked for an int8 evaluation, and only an answer that ran int8 is priced as int8") {
    auto rig = MakeRig({"rounds=2", "model=\"logreg\"", "round.clients_per_round=2", "round.min_clients=2",
                        "round.deadline_s=100", "eval.federated_every=1", "eval.int8=true", "data.eval_examples=200",
                        "uplink.density=0.1"});
    RoundDriver& driver = *rig->driver;
    FakeTransport& transport = rig->transport;
    REQUIRE(driver.OnHello(1, "alice", MakeHello("alice"), 0).ok());
    REQUIRE(driver.OnHello(2, "bob", MakeHello("bob"), 0).ok());
    driver.Tick(0);
    driver.OnUpdate(1, GoodUpdate(transport, 1, 0.01f), 1);
    driver.OnUpdate(2, GoodUpdate(transport, 2, 0.02f), 1);
    REQUIRE(driver.Metrics().rounds_completed == 1);
    const v1::Envelope* task = transport.Last(1, v1::Envelope::kEvalTask);
    REQUIRE(task != nullptr);
    CHECK(task->eval_task().int8());
    v1::EvalResult a, b;
    for (v1::EvalResult* e : {&a, &b}) {
      e->set_round(1);
      e->set_model_version(task->eval_task().model_version());
      e->set_accuracy(0.7);
      e->set_loss(1.0);
    }
    a.set_examples(25);
    a.set_int8(true);  // alice ran the int8 kernels
    b.set_examples(75);  // bob ran fp32 (an agent that cannot, or an older one)
    driver.OnEvalResult(1, a, 3);
    driver.OnEvalResult(2, b, 3);
    REQUIRE(driver.federated_evals().size() == 1);
    auto ledger = rig->store->Ledger(rig->cfg.run_id);
    REQUIRE(ledger.ok());
    auto profiles = EnergyProfiles::LoadDefault();
    REQUIRE(profiles.ok());
    const auto model = *MakeModel("logreg");
    const double int8_flops = 2.0 * 784 * 10;  // the int8 kernel's multiply-accumulates, twice
    size_t seen = 0;
    for (const LedgerRow& r : *ledger) {
      if (r.outcome != ClientOutcome::kEvaluated) continue;
      auto device = profiles->Device(r.device);
      REQUIRE(device.ok());
      ++seen;
      // Told apart by their examples: alice evaluated 25 in int8, bob 75 in fp32.
      if (r.flops == 25 * int8_flops) {
        CHECK(r.compute_j == doctest::Approx(r.flops * (*device)->joules_per_flop_int8));
      } else {
        CHECK(r.flops == 75 * model->flops_per_example().forward);
        CHECK(r.compute_j == doctest::Approx(r.flops * (*device)->joules_per_flop_fp32));
      }
    }
    CHECK(seen == 2);
  }

  TEST_CASE("a federated evaluation closes when an asked client vanishes, and the run finishes only after it") {
    auto rig = MakeRig({"rounds=1", "model=\"logreg\"", "round.clients_per_round=2",
                                                   "round.min_clients=2", "round.eval_every=1",
                                                   "data.eval_examples=200", "uplink.density=0.1"});
    RoundDriver& driver = *rig->driver;
    FakeTransport& transport = rig->transport;
    REQUIRE(driver.OnHello(1, "alice", MakeHello("alice"), 0).ok());
    REQUIRE(driver.OnHello(2, "bob", MakeHello("bob"), 0).ok());
    driver.Tick(0);
    driver.OnUpdate(1, GoodUpdate(transport, 1, 0.01f), 1);
    driver.OnUpdate(2, GoodUpdate(transport, 2, 0.02f), 1);
    REQUIRE(driver.done());
    CHECK_FALSE(driver.finished());  // waiting for the evaluation of the last round
    CHECK(driver.Metrics().state == "evaluating");
    REQUIRE(transport.Last(2, v1::Envelope::kEvalTask) != nullptr);
    v1::EvalResult r;
    r.set_round(1);
    r.set_model_version(driver.version());
    r.set_examples(50);
    r.set_accuracy(0.7);
    r.set_loss(0.9);
    driver.OnEvalResult(1, r, 2);
    CHECK_FALSE(driver.finished());
    driver.OnDisconnect(2, 2);
    CHECK(driver.finished());
    REQUIRE(driver.federated_evals().size() == 1);
    CHECK(driver.federated_evals()[0].answered == 1);
    CHECK(driver.federated_evals()[0].accuracy == doctest::Approx(0.7));
  }

  TEST_CASE("a client that could not reach the evaluated version answers without examples and is not waited for") {
    auto rig = MakeRig({"rounds=1", "model=\"logreg\"", "round.clients_per_round=2",
                                                   "round.min_clients=2", "round.eval_every=1",
                                                   "data.eval_examples=200", "uplink.density=0.1"});
    RoundDriver& driver = *rig->driver;
    FakeTransport& transport = rig->transport;
    REQUIRE(driver.OnHello(1, "alice", MakeHello("alice"), 0).ok());
    REQUIRE(driver.OnHello(2, "bob", MakeHello("bob"), 0).ok());
    driver.Tick(0);
    driver.OnUpdate(1, GoodUpdate(transport, 1, 0.01f), 1);
    driver.OnUpdate(2, GoodUpdate(transport, 2, 0.02f), 1);
    REQUIRE_FALSE(driver.finished());
    v1::EvalResult good;
    good.set_round(1);
    good.set_model_version(driver.version());
    good.set_examples(40);
    good.set_accuracy(0.6);
    good.set_loss(1.1);
    v1::EvalResult failed;  // what an agent sends when the payload did not apply
    failed.set_round(1);
    failed.set_model_version(0);
    driver.OnEvalResult(1, good, 2);
    driver.OnEvalResult(2, failed, 2);
    CHECK(driver.finished());
    REQUIRE(driver.federated_evals().size() == 1);
    CHECK(driver.federated_evals()[0].answered == 2);
    CHECK(driver.federated_evals()[0].examples == 40);
    CHECK(driver.federated_evals()[0].accuracy == doctest::Approx(0.6));
  }
}

}  // namespace frugal::coordinator

namespace frugal::coordinator {

TEST_SUITE("coordinator") {
  TEST_CASE("energy-aware selection in the driver favours clients whose participation costs fewer joules") {
    // 10 Wi-Fi and 10 LTE phones; 10 are selected. An LTE participation pays a
    // multi-joule radio tail, so energy-aware selection must pick mostly Wi-Fi.
    auto count_wifi_selected = [](const std::string& policy) {
      auto rig = MakeRig({"rounds=1", "model=\"logreg\"", "round.clients_per_round=10", "round.min_clients=20",
                          "data.eval_examples=200", "round.selection=\"" + policy + "\""});
      RoundDriver* driver = rig->driver.get();
      FakeTransport& transport = rig->transport;
      for (uint64_t conn = 1; conn <= 20; ++conn) {
        v1::Hello h = MakeHello("phone-" + std::to_string(conn));
        h.set_radio(conn <= 10 ? "wifi" : "lte");
        REQUIRE(driver->OnHello(conn, h.client_name(), h, 0).ok());
      }
      driver->Tick(0);
      REQUIRE(driver->Metrics().round_open);
      int wifi = 0, total = 0;
      for (uint64_t conn = 1; conn <= 20; ++conn) {
        if (transport.Last(conn, v1::Envelope::kTask) == nullptr) continue;
        ++total;
        wifi += conn <= 10 ? 1 : 0;
      }
      CHECK(total == 10);
      return wifi;
    };
    CHECK(count_wifi_selected("energy") >= 9);
    CHECK(count_wifi_selected("uniform") <= 7);
  }
}

}  // namespace frugal::coordinator

namespace frugal::coordinator {

TEST_SUITE("coordinator") {
  TEST_CASE("central DP: a restarted coordinator's records and rounds.csv keep the epsilon of the rounds before it") {
    testing::TempDir dir;
    held.clear();
    auto test = LoadFashionMnist(Split::kTest);
    REQUIRE(test.ok());
    auto store = Store::Open(dir.Path("coordinator.db"));
    REQUIRE(store.ok());
    auto cfg = ParseCoordinatorConfig("", "test",
                                      {"rounds=2", "model=\"logreg\"", "pipeline=\"dense\"", "round.clients_per_round=2",
                                       "round.min_clients=2", "round.deadline_s=100", "data.eval_examples=200",
                                       "privacy.mode=\"central\"", "privacy.clip=0.5", "privacy.noise_multiplier=1.0"});
    REQUIRE(cfg.ok());
    cfg->service.out_dir = dir.Path("run");
    FakeTransport transport;
    auto make_driver = [&]() {
      DriverDeps deps;
      deps.store = store->get();
      deps.test = &*test;
      auto profiles = EnergyProfiles::LoadDefault();
      REQUIRE(profiles.ok());
      deps.profiles = *profiles;
      deps.transport = &transport;
      auto d = RoundDriver::Create(*cfg, std::move(deps));
      REQUIRE(d.ok());
      return std::move(*d);
    };
    auto run_round = [&](RoundDriver& d, uint64_t a, uint64_t b) {
      REQUIRE(d.OnHello(a, "alice", MakeHello("alice"), 0).ok());
      REQUIRE(d.OnHello(b, "bob", MakeHello("bob"), 0).ok());
      d.Tick(0);
      REQUIRE(d.Metrics().round_open);
      d.OnUpdate(a, GoodUpdate(transport, a, 0.01f), 1);
      d.OnUpdate(b, GoodUpdate(transport, b, 0.02f), 1);
    };
    auto driver = make_driver();
    run_round(*driver, 1, 2);
    REQUIRE(driver->records().size() == 1);
    const double eps1 = driver->records()[0].dp_epsilon;
    CHECK(eps1 > 0);
    CHECK(driver->records()[0].dp_delta == 1e-5);
    auto rows = (*store)->Rounds(cfg->run_id);
    REQUIRE(rows.ok());
    CHECK((*rows)[0].dp_epsilon == eps1);

    // Restart: the stored round keeps its epsilon, and the next round adds to it.
    driver.reset();
    transport.sent.clear();
    held.clear();
    auto resumed = make_driver();
    REQUIRE(resumed->records().size() == 1);
    CHECK(resumed->records()[0].dp_epsilon == eps1);
    CHECK(resumed->records()[0].dp_delta == 1e-5);
    run_round(*resumed, 11, 12);
    REQUIRE(resumed->done());
    REQUIRE(resumed->records().size() == 2);
    CHECK(resumed->records()[1].dp_epsilon > eps1);
    // rounds.csv, written from the records, has both rounds' epsilon.
    std::ifstream in(dir.Path("run/rounds.csv"));
    std::string header, line;
    REQUIRE(std::getline(in, header));
    std::vector<std::string> names;
    for (std::stringstream hs(header); std::getline(hs, line, ',');) names.push_back(line);
    const auto col = std::find(names.begin(), names.end(), "dp_epsilon") - names.begin();
    REQUIRE(col < static_cast<long>(names.size()));
    int lines = 0;
    while (std::getline(in, line)) {
      std::vector<std::string> cells;
      for (std::stringstream ls(line); std::getline(ls, header, ',');) cells.push_back(header);
      REQUIRE(static_cast<long>(cells.size()) > col);
      CHECK(std::stod(cells[col]) == resumed->records()[lines].dp_epsilon);
      CHECK(std::stod(cells[col]) > 0);
      ++lines;
    }
    CHECK(lines == 2);
  }

  TEST_CASE("the trigger scan's memory is stored with each round: a restarted coordinator keeps its pruned inputs frozen") {
    testing::TempDir dir;
    held.clear();
    auto test = LoadFashionMnist(Split::kTest);
    REQUIRE(test.ok());
    auto store = Store::Open(dir.Path("coordinator.db"));
    REQUIRE(store.ok());
    // No scan falls due in two rounds (every 1000); pruning is on, so a pruned input is held at zero.
    auto cfg = ParseCoordinatorConfig("", "test",
                                      {"rounds=2", "model=\"logreg\"", "pipeline=\"dense\"",
                                       "round.clients_per_round=2", "round.min_clients=2", "round.deadline_s=100",
                                       "eval.examples=200", "server.trigger_scan_every=1000",
                                       "server.trigger_prune=4", "server.trusted_examples=10"});
    REQUIRE_MESSAGE(cfg.ok(), cfg.error().ToString());
    cfg->service.out_dir = dir.Path("run");
    FakeTransport transport;
    auto make_driver = [&]() { return MakeTrustedDriver(*cfg, store->get(), *test, transport); };
    auto run_round = [&](RoundDriver& d, uint64_t a, uint64_t b) {
      REQUIRE(d.OnHello(a, "alice", MakeHello("alice"), 0).ok());
      REQUIRE(d.OnHello(b, "bob", MakeHello("bob"), 0).ok());
      d.Tick(0);
      REQUIRE(d.Metrics().round_open);
      d.OnUpdate(a, GoodUpdate(transport, a, 0.01f), 1);
      d.OnUpdate(b, GoodUpdate(transport, b, 0.02f), 1);
    };
    auto driver = make_driver();
    run_round(*driver, 1, 2);
    REQUIRE(driver->records().size() == 1);
    CHECK(driver->records()[0].trigger.scanned == 0);
    CHECK(driver->records()[0].trigger.pruned == 0);
    auto run1 = (*store)->LoadRun(cfg->run_id);
    REQUIRE(run1.ok());
    CHECK((*run1)->defense_state == TriggerDefense(cfg->trigger_scan).State());  // an empty memory, stored

    // What a scan would have left: inputs 5 and 9 pruned. Written into the store as the run's memory.
    driver.reset();
    const uint32_t memory[] = {0x31475254, 0, 0, 0, 2, 5, 9};
    std::vector<uint8_t> bytes(sizeof memory);
    std::memcpy(bytes.data(), memory, sizeof memory);
    TriggerDefense check(cfg->trigger_scan);
    REQUIRE(check.SetState(bytes, 784, 10).ok());
    {
      sqlite3* db = nullptr;
      REQUIRE(sqlite3_open(dir.Path("coordinator.db").c_str(), &db) == SQLITE_OK);
      sqlite3_stmt* st = nullptr;
      REQUIRE(sqlite3_prepare_v2(db, "UPDATE runs SET defense_state = ?, defense_state_crc = ? WHERE run_id = ?", -1,
                                 &st, nullptr) == SQLITE_OK);
      sqlite3_bind_blob(st, 1, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
      sqlite3_bind_int64(st, 2, static_cast<sqlite3_int64>(crc32(0L, bytes.data(), static_cast<uInt>(bytes.size()))));
      sqlite3_bind_text(st, 3, cfg->run_id.c_str(), -1, SQLITE_TRANSIENT);
      REQUIRE(sqlite3_step(st) == SQLITE_DONE);
      sqlite3_finalize(st);
      sqlite3_close(db);
    }
    auto run_before = (*store)->LoadRun(cfg->run_id);
    REQUIRE(run_before.ok());
    const std::vector<float> before = (*run_before)->model;
    CHECK(before[5] != 0.0f);

    // Restart: the resumed driver reads the memory, holds inputs 5 and 9 at zero, and stores the memory again.
    transport.sent.clear();
    held.clear();
    auto resumed = make_driver();
    run_round(*resumed, 11, 12);
    REQUIRE(resumed->done());
    REQUIRE(resumed->records().size() == 2);
    CHECK(resumed->records()[1].trigger.pruned == 2);
    CHECK(resumed->records()[1].trigger.scanned == 0);
    auto run2 = (*store)->LoadRun(cfg->run_id);
    REQUIRE(run2.ok());
    CHECK((*run2)->defense_state == bytes);
    const std::vector<float>& after = (*run2)->model;
    for (size_t o = 0; o < 10; ++o) {  // logreg's (10 x 784) weights from inputs 5 and 9
      CHECK(after[o * 784 + 5] == 0.0f);
      CHECK(after[o * 784 + 9] == 0.0f);
    }
    CHECK(after[6] != 0.0f);  // an input not pruned keeps its weights
    auto rows = (*store)->Rounds(cfg->run_id);
    REQUIRE(rows.ok());
    CHECK((*rows)[1].trigger.pruned == 2);
  }

  TEST_CASE("a round that misses its quorum stores no pruning: the stored pruned inputs and the stored model agree, before and after a restart") {
    // Round 2's scan always flags a class (anomaly bar 0.001) and prunes its 4
    // most-masked inputs, but only alice answers: the round misses its quorum,
    // the model stays as round 1 left it, and so must the stored memory.
    testing::TempDir dir;
    held.clear();
    auto test = LoadFashionMnist(Split::kTest);
    REQUIRE(test.ok());
    auto store = Store::Open(dir.Path("coordinator.db"));
    REQUIRE(store.ok());
    auto cfg = ParseCoordinatorConfig(
        "", "test",
        {"rounds=3", "model=\"logreg\"", "pipeline=\"dense\"", "round.clients_per_round=2", "round.min_clients=2",
         "round.min_quorum=2", "round.deadline_s=100", "eval.examples=200", "server.trusted_examples=20", "server.trigger_scan_every=2",
         "server.trigger_scan_steps=20", "server.trigger_anomaly=0.001", "server.trigger_prune=4",
         "server.trigger_prune_mask=0.01", "server.trigger_unlearn_epochs=1"});
    REQUIRE_MESSAGE(cfg.ok(), cfg.error().ToString());
    cfg->service.out_dir = dir.Path("run");
    FakeTransport transport;
    auto make_driver = [&]() { return MakeTrustedDriver(*cfg, store->get(), *test, transport); };
    // The stored memory's pruned inputs, and whether the stored model is zero
    // on all their weights (logreg: 10 x 784).
    auto stored = [&]() {
      auto run = (*store)->LoadRun(cfg->run_id);
      REQUIRE(run.ok());
      TriggerDefense memory(cfg->trigger_scan);
      REQUIRE(memory.SetState((*run)->defense_state, 784, 10).ok());
      bool zero = true;
      for (uint32_t o = 0; o < 10; ++o) {
        for (uint32_t p : memory.pruned()) zero = zero && (*run)->model[o * 784 + p] == 0.0f;
      }
      return std::pair{memory.pruned(), zero};
    };
    auto driver = make_driver();
    REQUIRE(driver->OnHello(1, "alice", MakeHello("alice"), 0).ok());
    REQUIRE(driver->OnHello(2, "bob", MakeHello("bob"), 0).ok());
    driver->Tick(0);
    REQUIRE(driver->Metrics().round_open);
    driver->OnUpdate(1, GoodUpdate(transport, 1, 0.01f), 1);
    driver->OnUpdate(2, GoodUpdate(transport, 2, 0.02f), 1);
    REQUIRE(driver->records().size() == 1);
    const std::vector<float> after_round1(driver->global_model().begin(), driver->global_model().end());
    const auto memory1 = (*(*store)->LoadRun(cfg->run_id))->defense_state;

    driver->Tick(2);
    REQUIRE(driver->Metrics().round_open);
    driver->OnUpdate(1, GoodUpdate(transport, 1, 0.01f), 3);
    driver->Tick(500);  // past the deadline: bob never answered
    REQUIRE(driver->records().size() == 2);
    const RoundRecord& missed = driver->records()[1];
    REQUIRE(missed.trigger.scanned == 1);
    REQUIRE(missed.trigger.flagged >= 0);  // the scan flagged, so it pruned: the test tests something
    CHECK(missed.completed == 1);
    CHECK(missed.trigger.pruned == 0);
    CHECK(std::equal(after_round1.begin(), after_round1.end(), driver->global_model().begin(),
                     driver->global_model().end()));
    // Plain variables, not a structured binding: clang 14 cannot capture one in an assertion's lambda.
    const auto after_missed = stored();
    CHECK(after_missed.first.empty());
    CHECK(after_missed.second);
    CHECK((*(*store)->LoadRun(cfg->run_id))->defense_state == memory1);
    auto rows = (*store)->Rounds(cfg->run_id);
    REQUIRE(rows.ok());
    REQUIRE(rows->size() == 2);
    CHECK((*rows)[1].trigger.pruned == 0);

    // A restart resumes from that agreement, and round 3 closes on it.
    driver.reset();
    transport.sent.clear();
    held.clear();
    auto resumed = make_driver();
    REQUIRE(resumed->OnHello(11, "alice", MakeHello("alice"), 0).ok());
    REQUIRE(resumed->OnHello(12, "bob", MakeHello("bob"), 0).ok());
    resumed->Tick(0);
    REQUIRE(resumed->Metrics().round_open);
    resumed->OnUpdate(11, GoodUpdate(transport, 11, 0.01f), 1);
    resumed->OnUpdate(12, GoodUpdate(transport, 12, 0.02f), 1);
    REQUIRE(resumed->done());
    const auto after_restart = stored();
    CHECK(after_restart.second);
    CHECK(after_restart.first.empty());  // round 3 has no scan
  }

  TEST_CASE("Frugal's pipeline with pruning through a restart: every client's copy stays exactly zero on the frozen weights, and the run ends on the uninterrupted run's model") {
    // Scans at rounds 2 and 4 that always flag a class (anomaly bar 0.001)
    // and prune its 4 most-masked inputs (mask >= 0.01): round 2's close
    // freezes their weights, round 4's more. Run A goes through 5 rounds; run
    // B, the same configuration and updates, restarts after round 3. After
    // it, alice starts afresh and bob keeps his copy. downlink.seed_init is
    // off, so a client holding nothing gets a full int8 model: alice's after
    // the restart is exact at the frozen weights only through the frozen set
    // the restarted engine is handed (ServerDefense::Resume).
    held.clear();
    auto test = LoadFashionMnist(Split::kTest);
    REQUIRE(test.ok());
    struct Run {
      testing::TempDir dir;
      std::unique_ptr<Store> store;
      CoordinatorConfig cfg;
      FakeTransport transport;
    };
    auto open = [&](Run& r) {
      auto store = Store::Open(r.dir.Path("coordinator.db"));
      REQUIRE(store.ok());
      r.store = std::move(*store);
      auto cfg = ParseCoordinatorConfig(
          "", "test",
          {"rounds=5", "model=\"logreg\"", "pipeline=\"frugal\"", "round.clients_per_round=2",
           "round.min_clients=2", "round.deadline_s=100", "eval.examples=200", "uplink.density=0.1",
           "downlink.seed_init=false", "server.trusted_examples=20", "server.trigger_scan_every=2",
           "server.trigger_scan_steps=20", "server.trigger_anomaly=0.001", "server.trigger_prune=4",
           "server.trigger_prune_mask=0.01", "server.trigger_unlearn_epochs=1"});
      REQUIRE_MESSAGE(cfg.ok(), cfg.error().ToString());
      r.cfg = std::move(*cfg);
      r.cfg.service.out_dir = r.dir.Path("run");
    };
    auto make_driver = [&](Run& r) { return MakeTrustedDriver(r.cfg, r.store.get(), *test, r.transport); };
    // The weights of the inputs pruned by the last committed round (logreg: 10 x 784).
    auto frozen_now = [&](Run& r) {
      auto run = r.store->LoadRun(r.cfg.run_id);
      REQUIRE(run.ok());
      TriggerDefense memory(r.cfg.trigger_scan);
      REQUIRE(memory.SetState((*run)->defense_state, 784, 10).ok());
      std::vector<uint32_t> frozen;
      for (uint32_t o = 0; o < 10; ++o) {
        for (uint32_t p : memory.pruned()) frozen.push_back(o * 784 + p);
      }
      return frozen;
    };
    // Run A's client copies and server models by round, for run B to match.
    std::map<std::pair<uint32_t, std::string>, std::vector<float>> copies_a;
    std::map<uint32_t, std::vector<float>> server_a;
    // One round: both clients rebuild the round's model from what they were
    // sent and send a random step (both signs, every coordinate a candidate).
    // Their copies must be exactly zero where the server froze weights.
    // Returns the number of frozen weights checked.
    auto run_round = [&](Run& r, RoundDriver& d, uint32_t round, uint64_t alice, uint64_t bob) {
      const std::vector<uint32_t> frozen = frozen_now(r);
      const std::vector<float> server(d.global_model().begin(), d.global_model().end());
      for (uint32_t j : frozen) REQUIRE(server[j] == 0.0f);
      if (server_a.contains(round)) CHECK(server == server_a[round]);
      server_a.emplace(round, server);
      for (const auto& who : {std::pair<uint64_t, std::string>{alice, "alice"}, {bob, "bob"}}) {
        // Plain variables, not a structured binding: clang 14 cannot capture one in CAPTURE's lambda.
        const uint64_t conn = who.first;
        const std::string name = who.second;
        CAPTURE(name);
        v1::Update u = GoodUpdate(r.transport, conn, 0.0f);  // rebuilds the copy; its step is replaced
        Rng rng(100 * round + conn % 10);
        std::vector<float> delta(7850);
        for (float& v : delta) v = 0.05f * static_cast<float>(rng.Normal());
        UplinkConfig uc;
        uc.density = 0.1;
        u = UpdateFor(*r.transport.Last(conn, v1::Envelope::kTask), delta, uc);
        d.OnUpdate(conn, u, 1);
        const std::vector<float>& copy = held[conn].second;
        for (uint32_t j : frozen) REQUIRE(copy[j] == 0.0f);
        copies_a.emplace(std::pair{round, name}, copy);  // run A's; run B's are compared by the caller
      }
      return frozen.size();
    };
    auto hello = [](RoundDriver& d, uint64_t alice, uint64_t bob, uint32_t bob_version) {
      v1::Hello b = MakeHello("bob");
      if (bob_version > 0) b.set_model_version(bob_version);
      REQUIRE(d.OnHello(alice, "alice", MakeHello("alice"), 0).ok());
      REQUIRE(d.OnHello(bob, "bob", b, 0).ok());
      d.Tick(0);
      REQUIRE(d.Metrics().round_open);
    };

    Run a;
    open(a);
    auto whole = make_driver(a);
    hello(*whole, 1, 2, 0);
    size_t frozen_seen = 0;
    for (uint32_t round = 1; round <= 5; ++round) {
      CAPTURE(round);
      frozen_seen = std::max(frozen_seen, run_round(a, *whole, round, 1, 2));
    }
    REQUIRE(whole->done());
    REQUIRE(whole->records().size() == 5);
    REQUIRE(whole->records()[1].trigger.pruned > 0);  // round 2 pruned: the test tests something
    CHECK(frozen_seen > 0);
    {
      // The weights round 2 froze were not zero before: the updates reached them.
      size_t nonzero = 0;
      for (uint32_t j : frozen_now(a)) nonzero += server_a[2][j] != 0.0f ? 1 : 0;
      CHECK(nonzero > 0);
    }

    Run b;
    open(b);
    auto first = make_driver(b);
    hello(*first, 11, 12, 0);
    for (uint32_t round = 1; round <= 3; ++round) {
      CAPTURE(round);
      run_round(b, *first, round, 11, 12);
      CHECK(held[11].second == copies_a.at({round, "alice"}));
      CHECK(held[12].second == copies_a.at({round, "bob"}));
    }
    REQUIRE(first->records().size() == 3);
    const uint32_t bob_version = held[12].first;
    first.reset();
    b.transport.sent.clear();
    held[22] = held[12];
    auto resumed = make_driver(b);
    REQUIRE(resumed->version() == 4);
    hello(*resumed, 21, 22, bob_version);
    for (uint32_t round = 4; round <= 5; ++round) {
      CAPTURE(round);
      CHECK(run_round(b, *resumed, round, 21, 22) > 0);
      CHECK(held[22].second == copies_a.at({round, "bob"}));  // bob's chain spans the restart
    }
    REQUIRE(resumed->done());

    auto end_a = a.store->LoadRun(a.cfg.run_id), end_b = b.store->LoadRun(b.cfg.run_id);
    REQUIRE(end_a.ok());
    REQUIRE(end_b.ok());
    CHECK((*end_b)->model == (*end_a)->model);
    CHECK((*end_b)->defense_state == (*end_a)->defense_state);
    for (uint32_t j : frozen_now(b)) CHECK((*end_b)->model[j] == 0.0f);
    auto rows_a = a.store->Rounds(a.cfg.run_id), rows_b = b.store->Rounds(b.cfg.run_id);
    REQUIRE(rows_a.ok());
    REQUIRE(rows_b.ok());
    REQUIRE(rows_b->size() == 5);
    for (size_t i = 0; i < 5; ++i) {
      CAPTURE(i);
      CHECK((*rows_b)[i].trigger.pruned == (*rows_a)[i].trigger.pruned);
      CHECK((*rows_b)[i].trigger.flagged == (*rows_a)[i].trigger.flagged);
    }
  }

  TEST_CASE("a closing round's work runs off the driver's thread: meanwhile the driver registers, refuses a late update as round_closed, reports the round closing and opens nothing; applied, the run equals an inline close's") {
    // FLTrust's trusted-set work, the evaluation and (after round 2) the
    // distillation all run in the close work here.
    const std::vector<std::string> overrides = {
        "rounds=2", "model=\"logreg\"", "round.clients_per_round=2", "round.min_clients=2", "round.deadline_s=100",
        "eval.examples=500", "uplink.density=0.1", "server.robust=\"fltrust\"", "server.trusted_examples=50",
        "distill.at_end=true", "distill.student=\"logreg\"", "distill.pool_examples=300", "distill.epochs=1"};
    // Both runs price carbon at the same hour.
    auto make = [&](Rig& r, HeldClose* hold) { InitRig(r, overrides, {.trusted = true, .hold = hold, .noon = true}); };

    // The reference: every close inline, as the driver does without run_close.
    Rig ref;
    make(ref, nullptr);
    REQUIRE(ref.driver->OnHello(1, "alice", MakeHello("alice"), 0).ok());
    REQUIRE(ref.driver->OnHello(2, "bob", MakeHello("bob"), 0).ok());
    for (uint32_t round = 1; round <= 2; ++round) {
      const double t = 10.0 * round;
      ref.driver->Tick(t);
      REQUIRE(ref.driver->Metrics().round_open);
      ref.driver->OnUpdate(1, GoodUpdate(ref.transport, 1, 0.01f * round), t + 1);
      ref.driver->OnUpdate(2, GoodUpdate(ref.transport, 2, -0.02f), t + 1);
      REQUIRE_FALSE(ref.driver->closing());
      REQUIRE(ref.driver->records().size() == round);
    }
    REQUIRE(ref.driver->done());
    const std::map<uint64_t, std::pair<uint32_t, std::vector<float>>> ref_held = held;

    // The same run with each close held on its own thread.
    Rig run;
    HeldClose hold;  // after run: destroyed first, so a held close (of a failed check) finishes on a live driver
    make(run, &hold);
    RoundDriver& d = *run.driver;
    REQUIRE(d.OnHello(1, "alice", MakeHello("alice"), 0).ok());
    REQUIRE(d.OnHello(2, "bob", MakeHello("bob"), 0).ok());
    for (uint32_t round = 1; round <= 2; ++round) {
      CAPTURE(round);
      const double t = 10.0 * round;
      d.Tick(t);
      REQUIRE(d.Metrics().round_open);
      const v1::Update late = GoodUpdate(run.transport, 1, 0.5f);  // alice's second try, sent after the close
      d.OnUpdate(1, GoodUpdate(run.transport, 1, 0.01f * round), t + 1);
      d.OnUpdate(2, GoodUpdate(run.transport, 2, -0.02f), t + 1);
      // Both updates are in: the round closes, and its work waits on the hook.
      REQUIRE(hold.pending());
      CHECK(hold.round() == round);
      REQUIRE(d.closing());
      CHECK(d.records().size() == round - 1);  // nothing committed yet

      // While it waits, and then again while it runs, the driver's thread is answered.
      auto answered_while_closing = [&](int pass) {
        CAPTURE(pass);
        const DriverMetrics m = d.Metrics();
        CHECK(m.state == "closing");
        CHECK(m.round == round);
        CHECK_FALSE(m.round_open);
        CHECK(m.round_closing);
        CHECK(m.rounds_completed == round - 1);
        CHECK(m.model_version == round);  // the version the round trained on, until it is applied
        const DashboardView v = d.Dashboard(t + 2);
        CHECK(v.status.state == "closing");
        CHECK(v.round.round == round);
        CHECK_FALSE(v.round.open);
        CHECK(v.round.received == 2);
        CHECK_FALSE(v.status.next_round_in_s.has_value());
        CHECK_FALSE(d.Busy(1));
        // A client registers: Register carries the model's dimension and the run.
        const uint64_t conn = 100 + static_cast<uint64_t>(pass);
        auto reg = d.OnHello(conn, "carol", MakeHello("carol"), t + 2);
        REQUIRE_MESSAGE(reg.ok(), reg.error().ToString());
        CHECK(reg->dim() == 7850);
        CHECK(reg->run_id() == run.cfg.run_id);
        CHECK(d.Metrics().connected_clients == 3);
        // A late update for the closing round is refused by reason, not ingested.
        run.transport.sent[1].clear();
        d.OnUpdate(1, late, t + 2);
        const v1::Envelope* err = run.transport.Last(1, v1::Envelope::kError);
        REQUIRE(err != nullptr);
        CHECK(err->error().reason() == "round_closed");
        CHECK(err->error().message().find("round " + std::to_string(round) + " is closing") != std::string::npos);
        // Ticks past the round's interval open nothing while it closes.
        d.Tick(t + 3);
        CHECK(d.closing());
        CHECK_FALSE(d.Metrics().round_open);
        d.OnDisconnect(conn, t + 3);  // carol leaves before the next round is drawn
        CHECK(d.Metrics().connected_clients == 2);
      };
      answered_while_closing(0);
      hold.Release();
      answered_while_closing(1);  // concurrent with the close work (what the tsan preset checks)
      hold.Apply();
      d.Tick(t + 1);  // as the service does once a close is applied (the inline run's Tick went on to this)
      REQUIRE_FALSE(d.closing());
      REQUIRE(d.fatal() == std::nullopt);
      REQUIRE(d.records().size() == round);
      CHECK(d.Metrics().state != "closing");
    }
    REQUIRE(d.done());

    // The stored run is the inline run's: model, rounds and every client's ledger row.
    CheckSameStoredRun(ref, run, 2);
    // The clients followed the same chain, and the distilled student is the same.
    CHECK(held == ref_held);
    CHECK(SummaryMetric(run, "student_accuracy") == SummaryMetric(ref, "student_accuracy"));
    // The late updates were counted as refused, by reason.
    CHECK(d.Metrics().updates_rejected.at("round_closed") == 4);
  }

  TEST_CASE("a secure round's unmasking runs in the close work: meanwhile the driver refuses SecAgg messages and handles disconnects without the protocol; applied, the round equals an inline close's") {
    // Client 4 vanishes after sharing its keys, so the unmasking reconstructs
    // its pairwise masks as well as the survivors' self masks.
    const std::vector<std::string> overrides = {
        "rounds=1", "model=\"logreg\"", "pipeline=\"secure\"", "round.clients_per_round=4", "round.min_clients=4",
        "eval.examples=100", "secure.bits=16", "secure.debug_dump=true", "secure.stage_timeout_s=5",
        "round.deadline_s=100"};
    struct Run : Rig {
      std::map<uint64_t, privacy::SecureAggClient> clients;
      std::vector<uint64_t> expect;  // the survivors' ring sum
    };
    // Both runs price carbon at the same hour.
    auto make = [&](Run& r, HeldClose* hold) { InitRig(r, overrides, {.hold = hold, .noon = true}); };
    auto send = [](Run& r, uint64_t c, uint32_t stage, std::span<const uint8_t> body) {
      v1::SecAgg m;
      m.set_round(1);
      m.set_stage(stage);
      m.set_body(reinterpret_cast<const char*>(body.data()), body.size());
      if (stage == 3 || stage == 5) {
        m.set_protocol_cpu_s(0.25);
        m.mutable_ledger()->set_flops(stage == 3 ? 500 : 1000);
      }
      r.driver->OnSecAgg(c, m, 1);
    };
    auto body_of = [](Run& r, uint64_t c, uint32_t stage) {
      const v1::Envelope* e = r.transport.Last(c, v1::Envelope::kSecagg);
      REQUIRE(e != nullptr);
      REQUIRE(e->secagg().stage() == stage);
      const std::string& b = e->secagg().body();
      return std::vector<uint8_t>(b.begin(), b.end());
    };
    // Runs the protocol up to the unmask responses of clients 1..`unmaskers`;
    // with all three survivors the last one closes the round.
    auto play = [&](Run& r, uint64_t unmaskers) {
      RoundDriver& d = *r.driver;
      for (uint64_t c = 1; c <= 4; ++c) {
        std::string name = "c";
        name += std::to_string(c);
        REQUIRE(d.OnHello(c, name, MakeHello(name), 0).ok());
      }
      d.Tick(0);
      uint32_t length = 0;
      for (uint64_t c = 1; c <= 4; ++c) {
        const v1::Envelope* task = r.transport.Last(c, v1::Envelope::kTask);
        REQUIRE(task != nullptr);
        auto plan = FromWire(task->task().secagg(), 1);
        REQUIRE(plan.ok());
        length = plan->round.length;
        auto client = privacy::SecureAggClient::Create(plan->round, plan->position);
        REQUIRE(client.ok());
        r.clients.emplace(c, std::move(*client));
      }
      for (uint64_t c = 1; c <= 4; ++c) {
        auto keys = r.clients.at(c).AdvertiseKeys();
        REQUIRE(keys.ok());
        send(r, c, 1, *keys);
      }
      for (uint64_t c = 1; c <= 4; ++c) {
        auto shares = r.clients.at(c).ShareKeys(body_of(r, c, 2));
        REQUIRE(shares.ok());
        send(r, c, 2, *shares);
      }
      d.OnDisconnect(4, 1);
      const uint64_t mask = (uint64_t{1} << 16) - 1;
      r.expect.assign(length, 0);
      Rng rng(5);
      for (uint64_t c = 1; c <= 3; ++c) {
        std::vector<uint64_t> input(length);
        for (uint64_t& v : input) v = static_cast<uint64_t>(static_cast<int64_t>(rng.UniformInt(201)) - 100) & mask;
        for (uint32_t j = 0; j < length; ++j) r.expect[j] = (r.expect[j] + input[j]) & mask;
        auto masked = r.clients.at(c).MaskedInput(body_of(r, c, 3), input);
        REQUIRE(masked.ok());
        send(r, c, 3, *masked);
      }
      for (uint64_t c = 1; c <= 3; ++c) {
        auto signature = r.clients.at(c).SignSurvivors(body_of(r, c, 4));
        REQUIRE(signature.ok());
        send(r, c, 4, *signature);
      }
      for (uint64_t c = 1; c <= unmaskers; ++c) {
        auto response = r.clients.at(c).Unmask(body_of(r, c, 5));
        REQUIRE(response.ok());
        send(r, c, 5, *response);
      }
    };
    auto dumped_sum = [](Run& r) {
      std::ifstream in(r.dir.Path("run") + "/secagg_sum_r1.bin", std::ios::binary);
      std::vector<uint64_t> sum(r.expect.size(), 0);
      for (uint64_t& v : sum) {
        for (int b = 0; b < 8; ++b) v |= static_cast<uint64_t>(static_cast<uint8_t>(in.get())) << (8 * b);
      }
      CHECK(in.good());
      return sum;
    };

    // The reference: the unmasking and the close inline, as without run_close.
    Run ref;
    make(ref, nullptr);
    play(ref, 3);
    REQUIRE_FALSE(ref.driver->fatal().has_value());
    REQUIRE_FALSE(ref.driver->closing());
    REQUIRE(ref.driver->records().size() == 1);
    CHECK(ref.driver->records()[0].completed == 3);

    Run run;
    HeldClose hold;  // after run: destroyed first, so a held close finishes on a live driver
    make(run, &hold);
    play(run, 3);
    RoundDriver& d = *run.driver;
    // The last unmask response closed stage 5: the unmasking waits on the hook with the rest of the close.
    REQUIRE(hold.pending());
    CHECK(hold.round() == 1);
    REQUIRE(d.closing());
    CHECK(d.records().empty());
    CHECK_FALSE(std::filesystem::exists(run.dir.Path("run") + "/secagg_sum_r1.bin"));  // written when applied
    auto answered_while_closing = [&](int pass) {
      CAPTURE(pass);
      const DriverMetrics m = d.Metrics();
      CHECK(m.state == "closing");
      CHECK(m.round == 1);
      CHECK_FALSE(m.round_open);
      CHECK(m.round_closing);
      CHECK(m.updates_accepted == 0);  // the survivors are accepted once the unmasked sum is applied
      // A SecAgg message arriving now (a stage 5 response from client 1 again) is refused, naming the close.
      run.transport.sent[1].clear();
      send(run, 1, 5, std::vector<uint8_t>(64, 0));
      const v1::Envelope* err = run.transport.Last(1, v1::Envelope::kError);
      REQUIRE(err != nullptr);
      CHECK(err->error().message().find("round 1 is closing") != std::string::npos);
      CHECK_FALSE(d.Busy(2));
      d.Tick(2);
      CHECK(d.closing());
    };
    answered_while_closing(0);
    // A survivor leaves before the unmasking has run, another while it runs:
    // each is handled (the connection forgotten) without the protocol, which
    // the close work holds, and the sum keeps both. (SecureRoundServer::Drop
    // would not change the sum after stage 5 either: the guarantee that the
    // driver does not touch the protocol is that it no longer has it.)
    d.OnDisconnect(3, 2);
    CHECK(d.Metrics().connected_clients == 2);
    hold.Release();
    answered_while_closing(1);
    d.OnDisconnect(2, 2);
    CHECK(d.Metrics().connected_clients == 1);
    hold.Apply();
    REQUIRE_FALSE(d.closing());
    REQUIRE_FALSE(d.fatal().has_value());
    REQUIRE(d.records().size() == 1);
    CHECK(d.records()[0].completed == 3);
    CHECK(d.Metrics().updates_accepted == 3);
    CHECK(d.Metrics().state != "closing");
    CHECK(dumped_sum(run) == run.expect);
    CHECK(dumped_sum(ref) == ref.expect);
    CHECK(run.expect == ref.expect);

    // The stored run is the inline run's: model, round row and every ledger row, protocol bytes included.
    CheckSameStoredRun(ref, run, 1);
    auto rows_run = run.store->Rounds(run.cfg.run_id);
    REQUIRE(rows_run.ok());
    const RoundRow& b = (*rows_run)[0];
    CHECK(b.protocol_bytes_up > 0);
    CHECK_FALSE(b.secure_failed);
    // The unmasking's CPU, measured on the worker's thread, is in the round's server CPU and the protocol's.
    CHECK(b.protocol_server_cpu_s > 0);
    auto ledger_run = run.store->Ledger(run.cfg.run_id);
    REQUIRE(ledger_run.ok());
    REQUIRE(ledger_run->size() == 4);
    for (const LedgerRow& y : *ledger_run) {
      CAPTURE(y.client_id);
      CHECK(y.outcome == (y.client_id == 4 ? ClientOutcome::kDropped : ClientOutcome::kParticipated));
    }
    CHECK(SummaryMetricAt(run.dir, "secure_failed_rounds") == 0);
    CHECK(SummaryMetricAt(run.dir, "secure_server_cpu_seconds") > 0);

    // An unmasking that fails on the worker (one unmask response of three, too
    // few shares once stage 5's deadline passes) is the protocol's failure, as
    // inline: counted, the round closed without the sum, the model unchanged.
    Run failed;
    HeldClose hold_failed;
    make(failed, &hold_failed);
    play(failed, 1);
    RoundDriver& f = *failed.driver;
    CHECK_FALSE(hold_failed.pending());  // stage 5 waits for the others until its deadline
    f.Tick(1 + 5);
    REQUIRE(hold_failed.pending());
    REQUIRE(f.closing());
    hold_failed.Release();
    hold_failed.Apply();
    REQUIRE_FALSE(f.fatal().has_value());
    REQUIRE(f.records().size() == 1);
    CHECK(f.records()[0].completed == 0);
    CHECK(f.version() == 1);
    CHECK(f.Metrics().updates_accepted == 0);
    CHECK_FALSE(std::filesystem::exists(failed.dir.Path("run") + "/secagg_sum_r1.bin"));
    auto rows_failed = failed.store->Rounds(failed.cfg.run_id);
    REQUIRE(rows_failed.ok());
    REQUIRE(rows_failed->size() == 1);
    CHECK((*rows_failed)[0].secure_failed);
    CHECK((*rows_failed)[0].protocol_bytes_up > 0);  // settled after the failed unmasking
    CHECK(SummaryMetricAt(failed.dir, "secure_failed_rounds") == 1);
  }

  TEST_CASE("a close work that fails on its thread is the driver's fatal error once applied, and commits nothing") {
    // distill.at_end without a training set for its pool: the start allows it
    // (the service loads the set), the close work after the last round fails.
    auto rig = std::make_unique<Rig>();
    HeldClose hold;  // after the rig: destroyed first, so a held close never runs on a freed driver
    InitRig(*rig,
            {"rounds=1", "model=\"logreg\"", "round.clients_per_round=2", "round.min_clients=2", "round.deadline_s=100",
             "eval.examples=200", "distill.at_end=true", "distill.student=\"logreg\""},
            {.hold = &hold});
    RoundDriver& d = *rig->driver;
    REQUIRE(d.OnHello(1, "alice", MakeHello("alice"), 0).ok());
    REQUIRE(d.OnHello(2, "bob", MakeHello("bob"), 0).ok());
    d.Tick(0);
    d.OnUpdate(1, GoodUpdate(rig->transport, 1, 0.01f), 1);
    d.OnUpdate(2, GoodUpdate(rig->transport, 2, 0.02f), 1);
    REQUIRE(d.closing());
    hold.Release();
    CHECK_FALSE(d.fatal().has_value());  // not before it is applied on this thread
    hold.Apply();
    CHECK_FALSE(d.closing());
    REQUIRE(d.fatal().has_value());
    CHECK(d.fatal()->message().find("distill.at_end needs the training set") != std::string::npos);
    CHECK(d.records().empty());
    auto rows = rig->store->Rounds(rig->cfg.run_id);
    REQUIRE(rows.ok());
    CHECK(rows->empty());  // a restart runs round 1 again
    d.Tick(2);             // a fatal driver does nothing more
    CHECK_FALSE(d.Metrics().round_open);
  }


}

}  // namespace frugal::coordinator
