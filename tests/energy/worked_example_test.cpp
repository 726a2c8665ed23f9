#include <doctest/doctest.h>

#include <vector>

#include "frugal/energy/ledger.h"

namespace frugal {
namespace {

// The worked example of docs/energy-model.md, on the shipped profiles: a
// phone-mid client downloads 200,000 bytes, trains 3.6e9 fp32 FLOPs, uploads
// 10,000 bytes as soon as training ends, on each radio, in region "world"
// (473 g/kWh). If a shipped constant changes, update the doc table with it.
struct Example {
  double radio_j;
  double total_j;
  int full_tails;
};

Example RunExample(const EnergyProfiles& p, const char* radio_id) {
  const DeviceProfile& phone = **p.Device("phone-mid");
  const RadioProfile& radio = **p.Radio(radio_id);
  const RegionProfile& world = **p.Region("world");
  const double down_s = TransferSeconds(radio, 200000, Direction::kDown);
  const double up_start = down_s + ComputeSeconds(phone, 3.6e9);
  std::vector<Transfer> schedule = {{0.0, 200000, Direction::kDown}, {up_start, 10000, Direction::kUp}};
  ClientRoundUsage u;
  u.flops = 3.6e9;
  u.transfers = schedule;
  LedgerRow row = MakeLedgerRow("example", phone, radio, world, u);
  CHECK(row.gco2e == doctest::Approx(row.total_j / 3.6e6 * 473.0));
  return {row.radio_j, row.total_j, RadioEnergy(radio, schedule).full_tails};
}

TEST_SUITE("energy") {
  TEST_CASE("the worked example in docs/energy-model.md holds for the shipped profiles") {
    auto p = EnergyProfiles::LoadDefault();
    REQUIRE(p.ok());
    // phone-mid: 3.6e9 FLOP x 1.5e-10 J = 0.54 J in 3.6e9 / 2e10 = 0.18 s, so the
    // upload starts 0.18 s after the download ends: inside every radio's tail.
    CHECK(ComputeJoules(**p->Device("phone-mid"), 3.6e9) == doctest::Approx(0.54));

    // Wi-Fi: 1.6e6 bit x 1.40e-7 + 8e4 bit x 2.90e-7 + 0.25 W x 0.18 s + 0.25 W x 0.2 s.
    Example wifi = RunExample(*p, "wifi");
    CHECK(wifi.radio_j == doctest::Approx(0.224 + 0.0232 + 0.045 + 0.05));
    CHECK(wifi.total_j == doctest::Approx(0.8822));
    CHECK(wifi.full_tails == 1);
    // LTE: 1.6e6 x 1.51e-7 + 8e4 x 6.53e-7 + 1 W x 0.18 s + 1 W x 11.6 s.
    Example lte = RunExample(*p, "lte");
    CHECK(lte.radio_j == doctest::Approx(0.2416 + 0.05224 + 0.18 + 11.6));
    CHECK(lte.total_j == doctest::Approx(12.61384));
    // 5G: 1.6e6 x 8.42e-8 + 8e4 x 5.45e-7 + 2.5 W x 0.18 s + 2.5 W x 11.6 s.
    Example nr = RunExample(*p, "5g");
    CHECK(nr.radio_j == doctest::Approx(0.13472 + 0.0436 + 0.45 + 29.0));
    CHECK(nr.total_j == doctest::Approx(30.16832));
    // 3G: 1.6e6 x 5.31e-7 + 8e4 x 1.69e-6 + 0.8 W x 0.18 s + 0.8 W x 12 s.
    Example g3 = RunExample(*p, "3g");
    CHECK(g3.radio_j == doctest::Approx(0.8496 + 0.1352 + 0.144 + 9.6));
    CHECK(g3.total_j == doctest::Approx(11.2688));
    // Ethernet: (1.6e6 + 8e4) bit x 5e-10 J, no tail.
    Example eth = RunExample(*p, "ethernet");
    CHECK(eth.radio_j == doctest::Approx(0.00084));
    CHECK(eth.total_j == doctest::Approx(0.54084));
  }
}

}  // namespace
}  // namespace frugal
