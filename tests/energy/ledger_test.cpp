#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

#include "energy/test_profiles.h"
#include "frugal/energy/ledger.h"

namespace frugal {
namespace {

std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> fields;
  std::string cur;
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cur += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  fields.push_back(cur);
  return fields;
}

// The test ledger: four client rows over two rounds plus server energy, built
// from the profiles in test_profiles.h (region X: 500 g/kWh).
struct Fixture {
  EnergyProfiles profiles;
  EnergyLedger ledger{"run-1"};

  Fixture() {
    auto p = EnergyProfiles::Parse(energy_test::kBaseToml, "base");
    REQUIRE_MESSAGE(p.ok(), p.status().ToString());
    profiles = *p;
    const DeviceProfile& d1 = **profiles.Device("d1");
    const DeviceProfile& d2 = **profiles.Device("d2");
    const RadioProfile& r1 = **profiles.Radio("r1");
    const RadioProfile& r2 = **profiles.Radio("r2");
    const RegionProfile& x = **profiles.Region("X");

    // Row 1: round 1, client 7, d1 over r1: model down 0..1 s, update up at 4 s.
    std::vector<Transfer> t1 = {{0.0, 500000, Direction::kDown}, {4.0, 125000, Direction::kUp}};
    ClientRoundUsage u1;
    u1.round = 1;
    u1.client_id = 7;
    u1.flops = 3e9;
    u1.transfers = t1;
    ledger.Add(MakeLedgerRow("", d1, r1, x, u1));

    // Row 2: round 1, client 8, d2 over r1, int8, dropped after the download.
    std::vector<Transfer> t2 = {{0.0, 500000, Direction::kDown}};
    ClientRoundUsage u2;
    u2.round = 1;
    u2.client_id = 8;
    u2.flops = 8e9;
    u2.int8 = true;
    u2.transfers = t2;
    u2.outcome = ClientOutcome::kDropped;
    ledger.Add(MakeLedgerRow("", d2, r1, x, u2));

    // Row 3: round 2, client 7, d1 over r1, compute measured at 2.5 J, straggled.
    std::vector<Transfer> t3 = {{0.0, 250000, Direction::kDown}, {100.0, 62500, Direction::kUp}};
    ClientRoundUsage u3;
    u3.round = 2;
    u3.client_id = 7;
    u3.flops = 3e9;
    u3.transfers = t3;
    u3.measured_compute_j = 2.5;
    u3.outcome = ClientOutcome::kStraggled;
    ledger.Add(MakeLedgerRow("", d1, r1, x, u3));

    // Row 4: round 2, client 9, d2 over r2 (no tail).
    std::vector<Transfer> t4 = {{0.0, 1000000, Direction::kDown}, {1.0, 100000, Direction::kUp}};
    ClientRoundUsage u4;
    u4.round = 2;
    u4.client_id = 9;
    u4.flops = 1e9;
    u4.transfers = t4;
    LedgerRow r4 = MakeLedgerRow("", d2, r2, x, u4);
    r4.robust = "clipped: norm 4.2 > bound 1.3";  // a comma-free verdict, as the engine writes them
    ledger.Add(r4);

    ledger.AddServer(1, 5400.0, 0.75);
    ledger.AddServer(2, 3000.0, 0.4);
    ledger.AddServer(2, 600.0, 0.1);  // a second aggregation step in round 2
  }
};

// grams of CO2e for `joules` at 500 g/kWh.
constexpr double GramsAt500(double joules) { return joules / 3.6e6 * 500.0; }

TEST_SUITE("energy") {
  TEST_CASE("ledger rows match joules and grams worked out by hand") {
    Fixture f;
    const auto& rows = f.ledger.rows();
    REQUIRE(rows.size() == 4);

    const LedgerRow& r1 = rows[0];
    CHECK(r1.run_id == "run-1");
    CHECK(r1.device == "d1");
    CHECK(r1.radio == "r1");
    CHECK(r1.region == "X");
    CHECK(r1.bytes_down == 500000);
    CHECK(r1.bytes_up == 125000);
    CHECK(r1.compute_j == doctest::Approx(0.6));  // 3e9 FLOP x 2e-10 J
    // 4e6 bit x 1e-7 = 0.4 J down; 1e6 bit x 5e-7 = 0.5 J up; the upload starts
    // 3 s into the download's tail: 1 W x 3 s; then one full tail 1 W x 10 s.
    CHECK(r1.radio_j == doctest::Approx(0.4 + 0.5 + 3.0 + 10.0));
    CHECK(r1.total_j == doctest::Approx(14.5));
    CHECK(r1.gco2e == doctest::Approx(14.5 / 3.6e6 * 500.0));
    CHECK(r1.source == EnergySource::kModelled);
    CHECK(r1.outcome == ClientOutcome::kParticipated);

    const LedgerRow& r2 = rows[1];
    CHECK(r2.compute_j == doctest::Approx(0.2));              // 8e9 int8 ops x 2.5e-11 J
    CHECK(r2.radio_j == doctest::Approx(0.4 + 10.0));         // download and its full tail
    CHECK(r2.total_j == doctest::Approx(10.6));
    CHECK(r2.gco2e == doctest::Approx(0.0014722222).epsilon(1e-8));  // 10.6 / 3.6e6 x 500
    CHECK(r2.bytes_up == 0);
    CHECK(r2.outcome == ClientOutcome::kDropped);

    const LedgerRow& r3 = rows[2];
    CHECK(r3.compute_j == 2.5);
    CHECK(r3.source == EnergySource::kMeasured);
    // 2e6 bit x 1e-7 = 0.2 J; 5e5 bit x 5e-7 = 0.25 J; 100 s apart: two full tails.
    CHECK(r3.radio_j == doctest::Approx(0.2 + 0.25 + 20.0));
    CHECK(r3.total_j == doctest::Approx(22.95));
    CHECK(r3.outcome == ClientOutcome::kStraggled);

    const LedgerRow& r4 = rows[3];
    CHECK(r4.compute_j == doctest::Approx(0.1));                  // 1e9 x 1e-10
    CHECK(r4.radio_j == doctest::Approx(8e6 * 1e-9 + 8e5 * 1e-9));  // 0.0088 J, no tail
    CHECK(r4.total_j == doctest::Approx(0.1088));
    CHECK(r4.gco2e == doctest::Approx(GramsAt500(0.1088)));
  }

  TEST_CASE("round, run, radio and device totals add the rows they cover") {
    Fixture f;
    EnergyTotals r1 = f.ledger.RoundTotals(1);
    CHECK(r1.rows == 2);
    CHECK(r1.bytes_up == 125000);
    CHECK(r1.bytes_down == 1000000);
    CHECK(r1.flops == doctest::Approx(1.1e10));
    CHECK(r1.compute_j == doctest::Approx(0.8));
    CHECK(r1.radio_j == doctest::Approx(24.3));
    CHECK(r1.total_j == doctest::Approx(25.1));
    CHECK(r1.gco2e == doctest::Approx(GramsAt500(25.1)));
    CHECK(r1.participated == 1);
    CHECK(r1.dropped == 1);
    CHECK(r1.server_j == doctest::Approx(5400.0));
    CHECK(r1.server_gco2e == doctest::Approx(0.75));
    CHECK(r1.all_j() == doctest::Approx(5425.1));

    EnergyTotals r2 = f.ledger.RoundTotals(2);
    CHECK(r2.rows == 2);
    CHECK(r2.bytes_up == 162500);
    CHECK(r2.bytes_down == 1250000);
    CHECK(r2.total_j == doctest::Approx(23.0588));
    CHECK(r2.straggled == 1);
    CHECK(r2.measured == 1);
    CHECK(r2.server_j == doctest::Approx(3600.0));
    CHECK(r2.server_gco2e == doctest::Approx(0.5));

    CHECK(f.ledger.RoundTotals(3).rows == 0);

    EnergyTotals run = f.ledger.RunTotals();
    CHECK(run.rows == 4);
    CHECK(run.bytes_up == 287500);
    CHECK(run.bytes_down == 2250000);
    CHECK(run.compute_j == doctest::Approx(3.4));
    CHECK(run.radio_j == doctest::Approx(44.7588));
    CHECK(run.total_j == doctest::Approx(48.1588));
    CHECK(run.gco2e == doctest::Approx(GramsAt500(48.1588)));
    CHECK(run.server_j == doctest::Approx(9000.0));
    CHECK(run.all_gco2e() == doctest::Approx(GramsAt500(48.1588) + 1.25));

    auto by_radio = f.ledger.TotalsByRadio();
    REQUIRE(by_radio.size() == 2);
    CHECK(by_radio["r1"].rows == 3);
    CHECK(by_radio["r1"].total_j == doctest::Approx(14.5 + 10.6 + 22.95));
    CHECK(by_radio["r1"].radio_j == doctest::Approx(13.9 + 10.4 + 20.45));
    CHECK(by_radio["r2"].rows == 1);
    CHECK(by_radio["r2"].total_j == doctest::Approx(0.1088));

    auto by_device = f.ledger.TotalsByDevice();
    REQUIRE(by_device.size() == 2);
    CHECK(by_device["d1"].total_j == doctest::Approx(14.5 + 22.95));
    CHECK(by_device["d2"].total_j == doctest::Approx(10.6 + 0.1088));
    CHECK(by_device["d2"].compute_j == doctest::Approx(0.3));
  }

  TEST_CASE("ledger.csv has the header, one line per row, and joules and grams in its columns") {
    Fixture f;
    std::ostringstream out;
    f.ledger.WriteLedgerCsv(out);
    auto lines = SplitLines(out.str());
    REQUIRE(lines.size() == 1 + 4 + 2);  // header, client rows, one server line per round
    CHECK(lines[0] ==
          "run_id,round,client_id,device,radio,region,bytes_up,bytes_down,flops,compute_j,radio_j,"
          "total_j,gco2e,source,outcome,robust");
    auto c1 = SplitCsv(lines[1]);
    REQUIRE(c1.size() == 16);
    CHECK(c1[0] == "run-1");
    CHECK(c1[1] == "1");
    CHECK(c1[2] == "7");
    CHECK(c1[3] == "d1");
    CHECK(c1[4] == "r1");
    CHECK(c1[5] == "X");
    CHECK(c1[6] == "125000");
    CHECK(c1[7] == "500000");
    CHECK(std::stod(c1[8]) == 3e9);
    CHECK(std::stod(c1[9]) == doctest::Approx(0.6));
    CHECK(std::stod(c1[10]) == doctest::Approx(13.9));
    CHECK(std::stod(c1[11]) == doctest::Approx(14.5));
    CHECK(std::stod(c1[12]) == doctest::Approx(GramsAt500(14.5)));
    CHECK(c1[13] == "modelled");
    CHECK(c1[14] == "participated");
    CHECK(c1[15].empty());  // kept as sent
    CHECK(SplitCsv(lines[2])[14] == "dropped");
    CHECK(SplitCsv(lines[4])[15] == "clipped: norm 4.2 > bound 1.3");
    CHECK(SplitCsv(lines[3])[13] == "measured");
    CHECK(SplitCsv(lines[3])[14] == "straggled");
    // Numbers are written so they read back exactly.
    CHECK(std::stod(SplitCsv(lines[4])[11]) == f.ledger.rows()[3].total_j);

    auto s2 = SplitCsv(lines[6]);
    REQUIRE(s2.size() == 16);
    CHECK(s2[1] == "2");
    CHECK(s2[2].empty());
    CHECK(s2[3] == "server");
    CHECK(std::stod(s2[11]) == doctest::Approx(3600.0));
    CHECK(std::stod(s2[12]) == doctest::Approx(0.5));
    CHECK(s2[14] == "aggregation");
  }

  TEST_CASE("a field with a comma or quote is quoted in the CSV") {
    EnergyLedger ledger("run,\"x\"");
    LedgerRow row;
    row.device = "d";
    ledger.Add(row);
    std::ostringstream out;
    ledger.WriteLedgerCsv(out);
    auto lines = SplitLines(out.str());
    REQUIRE(lines.size() == 2);
    CHECK(lines[1].substr(0, 11) == "\"run,\"\"x\"\"\"");
    CHECK(SplitCsv(lines[1])[0] == "run,\"x\"");
    CHECK(SplitCsv(lines[1]).size() == 16);
  }

  TEST_CASE("a measured row keeps the model's figure beside it, summed per device class") {
    Fixture f;
    const DeviceProfile& d1 = **f.profiles.Device("d1");
    // Row 3 (d1, 3e9 fp32 FLOPs) is the only measured one: 2.5 J against the model's figure.
    const auto by_device = f.ledger.MeasuredVsModelledByDevice();
    REQUIRE(by_device.size() == 1);
    const MeasuredVsModelled& m = by_device.at("d1");
    CHECK(m.rows == 1);
    CHECK(m.measured_j == 2.5);
    CHECK(m.modelled_j == doctest::Approx(3e9 * d1.joules_per_flop_fp32));
    CHECK(m.ratio() == doctest::Approx(2.5 / (3e9 * d1.joules_per_flop_fp32)));
    // Every row carries the modelled figure; a row without it (read back from a store) is left out.
    for (const LedgerRow& row : f.ledger.rows()) CHECK(row.modelled_compute_j.has_value());
    LedgerRow restored = f.ledger.rows()[2];
    restored.modelled_compute_j.reset();
    f.ledger.Add(restored);
    CHECK(f.ledger.MeasuredVsModelledByDevice().at("d1").rows == 1);
  }

  TEST_CASE("a federated evaluation's row is counted as evaluated, not as a participation") {
    Fixture f;
    const DeviceProfile& d1 = **f.profiles.Device("d1");
    const RadioProfile& r1 = **f.profiles.Radio("r1");
    const RegionProfile& x = **f.profiles.Region("X");
    const std::vector<Transfer> down = {{0.0, 500000, Direction::kDown}};
    ClientRoundUsage u;
    u.round = 2;
    u.client_id = 11;
    u.flops = 1e8;
    u.transfers = down;
    u.outcome = ClientOutcome::kEvaluated;
    const LedgerRow row = MakeLedgerRow("run-1", d1, r1, x, u);
    CHECK(row.radio_j > 0);
    CHECK(row.compute_j > 0);
    const EnergyTotals before = f.ledger.RoundTotals(2);
    f.ledger.Add(row);
    const EnergyTotals after = f.ledger.RoundTotals(2);
    CHECK(after.evaluated == 1);
    CHECK(after.participated == before.participated);
    CHECK(after.rows == before.rows + 1);
    CHECK(after.total_j == doctest::Approx(before.total_j + row.total_j));
    std::ostringstream out;
    f.ledger.WriteLedgerCsv(out);
    auto lines = SplitLines(out.str());
    REQUIRE(lines.size() > 5);
    CHECK(SplitCsv(lines[5])[2] == "11");  // the fifth client row, after the fixture's four
    CHECK(SplitCsv(lines[5])[14] == "evaluated");
  }

  TEST_CASE("emissions.csv follows CodeCarbon's columns and units: kg, kWh, kg/s, s") {
    Fixture f;
    EnergyLedger::EmissionsMeta meta{.project_name = "frugal",
                                     .timestamp = "2026-11-26T12:00:00",
                                     .duration_s = 100.0,
                                     .country_iso_code = "FRA",
                                     .region = "X",
                                     .pue = 1.5};
    std::ostringstream out;
    f.ledger.WriteEmissionsCsv(out, meta);
    auto lines = SplitLines(out.str());
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] ==
          "timestamp,project_name,run_id,duration,emissions,emissions_rate,energy_consumed,"
          "country_iso_code,region,pue");
    auto c = SplitCsv(lines[1]);
    REQUIRE(c.size() == 10);
    CHECK(c[0] == "2026-11-26T12:00:00");
    CHECK(c[1] == "frugal");
    CHECK(c[2] == "run-1");
    CHECK(std::stod(c[3]) == 100.0);
    // Clients 48.1588 J (0.0066887 g) plus server 9000 J (1.25 g).
    const double grams = 48.1588 / 3.6e6 * 500.0 + 1.25;
    CHECK(std::stod(c[4]) == doctest::Approx(grams / 1000.0));          // kg CO2e
    CHECK(std::stod(c[5]) == doctest::Approx(grams / 1000.0 / 100.0));  // kg/s
    CHECK(std::stod(c[6]) == doctest::Approx((48.1588 + 9000.0) / 3.6e6));  // kWh
    CHECK(c[7] == "FRA");
    CHECK(c[8] == "X");
    CHECK(std::stod(c[9]) == 1.5);

    // Zero duration: the rate is 0, not a division by zero.
    meta.duration_s = 0;
    std::ostringstream zero;
    f.ledger.WriteEmissionsCsv(zero, meta);
    CHECK(std::stod(SplitCsv(SplitLines(zero.str())[1])[5]) == 0.0);
  }
}

}  // namespace
}  // namespace frugal
