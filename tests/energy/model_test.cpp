#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "energy/test_profiles.h"
#include "frugal/energy/model.h"

namespace frugal {
namespace {

// 5e-7 J/bit up, 1e-7 down, a 1 W x 10 s tail, 1 Mb/s up, 4 Mb/s down:
// 125,000 bytes up and 500,000 bytes down both take exactly 1 s.
RadioProfile TestRadio() {
  RadioProfile r;
  r.id = "r1";
  r.joules_per_bit_up = 5e-7;
  r.joules_per_bit_down = 1e-7;
  r.tail_watts = 1.0;
  r.tail_seconds = 10.0;
  r.bandwidth_up_bps = 1e6;
  r.bandwidth_down_bps = 4e6;
  return r;
}

TEST_SUITE("energy") {
  TEST_CASE("transfer time is bytes times eight over the bandwidth of that direction") {
    RadioProfile r = TestRadio();
    CHECK(TransferSeconds(r, 125000, Direction::kUp) == doctest::Approx(1.0));   // 1e6 bit / 1e6 bit/s
    CHECK(TransferSeconds(r, 500000, Direction::kDown) == doctest::Approx(1.0)); // 4e6 bit / 4e6 bit/s
    CHECK(TransferSeconds(r, 0, Direction::kUp) == 0.0);
  }

  TEST_CASE("a single burst pays its bits and one full tail") {
    RadioProfile r = TestRadio();
    std::vector<Transfer> s = {{0.0, 125000, Direction::kUp}};
    RadioCost c = RadioEnergy(r, s);
    // 1e6 bit x 5e-7 J/bit = 0.5 J, plus tail 1 W x 10 s = 10 J.
    CHECK(c.joules == doctest::Approx(10.5));
    CHECK(c.tail_joules == doctest::Approx(10.0));
    CHECK(c.seconds == doctest::Approx(1.0));
    CHECK(c.full_tails == 1);
  }

  TEST_CASE("bursts further apart than the tail each pay a full tail") {
    RadioProfile r = TestRadio();
    std::vector<Transfer> s = {{0.0, 500000, Direction::kDown}, {100.0, 125000, Direction::kUp}};
    RadioCost c = RadioEnergy(r, s);
    // 4e6 bit x 1e-7 = 0.4 J; 1e6 bit x 5e-7 = 0.5 J; two tails of 10 J.
    CHECK(c.joules == doctest::Approx(0.4 + 0.5 + 20.0));
    CHECK(c.tail_joules == doctest::Approx(20.0));
    CHECK(c.seconds == doctest::Approx(2.0));
    CHECK(c.full_tails == 2);
  }

  TEST_CASE("a burst inside the previous tail pays only the elapsed part of that tail") {
    RadioProfile r = TestRadio();
    // Download runs 0..1 s; the upload starts at 4 s, 3 s into the 10 s tail.
    std::vector<Transfer> s = {{0.0, 500000, Direction::kDown}, {4.0, 125000, Direction::kUp}};
    RadioCost c = RadioEnergy(r, s);
    // 0.4 J + 0.5 J + 1 W x 3 s + one full tail 10 J = 13.9 J.
    CHECK(c.joules == doctest::Approx(13.9));
    CHECK(c.tail_joules == doctest::Approx(13.0));
    CHECK(c.full_tails == 1);

    // The same two bursts with the second one 10 s after the first ends: the
    // tail has just expired, so both tails are full (20 J), no discount.
    std::vector<Transfer> late = {{0.0, 500000, Direction::kDown}, {11.0, 125000, Direction::kUp}};
    RadioCost l = RadioEnergy(r, late);
    CHECK(l.joules == doctest::Approx(0.4 + 0.5 + 20.0));
    CHECK(l.full_tails == 2);
  }

  TEST_CASE("overlapping bursts share one tail after the later of their ends") {
    RadioProfile r = TestRadio();
    // Upload 0..1 s and download 0.5..1.5 s overlap: no tail between them.
    std::vector<Transfer> s = {{0.0, 125000, Direction::kUp}, {0.5, 500000, Direction::kDown}};
    RadioCost c = RadioEnergy(r, s);
    CHECK(c.joules == doctest::Approx(0.5 + 0.4 + 10.0));
    CHECK(c.full_tails == 1);
    // A third burst at 3.5 s is 2 s after the merged activity ends at 1.5 s.
    s.push_back({3.5, 125000, Direction::kUp});
    RadioCost c3 = RadioEnergy(r, s);
    CHECK(c3.joules == doctest::Approx(0.5 + 0.4 + 0.5 + 2.0 + 10.0));
    CHECK(c3.tail_joules == doctest::Approx(12.0));
  }

  TEST_CASE("an unsorted schedule costs the same as the sorted one and empty transfers cost nothing") {
    RadioProfile r = TestRadio();
    std::vector<Transfer> sorted = {{0.0, 500000, Direction::kDown}, {4.0, 125000, Direction::kUp}};
    std::vector<Transfer> unsorted = {{4.0, 125000, Direction::kUp}, {0.0, 500000, Direction::kDown}};
    CHECK(RadioEnergy(r, unsorted).joules == doctest::Approx(RadioEnergy(r, sorted).joules));

    std::vector<Transfer> empty = {{0.0, 0, Direction::kUp}, {1.0, 0, Direction::kDown}};
    RadioCost c = RadioEnergy(r, empty);
    CHECK(c.joules == 0.0);
    CHECK(c.full_tails == 0);
    CHECK(RadioEnergy(r, {}).joules == 0.0);

    std::vector<Transfer> nan_start = {{std::numeric_limits<double>::quiet_NaN(), 125000, Direction::kUp}};
    CHECK(RadioEnergy(r, nan_start).joules == doctest::Approx(10.5));
  }

  TEST_CASE("a radio without a tail costs only its bits") {
    RadioProfile r = TestRadio();
    r.tail_watts = 0;
    r.tail_seconds = 0;
    std::vector<Transfer> s = {{0.0, 500000, Direction::kDown}, {0.5, 125000, Direction::kUp}};
    CHECK(RadioEnergy(r, s).joules == doctest::Approx(0.9));
  }

  TEST_CASE("compute energy follows FLOPs, class and precision; compute time is fp32") {
    DeviceProfile d;
    d.id = "d1";
    d.flops_per_s_fp32 = 1e10;
    d.joules_per_flop_fp32 = 2e-10;
    d.joules_per_flop_int8 = 5e-11;
    CHECK(ComputeJoules(d, 3e9) == doctest::Approx(0.6));          // 3e9 x 2e-10
    CHECK(ComputeJoules(d, 3e9, true) == doctest::Approx(0.15));   // 3e9 x 5e-11, FLOPs reported as int8
    CHECK(ComputeSeconds(d, 3e9) == doctest::Approx(0.3));         // 3e9 / 1e10
  }

  TEST_CASE("carbon is kWh times the region's intensity times PUE") {
    RegionProfile g;
    g.id = "G";
    g.gco2e_per_kwh = 400;
    CHECK(CarbonGrams(3.6e6, g, 12.0) == doctest::Approx(400.0));       // 1 kWh
    CHECK(CarbonGrams(3.6e6, g, 12.0, 1.5) == doctest::Approx(600.0));  // x PUE 1.5
    CHECK(CarbonGrams(0.0, g, 12.0) == 0.0);
  }

  TEST_CASE("carbon follows the hourly profile at the region's local hour") {
    RegionProfile g;
    g.id = "H";
    g.gco2e_per_kwh = 400;
    g.utc_offset_hours = 2;
    std::array<double, 24> hourly{};
    for (int h = 0; h < 24; ++h) hourly[static_cast<size_t>(h)] = 100.0 + 10.0 * h;
    g.hourly_gco2e_per_kwh = hourly;

    // 05:30 UTC is 07:30 local: hour 7 -> 170 g/kWh; 0.5 kWh -> 85 g.
    CHECK(CarbonGrams(1.8e6, g, 5.5) == doctest::Approx(85.0));
    CHECK(CarbonIntensity(g, 23.0) == doctest::Approx(110.0));   // 25 -> local 01
    CHECK(CarbonIntensity(g, -3.0) == doctest::Approx(330.0));   // -1 -> local 23
    CHECK(CarbonIntensity(g, 46.25) == doctest::Approx(100.0));  // 48.25 -> local 00
    CHECK(CarbonIntensity(g, std::nan("")) == doctest::Approx(400.0));  // falls back to the mean
    g.utc_offset_hours = -5.5;
    CHECK(CarbonIntensity(g, 3.0) == doctest::Approx(310.0));  // -2.5 -> local 21.5 -> 21
    // PUE applies on top of the hourly figure: 1 kWh at 08:00 local (180) x 1.2.
    g.utc_offset_hours = 0;
    CHECK(CarbonGrams(3.6e6, g, 8.0, 1.2) == doctest::Approx(216.0));
  }

  TEST_CASE("the coordinator's aggregation energy is CPU seconds times server watts times PUE") {
    auto p = EnergyProfiles::Parse(energy_test::kBaseToml, "base");
    REQUIRE(p.ok());
    auto c = ServerAggregationCost(*p, 360.0, 0.0);
    REQUIRE(c.ok());
    // 360 s x 10 W x PUE 1.5 = 5400 J; 5400 / 3.6e6 kWh x 500 g/kWh = 0.75 g.
    CHECK(c->joules == doctest::Approx(5400.0));
    CHECK(c->gco2e == doctest::Approx(0.75));
    auto bad = ServerAggregationCost(*p, -1.0, 0.0);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code() == ErrorCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace frugal
