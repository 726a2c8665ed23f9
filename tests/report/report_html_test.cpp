#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "frugal/core/random.h"
#include "frugal/report/run_report.h"

namespace frugal {
namespace {

// A made-up run: accuracy rising on a saturating curve, with bytes and joules
// per round fixed. Synthetic because these tests check the page, not learning.
std::vector<RoundRecord> FakeRun(uint32_t rounds, double ceiling, double speed,
                                 uint64_t bytes_per_round, double joules_per_round) {
  std::vector<RoundRecord> records;
  for (uint32_t i = 1; i <= rounds; ++i) {
    RoundRecord r;
    r.round = i;
    r.accuracy = 0.1 + (ceiling - 0.1) * (1.0 - std::exp(-speed * i));
    r.loss = 2.3 * std::exp(-speed * i) + 0.3;
    r.bytes_up = bytes_per_round / 5;
    r.bytes_down = bytes_per_round - r.bytes_up;
    r.joules_compute = 0.8 * joules_per_round;
    r.joules_radio = 0.2 * joules_per_round;
    r.gco2e = joules_per_round / 3.6e6 * 300;  // 300 gCO2e/kWh
    r.selected = 110;
    r.completed = 100;
    r.stragglers = 10;
    r.virtual_seconds = 90.0 * i;
    r.wall_seconds = 0.05;
    records.push_back(r);
  }
  return records;
}

RunSummary FakeSummary(std::span<const RoundRecord> records) {
  RunSummary s;
  s.run_id = "20261126-fake-01";
  s.scenario = "fmnist-dirichlet-0.3";
  s.pipeline = "topk1%-int8";
  s.model = "mlp-784-128-10";
  ComputeTargets(records, 0.80, s);
  s.joules_server = 5400;
  s.wall_seconds = 2.0;
  s.client_updates_per_second = 3000;
  s.peak_rss_bytes = 512ULL << 20;
  s.joules_by_radio = {{"lte", 0.7 * s.joules_client}, {"wifi", 0.3 * s.joules_client}};
  s.joules_by_device = {{"phone-low", 0.5 * s.joules_client},
                        {"phone-high", 0.5 * s.joules_client}};
  s.notes = {
      "each of the 1,000 clients holds a seeded sample of 32 examples drawn from its own "
      "class mixture",
      "synthetic records written by tests/report/report_html_test.cpp"};
  s.config = {
      {"round.clients_per_round", "100"}, {"codec.uplink", "topk 0.01 int8"}, {"train.lr", "0.05"}};
  s.extra_metrics = {{"mean_staleness", 0.25}};
  return s;
}

// The JSON inside <script type="application/json" id="frugal-data">.
nlohmann::json EmbeddedData(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"frugal-data\">";
  const size_t start = html.find(open);
  REQUIRE(start != std::string::npos);
  const size_t end = html.find("</script>", start);
  REQUIRE(end != std::string::npos);
  return nlohmann::json::parse(html.substr(start + open.size(), end - start - open.size()));
}

// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or
// code points past U+10FFFF). A plain reference decoder for the test.
bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else
      return false;
    if (i + extra >= s.size()) return false;
    for (int k = 1; k <= extra; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

std::string SamplePath(std::string_view name) {
  return std::string(FRUGAL_REPORT_SAMPLE_DIR) + "/" + std::string(name);
}

TEST_SUITE("report") {
  TEST_CASE("report.html inlines uPlot and loads nothing from the network") {
    const auto records = FakeRun(30, 0.85, 0.12, 2'000'000, 900);
    std::ostringstream out;
    WriteReportHtml(out, FakeSummary(records), records);
    const std::string html = out.str();

    CHECK(html.rfind("<!doctype html>", 0) == 0);
    CHECK(html.find("var uPlot=") != std::string::npos);  // the library's code itself
    CHECK(html.find(".uplot") != std::string::npos);      // its stylesheet
    CHECK(html.find("new uPlot(") != std::string::npos);
    CHECK(html.find("<script src") == std::string::npos);
    CHECK(html.find("<link") == std::string::npos);
    CHECK(html.find("src=\"http") == std::string::npos);
    CHECK(html.find("src=http") == std::string::npos);
    CHECK(html.find("Permission is hereby granted") !=
          std::string::npos);  // MIT licence travels along
  }

  TEST_CASE("report.html has the four chart containers and the series as JSON") {
    const auto records = FakeRun(30, 0.85, 0.12, 2'000'000, 900);
    std::ostringstream out;
    WriteReportHtml(out, FakeSummary(records), records);
    const std::string html = out.str();

    CHECK(html.find("id=\"chart-accuracy\"") != std::string::npos);
    CHECK(html.find("id=\"chart-bytes\"") != std::string::npos);
    CHECK(html.find("id=\"chart-energy\"") != std::string::npos);
    CHECK(html.find("id=\"chart-carbon\"") != std::string::npos);
    // A finished run's page neither polls nor shows the live-only parts.
    CHECK(html.find("id=\"clients\"") == std::string::npos);
    CHECK(html.find("id=\"status\"") == std::string::npos);

    const nlohmann::json data = EmbeddedData(html);
    CHECK(data["target"] == 0.80);
    CHECK(data["live"] == false);
    REQUIRE(data["runs"].size() == 1);
    REQUIRE(data["runs"][0]["round"].size() == 30);
    CHECK(data["runs"][0]["round"][0] == 1);
    CHECK(data["runs"][0]["accuracy"][29].get<double>() == records[29].accuracy);
    CHECK(data["runs"][0]["cum_bytes"][0] == 2'000'000);
    CHECK(data["runs"][0]["cum_bytes"][29] == 60'000'000);
    CHECK(data["runs"][0]["cum_joules"][29].get<double>() == doctest::Approx(27'000));
    double grams = 0;
    for (const RoundRecord& r : records) grams += r.gco2e;
    CHECK(data["runs"][0]["cum_gco2e"][29].get<double>() == doctest::Approx(grams));
  }

  TEST_CASE("report.html escapes user strings in the markup and in the embedded JSON") {
    const auto records = FakeRun(5, 0.85, 0.12, 1000, 1);
    RunSummary s = FakeSummary(records);
    s.scenario = "<script>alert(1)</script>";
    s.pipeline = "a&b \"quoted\" 'single'";
    s.notes = {"</script><script>alert(2)</script>"};
    s.config = {{"<b>key</b>", "<img src=x onerror=alert(3)>"}};
    s.joules_by_radio = {{"<i>radio</i>", 1.0}};
    std::ostringstream out;
    WriteReportHtml(out, s, records, records, "<u>dense</u>");
    const std::string html = out.str();

    CHECK(html.find("alert(1)") != std::string::npos);
    CHECK(html.find("<script>alert(1)") == std::string::npos);
    CHECK(html.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
    CHECK(html.find("<script>alert(2)") == std::string::npos);
    CHECK(html.find("<img src=x") == std::string::npos);
    CHECK(html.find("&lt;img src=x onerror=alert(3)&gt;") != std::string::npos);
    CHECK(html.find("<b>key</b>") == std::string::npos);
    CHECK(html.find("<i>radio</i>") == std::string::npos);
    CHECK(html.find("<u>dense</u>") == std::string::npos);
    CHECK(html.find("a&amp;b &quot;quoted&quot; &#39;single&#39;") != std::string::npos);
    // Exactly the page's own three script elements, however hostile the strings.
    size_t scripts = 0;
    for (size_t at = html.find("<script"); at != std::string::npos;
         at = html.find("<script", at + 1)) {
      ++scripts;
    }
    CHECK(scripts == 3);
    // The labels still reach the charts intact, via JSON.
    const nlohmann::json data = EmbeddedData(html);
    CHECK(data["runs"][0]["label"] == "a&b \"quoted\" 'single'");
    CHECK(data["runs"][1]["label"] == "<u>dense</u>");
  }

  TEST_CASE("report.html replaces bytes that are not UTF-8 instead of passing them through") {
    const auto records = FakeRun(3, 0.85, 0.12, 1000, 1);
    RunSummary s = FakeSummary(records);
    s.scenario = std::string("bad\xff\xc0\xaf name");  // stray byte and an overlong '/'
    std::ostringstream out;
    WriteReportHtml(out, s, records);
    const std::string html = out.str();
    CHECK(html.find("\xff") == std::string::npos);
    CHECK(html.find("\xc0\xaf") == std::string::npos);
    CHECK(html.find("bad\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD name") != std::string::npos);
  }

  TEST_CASE("report.html is valid UTF-8 whatever bytes the user strings hold") {
    const auto records = FakeRun(3, 0.85, 0.12, 1000, 1);
    Rng rng(7);
    for (int trial = 0; trial < 200; ++trial) {
      RunSummary s = FakeSummary(records);
      std::string junk(static_cast<size_t>(rng.UniformInt(24)), '\0');
      for (char& c : junk) c = static_cast<char>(rng.UniformInt(256));
      s.scenario = junk;
      s.notes = {junk + "\xF0\x9F"};  // ends inside a 4-byte sequence
      s.config = {{junk, junk}};
      std::ostringstream out;
      WriteReportHtml(out, s, records, records, junk);
      const std::string html = out.str();
      REQUIRE(IsValidUtf8(html));
      CHECK_NOTHROW(EmbeddedData(html));
    }
    CHECK(IsValidUtf8("caf\xC3\xA9 \xF0\x9F\x98\x80"));  // the checker accepts good text ...
    CHECK_FALSE(IsValidUtf8("\xED\xA0\x80"));            // ... and rejects a surrogate
  }

  TEST_CASE("report.html compares against a baseline drawn on the same charts") {
    const auto run = FakeRun(40, 0.86, 0.10, 400'000, 700);
    const auto dense = FakeRun(40, 0.87, 0.12, 16'000'000, 1100);
    const RunSummary s = FakeSummary(run);
    std::ostringstream out;
    WriteReportHtml(out, s, run, dense, "dense fp32");
    const std::string html = out.str();

    CHECK(html.find("Against dense fp32") != std::string::npos);
    const nlohmann::json data = EmbeddedData(html);
    REQUIRE(data["runs"].size() == 2);
    CHECK(data["runs"][1]["label"] == "dense fp32");
    CHECK(data["runs"][1]["cum_bytes"][39] == 640'000'000);

    // Both reach 0.80; the table shows each one's rounds and bytes to it.
    const TargetFigures b = FindTarget(dense, 0.80);
    REQUIRE(b.rounds_to_target.has_value());
    REQUIRE(s.rounds_to_target.has_value());
    CHECK(*b.rounds_to_target < *s.rounds_to_target);  // dense learns faster per round ...
    CHECK(*b.bytes_to_target > *s.bytes_to_target);    // ... but spends far more bytes
  }

  TEST_CASE("report.html of a run that never reached its target says so") {
    const auto records = FakeRun(10, 0.60, 0.2, 1000, 1);
    const RunSummary s = FakeSummary(records);
    REQUIRE_FALSE(s.rounds_to_target.has_value());
    std::ostringstream out;
    WriteReportHtml(out, s, records);
    CHECK(out.str().find("Did not reach accuracy 0.8 within 10 rounds.") != std::string::npos);
    CHECK(out.str().find("not reached") != std::string::npos);
  }

  TEST_CASE("a report of no rounds is still a complete page") {
    RunSummary s;
    std::ostringstream out;
    WriteReportHtml(out, s, {});
    const std::string html = out.str();
    CHECK(html.find("</html>") != std::string::npos);
    CHECK(EmbeddedData(html)["runs"][0]["round"].empty());
  }

  // Writes report_sample.html, rounds_sample.csv and summary_sample.json into
  // tests/report/ of the build tree (FRUGAL_REPORT_SAMPLE_DIR) so a person or
  // a headless browser can look at a real page.
  TEST_CASE("a sample report of a small fake run is written to the build tree for viewing") {
    const auto run = FakeRun(40, 0.86, 0.10, 400'000, 700);
    const auto dense = FakeRun(40, 0.87, 0.12, 16'000'000, 1100);
    const RunSummary s = FakeSummary(run);
    {
      std::ofstream html(SamplePath("report_sample.html"), std::ios::binary);
      REQUIRE(html.good());
      WriteReportHtml(html, s, run, dense, "dense fp32");
      CHECK(html.good());
    }
    {
      std::ofstream csv(SamplePath("rounds_sample.csv"), std::ios::binary);
      WriteRoundsCsv(csv, run);
      CHECK(csv.good());
    }
    {
      std::ofstream json(SamplePath("summary_sample.json"), std::ios::binary);
      WriteSummaryJson(json, s);
      CHECK(json.good());
    }
  }
}

}  // namespace
}  // namespace frugal
