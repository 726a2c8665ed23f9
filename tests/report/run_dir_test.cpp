// The run directory every front end writes: clients.csv round trips and its
// refusals, and WriteRunDirectory's files (written atomically).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/temp_dir.h"
#include "frugal/report/run_dir.h"

namespace frugal {
namespace {

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<RosterEntry> TwoClients() {
  RosterEntry a{.id = 1, .name = "device-0", .device = "phone-low", .radio = "wifi", .region = "world",
                .examples = 4321, .partition = PartitionSpec{.scheme = "dirichlet", .clients = 10, .alpha = 0.1 + 0.2,
                                                             .shards_per_client = 2, .seed = 18446744073709551615ULL,
                                                             .holdout = 0.2},
                .partition_index = 7};
  RosterEntry b{.id = 4, .name = "laptop-7", .device = "laptop", .radio = "5g", .region = "world", .examples = 99,
                .partition = std::nullopt, .partition_index = 0};
  return {a, b};
}

}  // namespace

TEST_SUITE("report") {
  TEST_CASE("clients.csv parses back to the same clients, partitions exactly") {
    const std::vector<RosterEntry> clients = TwoClients();
    std::ostringstream out;
    WriteClientsCsv(out, clients);
    CHECK(out.str().substr(0, out.str().find('\n')) == kClientsCsvHeader);
    auto back = ParseClientsCsv(out.str());
    REQUIRE(back.ok());
    REQUIRE(back->size() == 2);
    const RosterEntry& a = (*back)[0];
    CHECK(a.id == 1);
    CHECK(a.name == "device-0");
    CHECK(a.device == "phone-low");
    CHECK(a.examples == 4321);
    REQUIRE(a.partition.has_value());
    CHECK(a.partition->scheme == "dirichlet");
    CHECK(a.partition->clients == 10);
    CHECK(a.partition->alpha == 0.1 + 0.2);
    CHECK(a.partition->seed == 18446744073709551615ULL);
    CHECK(a.partition->holdout == 0.2);
    CHECK(a.partition_index == 7);
    CHECK_FALSE((*back)[1].partition.has_value());
    CHECK((*back)[1].radio == "5g");
  }

  TEST_CASE("malformed clients.csv is refused naming the line") {
    const std::string header = std::string(kClientsCsvHeader) + "\n";
    CHECK_FALSE(ParseClientsCsv("").ok());
    auto wrong = ParseClientsCsv("id,name\n");
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.error().message().find("line 1") != std::string::npos);
    auto short_row = ParseClientsCsv(header + "1,a,phone-low,wifi,world,5\n");
    REQUIRE_FALSE(short_row.ok());
    CHECK(short_row.error().message().find("line 2") != std::string::npos);
    auto bad_id = ParseClientsCsv(header + "x,a,phone-low,wifi,world,5,,,,,,,\n");
    REQUIRE_FALSE(bad_id.ok());
    CHECK(bad_id.error().message().find("client_id") != std::string::npos);
    auto bad_split = ParseClientsCsv(header + "1,a,phone-low,wifi,world,5,iid,10,3,0.5,2,1,nan?\n");
    REQUIRE_FALSE(bad_split.ok());
    CHECK(bad_split.error().message().find("partition") != std::string::npos);
  }

  TEST_CASE("WriteRunDirectory writes every file, and leaves no temporary behind") {
    testing::TempDir dir;
    RunSummary sum;
    sum.run_id = "r";
    std::vector<RoundRecord> rounds(2);
    rounds[0].round = 1;
    rounds[1].round = 2;
    rounds[1].utc_hour = 3.25;
    EnergyLedger ledger("r");
    const std::vector<RosterEntry> clients = TwoClients();
    RunFiles files;
    files.summary = &sum;
    files.rounds = rounds;
    files.ledger = &ledger;
    files.run_toml = "seed = 3\n";
    files.clients = clients;
    const std::filesystem::path out = dir.Path("run");
    REQUIRE(WriteRunDirectory(out, files).ok());
    for (const char* f : {"run.toml", "clients.csv", "rounds.csv", "ledger.csv", "emissions.csv", "summary.json",
                          "report.html"}) {
      CHECK_MESSAGE(std::filesystem::exists(out / f), f);
      CHECK_FALSE(std::filesystem::exists(out / (std::string(f) + ".tmp")));
    }
    CHECK(Slurp(out / "run.toml") == "seed = 3\n");
    auto parsed = ParseRoundsCsv(Slurp(out / "rounds.csv"));
    REQUIRE(parsed.ok());
    CHECK((*parsed)[1].utc_hour == 3.25);
    // A file that cannot be created is an error naming it, not a silent skip.
    std::filesystem::create_directories(out / "blocked.tmp");
    const Status st = WriteFileAtomic(out / "blocked", [](std::ostream& os) { os << "x"; });
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().message().find("blocked") != std::string::npos);
  }
}

}  // namespace frugal
