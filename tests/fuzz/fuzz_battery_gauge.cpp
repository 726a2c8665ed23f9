// libFuzzer target for the battery fuel gauge's readings (the values the
// agent reads from /sys/class/power_supply): the input is a series of
// readings (time step, energy/charge/voltage/current, status), fed to a
// GaugeTrace of each kind; a reading is refused or kept, and every phase
// measured is finite, non-negative, and measured only with a note saying how.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>

#include "frugal/energy/battery.h"
#include "fuzz_common.h"

namespace {

int64_t Take64(const uint8_t*& p, const uint8_t* end) {
  int64_t v = 0;
  const size_t n = std::min<size_t>(8, static_cast<size_t>(end - p));
  std::memcpy(&v, p, n);
  p += n;
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace frugal;
  GaugeTrace traces[] = {GaugeTrace(GaugeKind::kEnergy, 5, 512), GaugeTrace(GaugeKind::kChargeVoltage, 5, 512),
                         GaugeTrace(GaugeKind::kCurrentVoltage, 5, 512)};
  const uint8_t* p = data;
  const uint8_t* end = data + size;
  double t = 0;
  constexpr const char* kStatus[] = {"Discharging", "Charging", "Full", "Not charging", "", "Unknown"};
  while (end - p >= 2) {
    const uint8_t flags = *p++;
    t += static_cast<double>(*p++) * 0.01;  // 0..2.55 s between readings
    GaugeReading r;
    r.t_s = t;
    // Small deltas around plausible values mostly, raw 64-bit values sometimes.
    auto value = [&](int64_t base) { return flags & 0x80 ? Take64(p, end) : base + (Take64(p, end) % 100000); };
    if (flags & 1) r.energy_now_uwh = value(40'000'000);
    if (flags & 2) r.charge_now_uah = value(3'000'000);
    if (flags & 4) r.voltage_now_uv = value(3'800'000);
    if (flags & 8) r.current_now_ua = value(-500'000);
    r.status = kStatus[(flags >> 4) % 6];
    for (GaugeTrace& trace : traces) {
      const size_t before = trace.size();
      const Status st = trace.Add(r);
      fuzz::Require(st.ok() ? trace.size() == std::min<size_t>(before + 1, 512) : trace.size() == before);
    }
    if (flags & 0x40) {
      for (GaugeTrace& trace : traces) trace.Break();
    }
  }
  for (const GaugeTrace& trace : traces) {
    for (double t0 : {0.0, t / 3, t / 2}) {
      const PhaseEnergy e = trace.Measure("train", t0, t);
      fuzz::Require(std::isfinite(e.joules) && e.joules >= 0 && !e.note.empty());
      fuzz::Require(e.source == EnergySource::kMeasured || e.joules == 0);
    }
    if (auto u = trace.UpdateIntervalS()) fuzz::Require(std::isfinite(*u) && *u >= 0);
  }
  return 0;
}
