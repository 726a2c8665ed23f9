#include "frugal/energy/battery.h"

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

namespace frugal {
namespace {

// A gauge discharging at `watts` whose energy_now counter the driver updates
// every `update_s` (it holds the value between updates), read every `read_s`.
std::vector<GaugeReading> EnergyCounter(double watts, double update_s, double read_s, double t_end,
                                        int64_t start_uwh = 40'000'000) {
  std::vector<GaugeReading> out;
  for (double t = 0; t <= t_end + 1e-9; t += read_s) {
    GaugeReading r;
    r.t_s = t;
    const double last_update = std::floor(t / update_s + 1e-9) * update_s;
    r.energy_now_uwh = start_uwh - static_cast<int64_t>(std::llround(watts * last_update / 3.6e-3));
    r.status = "Discharging";
    out.push_back(r);
  }
  return out;
}

GaugeTrace TraceOf(GaugeKind kind, const std::vector<GaugeReading>& readings) {
  GaugeTrace trace(kind);
  for (const GaugeReading& r : readings) REQUIRE(trace.Add(r).ok());
  return trace;
}

TEST_SUITE("energy") {
  TEST_CASE("a falling energy counter gives the constant power times the phase's length") {
    const GaugeTrace trace = TraceOf(GaugeKind::kEnergy, EnergyCounter(2.5, 2.0, 0.2, 60));
    const PhaseEnergy p = trace.Measure("train", 10.1, 40.1);
    CHECK(p.source == EnergySource::kMeasured);
    // Plain reference: 2.5 W for 30 s (the counter is whole µWh, so within rounding).
    CHECK(p.joules == doctest::Approx(75.0).epsilon(1e-4));
    CHECK(p.seconds == doctest::Approx(30.0));
    CHECK(p.note.find("measured (energy_now)") == 0);
    REQUIRE(trace.UpdateIntervalS().has_value());
    CHECK(*trace.UpdateIntervalS() == doctest::Approx(2.0));
  }

  TEST_CASE("a phase shorter than the gauge's update interval is attributed by the model, and says so") {
    const GaugeTrace trace = TraceOf(GaugeKind::kEnergy, EnergyCounter(3.0, 10.0, 0.2, 60));
    const PhaseEnergy p = trace.Measure("download", 21.0, 24.0);
    CHECK(p.source == EnergySource::kModelled);
    CHECK(p.joules == 0);
    CHECK(p.note.find("shorter than the gauge's update interval (10.0 s)") != std::string::npos);
    // Longer than the interval but spanning only one update: still not resolved.
    const PhaseEnergy q = trace.Measure("train", 21.0, 35.0);
    CHECK(q.source == EnergySource::kModelled);
    CHECK(q.note.find("fewer than twice") != std::string::npos);
  }

  TEST_CASE("a gauge that never updates leaves every phase to the model") {
    std::vector<GaugeReading> readings = EnergyCounter(0.0, 1.0, 0.2, 30);
    const GaugeTrace trace = TraceOf(GaugeKind::kEnergy, readings);
    const PhaseEnergy p = trace.Measure("train", 1, 29);
    CHECK(p.source == EnergySource::kModelled);
    CHECK(p.note.find("never updated") != std::string::npos);
    CHECK_FALSE(trace.UpdateIntervalS().has_value());
  }

  TEST_CASE("a rising counter or a charging status is not a measurement of the device") {
    std::vector<GaugeReading> readings = EnergyCounter(2.0, 1.0, 0.2, 30);
    // A charger plugged in at 15 s: the counter climbs from there.
    for (GaugeReading& r : readings) {
      if (r.t_s > 15) *r.energy_now_uwh += static_cast<int64_t>((r.t_s - 15) * 5000);
    }
    const GaugeTrace rising = TraceOf(GaugeKind::kEnergy, readings);
    CHECK(rising.Measure("train", 2, 10).source == EnergySource::kMeasured);
    const PhaseEnergy p = rising.Measure("train", 10, 25);
    CHECK(p.source == EnergySource::kModelled);
    CHECK(p.note.find("counter rose") != std::string::npos);

    std::vector<GaugeReading> charging = EnergyCounter(2.0, 1.0, 0.2, 30);
    for (GaugeReading& r : charging) r.status = "Charging";
    const PhaseEnergy c = TraceOf(GaugeKind::kEnergy, charging).Measure("train", 2, 20);
    CHECK(c.source == EnergySource::kModelled);
    CHECK(c.note.find("external power") != std::string::npos);
  }

  TEST_CASE("absurd readings are refused with the field named, and the trace stays intact") {
    GaugeTrace trace(GaugeKind::kChargeVoltage);
    GaugeReading ok;
    ok.t_s = 1;
    ok.charge_now_uah = 3'000'000;
    ok.voltage_now_uv = 3'800'000;
    REQUIRE(trace.Add(ok).ok());
    GaugeReading bad = ok;
    bad.t_s = 2;
    bad.voltage_now_uv = 400'000'000;  // 400 V
    Status st = trace.Add(bad);
    CHECK(st.error().code() == ErrorCode::kDataLoss);
    CHECK(st.error().message().find("voltage_now") != std::string::npos);
    bad = ok;
    bad.t_s = 2;
    bad.charge_now_uah = -5;
    CHECK(trace.Add(bad).error().message().find("charge_now") != std::string::npos);
    bad = ok;
    bad.t_s = 2;
    bad.current_now_ua = 90'000'000;
    CHECK(trace.Add(bad).error().message().find("current_now") != std::string::npos);
    bad = ok;
    bad.t_s = 0.5;  // older than the last reading
    CHECK(trace.Add(bad).error().code() == ErrorCode::kInvalidArgument);
    bad = ok;
    bad.t_s = 2;
    bad.voltage_now_uv.reset();
    CHECK(trace.Add(bad).error().code() == ErrorCode::kInvalidArgument);
    CHECK(trace.size() == 1);

    GaugeReading huge;
    huge.energy_now_uwh = kGaugeMaxEnergyUwh + 1;
    CHECK(ValidateGaugeReading(huge).error().message().find("energy_now") != std::string::npos);
  }

  TEST_CASE("charge times voltage uses the charge drop at the mean voltage") {
    GaugeTrace trace(GaugeKind::kChargeVoltage);
    // 1 mAh every 2 s at 3.7..3.9 V alternating: mean 3.8 V.
    for (int i = 0; i <= 100; ++i) {
      GaugeReading r;
      r.t_s = i * 0.2;
      r.charge_now_uah = 2'000'000 - 1000 * static_cast<int64_t>(i / 10);
      r.voltage_now_uv = i % 2 == 0 ? 3'700'000 : 3'900'000;
      r.status = "Discharging";
      REQUIRE(trace.Add(r).ok());
    }
    const PhaseEnergy p = trace.Measure("train", 1.0, 19.0);
    REQUIRE(p.source == EnergySource::kMeasured);
    // Updates at 2, 4, ..., 18 s: 8 mAh over 16 s. Plain reference: ΔQ(C) × V̄ / Δt × phase.
    const double mean_v = [] {
      double s = 0;
      for (int i = 10; i <= 90; ++i) s += i % 2 == 0 ? 3.7 : 3.9;
      return s / 81;
    }();
    const double expected = (8e-3 * 3600 * mean_v) / 16.0 * 18.0;
    CHECK(p.joules == doctest::Approx(expected).epsilon(1e-9));
  }

  TEST_CASE("current times voltage sampled at 5 Hz is integrated; sparser samples are not") {
    std::vector<GaugeReading> readings;
    for (int i = 0; i <= 100; ++i) {
      GaugeReading r;
      r.t_s = i * 0.2;
      // A load that steps between 0.5 A and 1.5 A each second; this driver reports discharge as negative.
      r.current_now_ua = (i / 5) % 2 == 0 ? -500'000 : -1'500'000;
      r.voltage_now_uv = 4'000'000;
      r.status = "Discharging";
      readings.push_back(r);
    }
    const GaugeTrace trace = TraceOf(GaugeKind::kCurrentVoltage, readings);
    const PhaseEnergy p = trace.Measure("train", 0.0, 20.0);
    REQUIRE(p.source == EnergySource::kMeasured);
    // Plain reference: trapezoids over the readings, |I| V.
    double ref = 0;
    for (size_t i = 1; i < readings.size(); ++i) {
      const double w0 = std::abs(*readings[i - 1].current_now_ua) * 4.0e-6;
      const double w1 = std::abs(*readings[i].current_now_ua) * 4.0e-6;
      ref += 0.5 * (w0 + w1) * 0.2;
    }
    CHECK(p.joules == doctest::Approx(ref).epsilon(1e-9));

    std::vector<GaugeReading> sparse;
    for (size_t i = 0; i < readings.size(); i += 5) sparse.push_back(readings[i]);  // 1 Hz
    const PhaseEnergy s = TraceOf(GaugeKind::kCurrentVoltage, sparse).Measure("train", 0.0, 20.0);
    CHECK(s.source == EnergySource::kModelled);
    CHECK(s.note.find("readings a second") != std::string::npos);

    // A current that never changes is a stale average, not a reading.
    for (GaugeReading& r : readings) r.current_now_ua = -700'000;
    const PhaseEnergy f = TraceOf(GaugeKind::kCurrentVoltage, readings).Measure("train", 0.0, 20.0);
    CHECK(f.source == EnergySource::kModelled);
    CHECK(f.note.find("never updated") != std::string::npos);
  }

  TEST_CASE("a change across a pause in sampling is not counted as a gauge update") {
    GaugeTrace trace(GaugeKind::kEnergy);
    std::vector<GaugeReading> a = EnergyCounter(2.0, 5.0, 0.2, 4.0);
    for (const GaugeReading& r : a) REQUIRE(trace.Add(r).ok());
    trace.Break();
    // After the pause, one update 20 s later: the counter dropped while nobody read it.
    std::vector<GaugeReading> b = EnergyCounter(2.0, 5.0, 0.2, 4.0, 39'000'000);
    for (GaugeReading r : b) {
      r.t_s += 100;
      REQUIRE(trace.Add(r).ok());
    }
    const PhaseEnergy p = trace.Measure("train", 100, 104);
    CHECK(p.source == EnergySource::kModelled);
    // A pause inside a phase, after which the counter reads higher (a charger
    // came and went): never a negative or a made-up measurement.
    GaugeTrace paused(GaugeKind::kEnergy);
    for (const GaugeReading& r : EnergyCounter(2.0, 1.0, 0.2, 10.0)) REQUIRE(paused.Add(r).ok());
    paused.Break();
    for (GaugeReading r : EnergyCounter(2.0, 1.0, 0.2, 10.0, 45'000'000)) {
      r.t_s += 10.2;
      REQUIRE(paused.Add(r).ok());
    }
    const PhaseEnergy q = paused.Measure("train", 2, 18);
    CHECK(q.source == EnergySource::kModelled);
    CHECK(q.note.find("not read for part of the phase") != std::string::npos);
    CHECK(paused.Measure("train", 10.2, 20).source == EnergySource::kMeasured);  // resumed as the phase began
  }

  TEST_CASE("the gauge kind follows the files a driver exposes") {
    GaugeReading r;
    CHECK(ChooseGaugeKind(r).error().code() == ErrorCode::kNotFound);
    r.current_now_ua = 1;
    r.voltage_now_uv = 3'700'000;
    CHECK(*ChooseGaugeKind(r) == GaugeKind::kCurrentVoltage);
    r.charge_now_uah = 1;
    CHECK(*ChooseGaugeKind(r) == GaugeKind::kChargeVoltage);
    r.energy_now_uwh = 1;
    CHECK(*ChooseGaugeKind(r) == GaugeKind::kEnergy);
  }
}

}  // namespace
}  // namespace frugal
