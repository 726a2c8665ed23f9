// The agent's battery fuel gauge against a fake /sys/class/power_supply tree
// in a temporary directory whose files change as a fake clock advances:
// falling and rising counters, files that vanish, absurd values, a gauge that
// never updates; and the task loop reporting what it measured.
#include "frugal/client/battery_meter.h"

#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "client/task_loop_rig.h"
#include "data/temp_dir.h"
#include "frugal/client/task_loop.h"
#include "frugal/core/streams.h"
#include "frugal/proto/convert.h"
#include "frugal/proto/frame.h"
#include "frugal/round/engine.h"

namespace frugal::client {
namespace {

namespace fs = std::filesystem;

// A power_supply tree with a mains adapter and one battery, BAT0.
struct FakeSysfs {
  testing::TempDir dir;
  double now = 1000;  // the meter's clock

  FakeSysfs() {
    Set("AC", "type", "Mains");
    Set("AC", "online", "0");
    Set("BAT0", "type", "Battery");
    Set("BAT0", "status", "Discharging");
    Set("BAT0", "capacity", "80");
  }
  std::string root() const { return dir.Path(""); }
  std::string battery() const { return dir.Path("BAT0"); }
  void Set(const std::string& supply, const std::string& file, const std::string& text) const {
    fs::create_directories(fs::path(dir.Path(supply)));
    std::ofstream(fs::path(dir.Path(supply)) / file, std::ios::trunc) << text << "\n";
  }
  void Remove(const std::string& supply, const std::string& file) const {
    fs::remove(fs::path(dir.Path(supply)) / file);
  }
  BatteryMeter::Clock Clock() {
    return [this] { return now; };
  }
};

// Runs the sampler's steps by hand at 5 Hz for `seconds`, the driver updating
// energy_now every `update_s` from `watts` of draw.
void Discharge(FakeSysfs& fs_, BatteryMeter& meter, double seconds, double watts, double update_s,
               int64_t& energy_uwh) {
  const double start = fs_.now;
  double next_update = start + update_s;
  for (int i = 1; i <= static_cast<int>(std::lround(seconds * 5)); ++i) {
    fs_.now = start + i * 0.2;
    if (fs_.now >= next_update - 1e-9) {
      energy_uwh -= static_cast<int64_t>(std::llround(watts * update_s / 3.6e-3));
      fs_.Set("BAT0", "energy_now", std::to_string(energy_uwh));
      next_update += update_s;
    }
    REQUIRE(meter.SampleOnce().ok());
  }
}

// Stands in for the battery so the test can tell the task loop what its
// phases cost and see when it holds the meter (the gauge itself is tested above).
class ScriptedMeter final : public PhaseMeter {
 public:
  double NowSeconds() override { return now_ += 1.0; }
  PhaseEnergy Measure(std::string_view phase, double t0, double t1) override {
    PhaseEnergy p;
    p.phase = std::string(phase);
    p.seconds = t1 - t0;
    if (phase == "train") {
      p.source = EnergySource::kMeasured;
      p.joules = 12.5;
      p.note = "measured (energy_now): scripted";
    } else {
      p.note = "modelled: the 1.0 s phase is shorter than the gauge's update interval (10.0 s)";
    }
    return p;
  }
  std::string Describe() const override { return "battery FAKE (energy_now)"; }
  void Hold(bool active) override { holds += active ? "+" : "-"; }
  std::string holds;

 private:
  double now_ = 0;
};

}  // namespace

TEST_SUITE("client") {
  TEST_CASE("the battery is found by its type and its gauge files, not by its name") {
    FakeSysfs sys;
    CHECK(FindBattery(sys.root()).error().code() == ErrorCode::kNotFound);  // capacity only: no gauge
    sys.Set("BAT0", "energy_now", "40000000");
    auto found = FindBattery(sys.root());
    REQUIRE(found.ok());
    CHECK(fs::path(*found).filename() == "BAT0");
    CHECK(FindBattery(sys.root() + "/absent").error().code() == ErrorCode::kNotFound);
    auto meter = BatteryMeter::Open(*found, 5, sys.Clock());
    REQUIRE(meter.ok());
    CHECK((*meter)->kind() == GaugeKind::kEnergy);
    CHECK((*meter)->Describe() == "battery BAT0 (energy_now)");
  }

  TEST_CASE("a falling energy_now counter measures a training phase; a short download is left to the model") {
    FakeSysfs sys;
    int64_t energy = 40'000'000;
    sys.Set("BAT0", "energy_now", std::to_string(energy));
    sys.Set("BAT0", "voltage_now", "3850000");
    auto meter = BatteryMeter::Open(sys.battery(), 5, sys.Clock());
    REQUIRE(meter.ok());
    BatteryMeter& m = **meter;
    m.Hold(true);
    const double t0 = m.NowSeconds();
    Discharge(sys, m, 1.0, 4.0, 2.0, energy);  // the download: 1 s
    const double t1 = m.NowSeconds();
    Discharge(sys, m, 30.0, 4.0, 2.0, energy);  // training: 30 s at 4 W
    const double t2 = m.NowSeconds();
    m.Hold(false);
    const PhaseEnergy download = m.Measure("download", t0, t1);
    CHECK(download.source == EnergySource::kModelled);
    CHECK(download.note.find("update interval") != std::string::npos);
    const PhaseEnergy train = m.Measure("train", t1, t2);
    REQUIRE(train.source == EnergySource::kMeasured);
    // Plain reference: the whole µWh the driver drops per update, as watts, times the phase.
    const double watts = static_cast<double>(std::llround(4.0 * 2.0 / 3.6e-3)) * 3.6e-3 / 2.0;
    CHECK(train.joules == doctest::Approx(watts * 30.0).epsilon(1e-9));
    CHECK(m.failed_reads() == 0);
  }

  TEST_CASE("charge_now with voltage_now, and a counter that rises when a charger is plugged in") {
    FakeSysfs sys;
    sys.Set("BAT0", "charge_now", "3000000");
    sys.Set("BAT0", "voltage_now", "4000000");
    auto meter = BatteryMeter::Open(sys.battery(), 5, sys.Clock());
    REQUIRE(meter.ok());
    BatteryMeter& m = **meter;
    CHECK(m.kind() == GaugeKind::kChargeVoltage);
    m.Hold(true);
    const double t0 = m.NowSeconds();
    int64_t charge = 3'000'000;
    for (int i = 1; i <= 100; ++i) {
      sys.now += 0.2;
      if (i % 5 == 0) sys.Set("BAT0", "charge_now", std::to_string(charge -= 250));  // 250 µAh a second
      REQUIRE(m.SampleOnce().ok());
    }
    const double t1 = m.NowSeconds();
    const PhaseEnergy p = m.Measure("train", t0, t1);
    REQUIRE(p.source == EnergySource::kMeasured);
    // 250 µAh/s at 4 V = 0.25e-3 × 3600 × 4 W = 3.6 W, for 20 s.
    CHECK(p.joules == doctest::Approx(3.6 * 20).epsilon(1e-9));
    for (int i = 1; i <= 50; ++i) {
      sys.now += 0.2;
      if (i % 5 == 0) sys.Set("BAT0", "charge_now", std::to_string(charge += 400));
      REQUIRE(m.SampleOnce().ok());
    }
    const PhaseEnergy rising = m.Measure("train", t1, m.NowSeconds());
    CHECK(rising.source == EnergySource::kModelled);
    CHECK(rising.note.find("counter rose") != std::string::npos);
  }

  TEST_CASE("vanished files and absurd values are refused reading by reading; the trace and the meter survive") {
    FakeSysfs sys;
    int64_t energy = 40'000'000;
    sys.Set("BAT0", "energy_now", std::to_string(energy));
    auto meter = BatteryMeter::Open(sys.battery(), 5, sys.Clock());
    REQUIRE(meter.ok());
    BatteryMeter& m = **meter;
    m.Hold(true);
    CHECK(m.readings() == 1);
    sys.now += 0.2;
    sys.Remove("BAT0", "energy_now");  // a hot-unplugged battery
    Status gone = m.SampleOnce();
    CHECK(gone.error().code() == ErrorCode::kNotFound);
    sys.Set("BAT0", "voltage_now", "3800000");
    CHECK(m.SampleOnce().error().message().find("energy_now") != std::string::npos);
    sys.Set("BAT0", "energy_now", "lots");
    Status garbage = m.SampleOnce();
    CHECK(garbage.error().code() == ErrorCode::kDataLoss);
    CHECK(garbage.error().message().find("energy_now") != std::string::npos);
    sys.Set("BAT0", "energy_now", std::to_string(energy));
    sys.Set("BAT0", "voltage_now", "380000000000");  // 380 kV
    CHECK(m.SampleOnce().error().message().find("voltage_now") != std::string::npos);
    sys.Set("BAT0", "voltage_now", "3800000");
    sys.Set("BAT0", "energy_now", "-5");
    CHECK(m.SampleOnce().error().code() == ErrorCode::kDataLoss);
    CHECK(m.failed_reads() == 5);
    CHECK(m.readings() == 1);
    sys.Set("BAT0", "energy_now", std::to_string(energy));
    const double t0 = m.NowSeconds();
    Discharge(sys, m, 20.0, 2.0, 1.0, energy);
    const PhaseEnergy p = m.Measure("train", t0, m.NowSeconds());
    CHECK(p.source == EnergySource::kMeasured);
    CHECK(p.joules == doctest::Approx(static_cast<double>(std::llround(2.0 / 3.6e-3)) * 3.6e-3 * 20).epsilon(1e-9));
  }

  TEST_CASE("a gauge that never updates, or a device on its charger, leaves training to the model") {
    FakeSysfs sys;
    sys.Set("BAT0", "energy_now", "40000000");
    auto meter = BatteryMeter::Open(sys.battery(), 5, sys.Clock());
    REQUIRE(meter.ok());
    BatteryMeter& m = **meter;
    m.Hold(true);
    const double t0 = m.NowSeconds();
    for (int i = 0; i < 300; ++i) {
      sys.now += 0.2;
      REQUIRE(m.SampleOnce().ok());
    }
    const PhaseEnergy stuck = m.Measure("train", t0, m.NowSeconds());
    CHECK(stuck.source == EnergySource::kModelled);
    CHECK(stuck.note.find("never updated") != std::string::npos);

    sys.Set("BAT0", "status", "Charging");
    int64_t energy = 40'000'000;
    const double t1 = m.NowSeconds();
    Discharge(sys, m, 20.0, 2.0, 1.0, energy);
    const PhaseEnergy charging = m.Measure("train", t1, m.NowSeconds());
    CHECK(charging.source == EnergySource::kModelled);
    CHECK(charging.note.find("external power") != std::string::npos);
  }

  TEST_CASE("the sampler thread reads the gauge while held and stops when released") {
    FakeSysfs sys;
    sys.Set("BAT0", "energy_now", "40000000");
    auto meter = BatteryMeter::Open(sys.battery(), 50, SteadySeconds);
    REQUIRE(meter.ok());
    BatteryMeter& m = **meter;
    m.StartSampling();
    m.Hold(true);
    // Waits for readings without asserting how long they take.
    for (int i = 0; i < 2000 && m.readings() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK(m.readings() >= 3);
    m.Hold(false);
  }

  TEST_CASE("the task loop reports the gauge's training joules as measured, with every phase and its reason") {
    // The task loop's synthetic 4-feature, 3-class rig: the report, not learning, is under test.
    Rig rig;
    ScriptedMeter meter;
    rig.env.phases = &meter;
    TaskLoop loop(rig.env, rig.state);

    v1::Envelope reg;
    v1::Register* r = reg.mutable_register_();
    r->set_protocol_version(kProtocolVersion);
    r->set_client_id(7);
    r->set_model("logreg");
    r->set_dim(15);
    r->set_seed_init(true);
    r->set_seed(3);
    TrainConfig tc;
    tc.batch_size = 4;
    ToWire(tc, 0, r->mutable_train());
    ToWire(UplinkConfig{.density = 0.3}, true, r->mutable_codec());
    REQUIRE(loop.OnEnvelope(reg).decision.kind == LoopDecision::Kind::kContinue);
    REQUIRE(rig.state.held_version() == 1);

    v1::Envelope task;
    task.mutable_task()->set_round(1);
    task.mutable_task()->set_model_version(1);
    loop.OnEnvelope(task);
    CHECK(meter.holds == "+");
    std::vector<float> v1(15);
    (*MakeModel("logreg", 4, 3))->InitParams(v1, StreamSeed(3, SeedStream::kInit));
    RoundEngine engine(v1, EngineConfig{});
    const uint64_t selected[] = {7};
    REQUIRE(engine.OpenRound(1, selected).ok());
    auto payload = engine.ModelPayloadFor(1);
    REQUIRE(payload.ok());
    v1::Envelope model;
    model.mutable_model()->set_round(1);
    model.mutable_model()->set_payload(reinterpret_cast<const char*>((*payload)->data()), (*payload)->size());
    const LoopStep step = loop.OnEnvelope(model);
    CHECK(meter.holds == "+-");
    REQUIRE(step.send.size() == 1);
    REQUIRE(step.send[0].has_update());
    const v1::LedgerFigures& f = step.send[0].update().ledger();
    CHECK(f.measured());
    CHECK(f.measured_compute_j() == 12.5);
    CHECK(f.meter() == "battery FAKE (energy_now)");
    REQUIRE(f.phases_size() == 2);
    CHECK(f.phases(0).phase() == "download");
    CHECK_FALSE(f.phases(0).measured());
    CHECK(f.phases(0).note().find("update interval") != std::string::npos);
    CHECK(f.phases(1).phase() == "train");
    CHECK(f.phases(1).measured());
    CHECK(f.phases(1).joules() == 12.5);
    CHECK(f.flops() > 0);
  }
}

}  // namespace frugal::client
