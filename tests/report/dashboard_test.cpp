// The one page in its three uses: the coordinator's live dashboard (page and
// GET /api/state document), a comparison of runs, and the per-client totals
// the clients table shows, checked against a plain loop over the ledger.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "frugal/core/random.h"
#include "frugal/report/dashboard.h"

namespace frugal {
namespace {

nlohmann::json EmbeddedJson(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"frugal-data\">";
  const size_t start = html.find(open);
  REQUIRE(start != std::string::npos);
  const size_t end = html.find("</script>", start);
  REQUIRE(end != std::string::npos);
  return nlohmann::json::parse(html.substr(start + open.size(), end - start - open.size()));
}

std::vector<RoundRecord> Rounds(uint32_t n, double slope, uint64_t bytes) {
  std::vector<RoundRecord> out;
  for (uint32_t r = 1; r <= n; ++r) {
    RoundRecord rec;
    rec.round = r;
    rec.accuracy = std::min(0.9, slope * r);
    rec.bytes_up = bytes;
    rec.bytes_down = bytes;
    rec.joules_compute = 2;
    rec.joules_radio = 1;
    rec.gco2e = 0.5;
    out.push_back(rec);
  }
  return out;
}

PageData LivePage(std::span<const RoundRecord> records) {
  PageData p;
  p.title = "Frugal coordinator";
  p.target_accuracy = 0.8;
  p.runs.push_back({"frugal", records});
  DashboardStatus st;
  st.run_id = "r1";
  st.state = "training";
  st.round = 3;
  st.rounds_total = 10;
  st.model_version = 3;
  st.round_open = true;
  st.connected = 2;
  st.min_clients = 2;
  p.status = st;
  const auto client = [](uint64_t id, std::string name, std::string state) {
    DashboardClient c;
    c.id = id;
    c.name = std::move(name);
    c.device = "phone-mid";
    c.radio = "lte";
    c.region = "FR";
    c.state = std::move(state);
    return c;
  };
  p.clients = std::vector<DashboardClient>{client(1, "alice", "training"), client(2, "<b>bob</b>", "gone")};
  p.round = DashboardRound{.round = 3, .open = true, .selected = 2, .received = 1, .stragglers = 0,
                           .rejected = {{"bob", "wrong_dimension"}}};
  return p;
}

TEST_SUITE("report") {
  TEST_CASE("client totals equal a plain sum of each client's ledger rows") {
    Rng rng(7);
    std::vector<LedgerRow> rows;
    for (int i = 0; i < 500; ++i) {
      LedgerRow r;
      r.client_id = 1 + rng.UniformInt(5);  // 5 is not in the table: its rows are skipped
      r.bytes_up = rng.UniformInt(10'000);
      r.bytes_down = rng.UniformInt(100'000);
      r.total_j = rng.Uniform() * 3;
      r.gco2e = rng.Uniform();
      r.outcome = static_cast<ClientOutcome>(rng.UniformInt(4));
      r.source = rng.UniformInt(50) == 0 ? EnergySource::kMeasured : EnergySource::kModelled;
      rows.push_back(r);
    }
    std::vector<DashboardClient> clients(4);
    for (uint64_t id = 1; id <= 4; ++id) clients[id - 1].id = id;
    FillClientTotals(rows, clients);
    for (const DashboardClient& c : clients) {
      uint32_t rounds = 0;
      uint64_t bytes = 0;
      double joules = 0, grams = 0;
      bool measured = false;
      for (const LedgerRow& r : rows) {
        if (r.client_id != c.id) continue;
        if (r.outcome == ClientOutcome::kParticipated) ++rounds;
        bytes += r.bytes_up + r.bytes_down;
        joules += r.total_j;
        grams += r.gco2e;
        measured = measured || r.source == EnergySource::kMeasured;
      }
      CHECK(c.rounds == rounds);
      CHECK(c.bytes == bytes);
      CHECK(c.joules == doctest::Approx(joules));
      CHECK(c.gco2e == doctest::Approx(grams));
      CHECK(c.measured == measured);
    }
  }

  TEST_CASE("the live dashboard is the report page with the status, round and clients parts, polling") {
    const auto records = Rounds(3, 0.2, 1000);
    const PageData page = LivePage(records);
    std::ostringstream out;
    WriteDashboardHtml(out, page);
    const std::string html = out.str();
    for (const char* id : {"chart-accuracy", "chart-bytes", "chart-energy", "chart-carbon", "clients", "status",
                           "round", "live"}) {
      CHECK_MESSAGE(html.find("id=\"" + std::string(id) + "\"") != std::string::npos, id);
    }
    CHECK(html.find("<script src") == std::string::npos);
    CHECK(html.find("<link") == std::string::npos);
    CHECK(html.find("<b>bob</b>") == std::string::npos);  // names reach the page only as JSON
    const nlohmann::json data = EmbeddedJson(html);
    CHECK(data["live"] == true);
    // The embedded document is the one GET /api/state serves, but for the flag.
    nlohmann::json state = nlohmann::json::parse(PageDataJson(page));
    CHECK(state["live"] == false);
    state["live"] = true;
    CHECK(state == data);
  }

  TEST_CASE("the state document carries clients, the round, and epsilon and its bound's labels only when the run reports one") {
    const auto records = Rounds(2, 0.3, 10);
    PageData page = LivePage(records);
    nlohmann::json j = nlohmann::json::parse(PageDataJson(page));
    CHECK_FALSE(j["status"].contains("epsilon"));
    CHECK_FALSE(j["status"].contains("dp_bound"));
    CHECK(j["status"]["next_round_in_s"].is_null());
    REQUIRE(j["clients"].size() == 2);
    CHECK(j["clients"][1]["name"] == "<b>bob</b>");
    CHECK(j["clients"][1]["state"] == "gone");
    CHECK(j["clients"][0]["last_seen_s"].is_null());
    CHECK(j["round"]["rejected"][0]["reason"] == "wrong_dimension");
    CHECK(j["runs"][0]["cum_bytes"][1] == 40);
    page.status->epsilon = 1.25;
    page.status->dp_sampling = "fixed_size";
    page.status->dp_adjacency = "replace_one";
    page.status->dp_bound = "proven";
    page.status->next_round_in_s = 4.5;
    page.clients->front().last_seen_s = 0.5;
    j = nlohmann::json::parse(PageDataJson(page));
    CHECK(j["status"]["epsilon"] == 1.25);
    CHECK(j["status"]["dp_sampling"] == "fixed_size");
    CHECK(j["status"]["dp_adjacency"] == "replace_one");
    CHECK(j["status"]["dp_bound"] == "proven");
    CHECK(j["status"]["next_round_in_s"] == 4.5);
    CHECK(j["clients"][0]["last_seen_s"] == 0.5);
  }

  TEST_CASE("measured against modelled energy per device class reaches the page only when a client measured") {
    const auto records = Rounds(3, 0.2, 100);
    PageData page = LivePage(records);
    std::ostringstream none;
    WriteDashboardHtml(none, page);
    CHECK(EmbeddedJson(none.str())["measured_vs_modelled"].empty());
    CHECK(none.str().find("<section id=\"measured-section\" hidden>") != std::string::npos);

    // From a ledger: one measured row of phone-mid beside its modelled figure, one modelled row.
    EnergyLedger ledger("r1");
    LedgerRow measured;
    measured.device = "phone-mid";
    measured.compute_j = 3.0;
    measured.modelled_compute_j = 2.0;
    measured.source = EnergySource::kMeasured;
    LedgerRow modelled;
    modelled.device = "rpi4";
    modelled.compute_j = 5.0;
    ledger.Add(measured);
    ledger.Add(modelled);
    page.measured_vs_modelled = ledger.MeasuredVsModelledByDevice();
    const nlohmann::json data = nlohmann::json::parse(PageDataJson(page));
    REQUIRE(data["measured_vs_modelled"].size() == 1);
    CHECK(data["measured_vs_modelled"][0]["device"] == "phone-mid");
    CHECK(data["measured_vs_modelled"][0]["rows"] == 1);
    CHECK(data["measured_vs_modelled"][0]["measured_j"].get<double>() == 3.0);
    CHECK(data["measured_vs_modelled"][0]["modelled_j"].get<double>() == 2.0);
    CHECK(data["measured_vs_modelled"][0]["ratio"].get<double>() == doctest::Approx(1.5));
  }

  TEST_CASE("a comparison overlays every run and gives each figure's ratio to the first run") {
    std::vector<ComparedRun> runs = {{"dense", Rounds(10, 0.1, 1'000'000)}, {"<i>frugal</i>", Rounds(10, 0.05, 10'000)}};
    std::ostringstream out;
    WriteCompareHtml(out, runs, 0.8);
    const std::string html = out.str();
    const nlohmann::json data = EmbeddedJson(html);
    REQUIRE(data["runs"].size() == 2);
    CHECK(data["runs"][1]["label"] == "<i>frugal</i>");
    CHECK(html.find("<i>frugal</i>") == std::string::npos);
    CHECK(html.find("id=\"compare\"") != std::string::npos);
    // dense reaches 0.8 in round 8 after 16 MB; frugal never does (0.05 * 10 = 0.5).
    CHECK(html.find("16 MB (16,000,000 B)") != std::string::npos);
    CHECK(html.find("not reached") != std::string::npos);
    // Whole-run bytes: 20 MB against 200 kB, a ratio of 100.
    CHECK(html.find("200 kB (200,000 B) (100\xC3\x97)") != std::string::npos);
  }
}

}  // namespace
}  // namespace frugal
