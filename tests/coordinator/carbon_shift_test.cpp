// Time shifting in the service: the round driver postpones a round on its own
// clock for its connected clients' cleaner grid hours, as the simulator does
// on its virtual clock. The clock is injected (Tick's now_s and
// DriverDeps::utc_hour move together here), so the test waits for nothing.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/temp_dir.h"
#include "frugal/coordinator/round_driver.h"
#include "frugal/data/dataset.h"
#include "frugal/energy/grid_curves.h"
#include "frugal/proto/frame.h"
#include "frugal/round/carbon_schedule.h"

namespace frugal::coordinator {
namespace {

// Records what the driver sends; the test only asks whether a Task went out.
class SentLog : public DriverTransport {
 public:
  void Send(uint64_t conn, const v1::Envelope& env) override {
    if (env.body_case() == v1::Envelope::kTask) ++tasks[conn];
  }
  std::map<uint64_t, int> tasks;
};

v1::Hello Hello(const std::string& name) {
  v1::Hello h;
  h.set_protocol_version(kProtocolVersion);
  h.set_client_name(name);
  h.set_device_class("phone-mid");
  h.set_radio("wifi");
  h.set_region("DE");
  h.set_num_examples(100);
  h.set_input_dim(784);
  return h;
}

struct ShiftRig {
  testing::TempDir dir;
  Dataset test;
  std::unique_ptr<Store> store;
  SentLog transport;
  double hour = 0;  // the injected UTC hour
  std::unique_ptr<RoundDriver> driver;
};

std::unique_ptr<ShiftRig> MakeRig(double slack_h, double start_hour) {
  auto rig = std::make_unique<ShiftRig>();
  rig->hour = start_hour;
  auto test = LoadFashionMnist(Split::kTest);
  REQUIRE(test.ok());
  rig->test = std::move(*test);
  auto store = Store::Open(rig->dir.Path("coordinator.db"));
  REQUIRE(store.ok());
  rig->store = std::move(*store);
  auto cfg = ParseCoordinatorConfig(
      "", "test",
      {"rounds=2", "model=\"logreg\"", "round.clients_per_round=2", "round.min_clients=2", "round.deadline_s=100",
       "data.eval_examples=200", "carbon.hourly=\"derived\"", "carbon.shift_step_h=1.0",
       "carbon.shift_max_wait_ratio=0", "carbon.shift_mode=\"round\"",
       "carbon.shift_slack_h=" + std::to_string(slack_h)});
  REQUIRE_MESSAGE(cfg.ok(), cfg.error().ToString());
  cfg->service.out_dir = rig->dir.Path("run");
  DriverDeps deps;
  deps.store = rig->store.get();
  deps.test = &rig->test;
  deps.profiles = *EnergyProfiles::LoadDefault();
  deps.transport = &rig->transport;
  ShiftRig* r = rig.get();
  deps.utc_hour = [r] { return r->hour; };
  deps.iso_timestamp = [] { return std::string("2026-03-21T00:00:00Z"); };
  auto driver = RoundDriver::Create(*cfg, std::move(deps));
  REQUIRE_MESSAGE(driver.ok(), driver.error().ToString());
  rig->driver = std::move(*driver);
  return rig;
}

}  // namespace

TEST_SUITE("coordinator") {
  TEST_CASE("the service postpones a round on its clock for cleaner hours, exactly as long as the core says") {
    // Reference: the core's shifter over the same clients (two in DE) at 04 UTC,
    // where German solar is still rising for the next 6 hours.
    EnergyProfiles p = *EnergyProfiles::LoadDefault();
    REQUIRE(ApplyHourlyCurves(p, HourlyMode::kDerived, 80, {}, "").ok());
    CarbonSettings s;
    s.shift_slack_h = 6;
    s.shift_mode = ShiftMode::kRound;
    s.shift_step_h = 1;
    s.shift_max_wait_ratio = 0;
    TimeShifter reference(s);
    const RegionCount mix[] = {{*p.Region("DE"), 2}};
    const double wait_h = reference.Delay(mix, SelectionPolicy::kEnergy, 4.0);
    REQUIRE(wait_h > 0);

    auto rig = MakeRig(6, 4.0);
    REQUIRE(rig->driver->OnHello(1, "alice", Hello("alice"), 0).ok());
    REQUIRE(rig->driver->OnHello(2, "bob", Hello("bob"), 0).ok());
    rig->driver->Tick(0);
    CHECK_FALSE(rig->driver->Metrics().round_open);  // waiting, not opened
    rig->hour = 4.0 + wait_h - 0.01;
    rig->driver->Tick(wait_h * 3600 - 36);
    CHECK_FALSE(rig->driver->Metrics().round_open);
    CHECK(rig->transport.tasks.empty());
    rig->hour = 4.0 + wait_h;
    rig->driver->Tick(wait_h * 3600);
    CHECK(rig->driver->Metrics().round_open);
    CHECK(rig->transport.tasks[1] == 1);
    CHECK(rig->transport.tasks[2] == 1);
  }

  TEST_CASE("without a slack the service opens the round at once") {
    auto rig = MakeRig(0, 4.0);
    REQUIRE(rig->driver->OnHello(1, "alice", Hello("alice"), 0).ok());
    REQUIRE(rig->driver->OnHello(2, "bob", Hello("bob"), 0).ok());
    rig->driver->Tick(0);
    CHECK(rig->driver->Metrics().round_open);
  }
}

}  // namespace frugal::coordinator
