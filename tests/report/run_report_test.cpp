#include "frugal/report/run_report.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "frugal/core/random.h"

namespace frugal {
namespace {

// Hand-made rounds: small literal numbers so the cumulative figures can be
// checked by hand.
std::vector<RoundRecord> ThreeRounds() {
  std::vector<RoundRecord> r(3);
  r[0] = {.round = 1,
          .accuracy = 0.40,
          .loss = 1.7,
          .bytes_up = 100,
          .bytes_down = 1000,
          .joules_compute = 2.0,
          .joules_radio = 0.5,
          .gco2e = 0.01,
          .selected = 10,
          .completed = 9,
          .stragglers = 1,
          .virtual_seconds = 60,
          .wall_seconds = 0.25,
          .utc_hour = 13.5};
  r[1] = {.round = 2,
          .accuracy = 0.70,
          .loss = 0.9,
          .bytes_up = 200,
          .bytes_down = 2000,
          .joules_compute = 3.0,
          .joules_radio = 1.5,
          .gco2e = 0.02,
          .selected = 10,
          .completed = 10,
          .stragglers = 0,
          .virtual_seconds = 120,
          .wall_seconds = 0.5};
  r[2] = {.round = 3,
          .accuracy = 0.65,
          .loss = 1.0,
          .bytes_up = 300,
          .bytes_down = 3000,
          .joules_compute = 4.0,
          .joules_radio = 2.5,
          .gco2e = 0.03,
          .selected = 12,
          .completed = 11,
          .stragglers = 1,
          .virtual_seconds = 180,
          .wall_seconds = 0.75,
          .robust_clipped = 2,
          .robust_downweighted = 1,
          .robust_rejected = 3,
          .backdoor_success = 0.125,
          .dp_epsilon = 2.5,
          .dp_delta = 1e-5,
          .accuracy_int8 = 0.875,
          .protocol_bytes_up = 5'000'000'000ULL,
          .protocol_bytes_down = 4321,
          .protocol_cpu_seconds = 0.0625,
          .trigger = {.scanned = 1, .flagged = 0, .anomaly = 3.5, .known = 2, .unlearnt = 1, .pruned = 16},
          .ring_wraps = 7,
          .ring_wraps_one_bit_less = 4'000'000'000LL};
  return r;
}

TEST_SUITE("report") {
  TEST_CASE("rounds.csv starts with the exact header and its values parse back unchanged") {
    std::vector<RoundRecord> records = ThreeRounds();
    records[1].accuracy = 0.1 + 0.2;  // not exactly representable in few digits
    records[2].joules_radio = 1.0 / 3.0;
    records[2].bytes_down = 18'000'000'000'000ULL;  // beyond 32 bits
    std::ostringstream out;
    WriteRoundsCsv(out, records);
    const std::string text = out.str();

    CHECK(text.substr(0, text.find('\n')) ==
          "round,accuracy,loss,bytes_up,bytes_down,joules_compute,joules_radio,gco2e,"
          "selected,completed,stragglers,virtual_seconds,wall_seconds,utc_hour,"
          "robust_clipped,robust_downweighted,robust_rejected,backdoor_success,dp_epsilon,dp_delta,accuracy_int8,"
          "protocol_bytes_up,protocol_bytes_down,protocol_cpu_seconds,"
          "trigger_scanned,trigger_flagged,trigger_anomaly,trigger_known,trigger_unlearnt,trigger_pruned,"
          "ring_wraps,ring_wraps_one_bit_less");
    CHECK(text.find("\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,13.5,0,0,0,-1,-1,-1,-1,0,0,0,0,-1,0,0,0,0,,\n") !=
          std::string::npos);
    // round 3's robust counts, backdoor rate, privacy spent, int8 accuracy, secure protocol cost, trigger scan
    // and ring wraps (rounds 1 and 2 were not counted: empty)
    CHECK(text.ends_with(",180,0.75,0,2,1,3,0.125,2.5,1e-05,0.875,5000000000,4321,0.0625,1,0,3.5,2,1,16,7,4000000000\n"));

    auto parsed = ParseRoundsCsv(text);
    REQUIRE(parsed.ok());
    REQUIRE(parsed->size() == records.size());
    for (size_t i = 0; i < records.size(); ++i) {
      const RoundRecord& a = records[i];
      const RoundRecord& b = (*parsed)[i];
      CHECK(b.round == a.round);
      CHECK(b.accuracy == a.accuracy);  // exact: shortest round-trip text
      CHECK(b.loss == a.loss);
      CHECK(b.bytes_up == a.bytes_up);
      CHECK(b.bytes_down == a.bytes_down);
      CHECK(b.joules_compute == a.joules_compute);
      CHECK(b.joules_radio == a.joules_radio);
      CHECK(b.gco2e == a.gco2e);
      CHECK(b.selected == a.selected);
      CHECK(b.completed == a.completed);
      CHECK(b.stragglers == a.stragglers);
      CHECK(b.virtual_seconds == a.virtual_seconds);
      CHECK(b.wall_seconds == a.wall_seconds);
      CHECK(b.utc_hour == a.utc_hour);
      CHECK(b.robust_clipped == a.robust_clipped);
      CHECK(b.robust_downweighted == a.robust_downweighted);
      CHECK(b.robust_rejected == a.robust_rejected);
      CHECK(b.backdoor_success == a.backdoor_success);
      CHECK(b.dp_epsilon == a.dp_epsilon);
      CHECK(b.dp_delta == a.dp_delta);
      CHECK(b.accuracy_int8 == a.accuracy_int8);
      CHECK(b.protocol_bytes_up == a.protocol_bytes_up);
      CHECK(b.protocol_bytes_down == a.protocol_bytes_down);
      CHECK(b.protocol_cpu_seconds == a.protocol_cpu_seconds);
      CHECK(b.trigger.scanned == a.trigger.scanned);
      CHECK(b.trigger.flagged == a.trigger.flagged);
      CHECK(b.trigger.anomaly == a.trigger.anomaly);
      CHECK(b.trigger.known == a.trigger.known);
      CHECK(b.trigger.unlearnt == a.trigger.unlearnt);
      CHECK(b.trigger.pruned == a.trigger.pruned);
      CHECK(b.ring_wraps == a.ring_wraps);
      CHECK(b.ring_wraps_one_bit_less == a.ring_wraps_one_bit_less);
    }
  }

  TEST_CASE("rounds.csv leaves the protocol columns empty when the protocol did not run, and parses them back") {
    std::vector<RoundRecord> records = ThreeRounds();
    records[2].protocol_bytes_up = records[2].protocol_bytes_down = 0;
    records[2].protocol_cpu_seconds = -1;  // frugal-sim with secure.run_protocol = false
    std::ostringstream out;
    WriteRoundsCsv(out, records);
    const std::string text = out.str();
    CHECK(text.ends_with(",0.125,2.5,1e-05,0.875,,,,1,0,3.5,2,1,16,7,4000000000\n"));
    auto parsed = ParseRoundsCsv(text);
    REQUIRE_MESSAGE(parsed.ok(), parsed.status().ToString());
    CHECK((*parsed)[2].protocol_cpu_seconds == -1);
    CHECK((*parsed)[2].protocol_bytes_up == 0);
    CHECK((*parsed)[1].protocol_cpu_seconds == records[1].protocol_cpu_seconds);
    CHECK((*parsed)[2].trigger.pruned == 16);  // the columns after the empty ones still land in place
    // One empty protocol column alone is a damaged file, not an unrun protocol.
    const std::string damaged = text.substr(0, text.size() - 32) + ",5,,,1,0,3.5,2,1,16,7,4000000000\n";
    CHECK(!ParseRoundsCsv(damaged).ok());
  }

  TEST_CASE("rounds.csv written before the robust and backdoor columns still parses") {
    const std::string old_header =
        "round,accuracy,loss,bytes_up,bytes_down,joules_compute,joules_radio,gco2e,"
        "selected,completed,stragglers,virtual_seconds,wall_seconds,utc_hour\n";
    auto parsed = ParseRoundsCsv(old_header + "1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12\n");
    REQUIRE(parsed.ok());
    REQUIRE(parsed->size() == 1);
    CHECK((*parsed)[0].utc_hour == 12);
    CHECK((*parsed)[0].robust_rejected == 0);
    CHECK((*parsed)[0].backdoor_success == -1);
    // A row of the new width under the old header is still a column error.
    auto mixed = ParseRoundsCsv(old_header + "1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1\n");
    REQUIRE_FALSE(mixed.ok());
    CHECK(mixed.error().message().find("18 columns, expected 14") != std::string::npos);
  }

  TEST_CASE("rounds.csv written before the dp_epsilon and dp_delta columns still parses") {
    const std::string v2_header(kRoundsCsvHeader.substr(0, kRoundsCsvHeader.find(",dp_epsilon")));
    auto parsed = ParseRoundsCsv(v2_header + "\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,1,0,0,0.5\n");
    REQUIRE(parsed.ok());
    REQUIRE(parsed->size() == 1);
    CHECK((*parsed)[0].robust_clipped == 1);
    CHECK((*parsed)[0].backdoor_success == 0.5);
    CHECK((*parsed)[0].dp_epsilon == -1);
    CHECK((*parsed)[0].dp_delta == -1);
    auto mixed = ParseRoundsCsv(v2_header + "\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1,3,1e-5\n");
    REQUIRE_FALSE(mixed.ok());
    CHECK(mixed.error().message().find("20 columns, expected 18") != std::string::npos);
  }

  TEST_CASE("rounds.csv written before the accuracy_int8 column still parses") {
    const std::string v3_header(kRoundsCsvHeader.substr(0, kRoundsCsvHeader.find(",accuracy_int8")));
    auto parsed = ParseRoundsCsv(v3_header + "\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,1,0,0,0.5,3,1e-5\n");
    REQUIRE(parsed.ok());
    REQUIRE(parsed->size() == 1);
    CHECK((*parsed)[0].dp_epsilon == 3);
    CHECK((*parsed)[0].accuracy_int8 == -1);
    auto mixed = ParseRoundsCsv(v3_header + "\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1,3,1e-5,0.8\n");
    REQUIRE_FALSE(mixed.ok());
    CHECK(mixed.error().message().find("21 columns, expected 20") != std::string::npos);
  }

  TEST_CASE("rounds.csv written before the protocol_* columns still parses, with zero protocol cost") {
    const std::string v4_header(kRoundsCsvHeader.substr(0, kRoundsCsvHeader.find(",protocol_bytes_up")));
    CHECK(v4_header.ends_with(",accuracy_int8"));
    auto parsed =
        ParseRoundsCsv(v4_header + "\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,1,0,0,0.5,3,1e-5,0.8\n");
    REQUIRE(parsed.ok());
    REQUIRE(parsed->size() == 1);
    CHECK((*parsed)[0].accuracy_int8 == 0.8);
    CHECK((*parsed)[0].protocol_bytes_up == 0);
    CHECK((*parsed)[0].protocol_bytes_down == 0);
    CHECK((*parsed)[0].protocol_cpu_seconds == 0);
    auto mixed =
        ParseRoundsCsv(v4_header + "\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1,3,1e-5,0.8,7,8,0.5\n");
    REQUIRE_FALSE(mixed.ok());
    CHECK(mixed.error().message().find("24 columns, expected 21") != std::string::npos);
    // A row of the new width missing a column is refused, naming the count.
    auto short_row = ParseRoundsCsv(std::string(kRoundsCsvHeader) +
                                    "\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1,3,1e-5,0.8,7,8\n");
    REQUIRE_FALSE(short_row.ok());
    CHECK(short_row.error().message().find("23 columns, expected 32") != std::string::npos);
  }

  TEST_CASE("rounds.csv written before the trigger_* columns still parses, as rounds without a scan") {
    const std::string v5_header(kRoundsCsvHeader.substr(0, kRoundsCsvHeader.find(",trigger_scanned")));
    CHECK(v5_header.ends_with(",protocol_cpu_seconds"));
    auto parsed = ParseRoundsCsv(v5_header +
                                 "\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,1,0,0,0.5,3,1e-5,0.8,7,8,0.5\n");
    REQUIRE(parsed.ok());
    REQUIRE(parsed->size() == 1);
    CHECK((*parsed)[0].protocol_cpu_seconds == 0.5);
    CHECK((*parsed)[0].trigger.scanned == 0);
    CHECK((*parsed)[0].trigger.flagged == -1);
    auto mixed = ParseRoundsCsv(v5_header +
                                "\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1,3,1e-5,0.8,7,8,0.5,"
                                "1,0,2.5,1,1,0\n");
    REQUIRE_FALSE(mixed.ok());
    CHECK(mixed.error().message().find("30 columns, expected 24") != std::string::npos);
  }

  TEST_CASE("rounds.csv written before the ring_wraps columns still parses, as rounds not counted") {
    const std::string v6_header(kRoundsCsvHeader.substr(0, kRoundsCsvHeader.find(",ring_wraps")));
    CHECK(v6_header.ends_with(",trigger_pruned"));
    auto parsed = ParseRoundsCsv(v6_header +
                                 "\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,1,0,0,0.5,3,1e-5,0.8,7,8,0.5,"
                                 "1,0,2.5,1,1,9\n");
    REQUIRE_MESSAGE(parsed.ok(), parsed.status().ToString());
    REQUIRE(parsed->size() == 1);
    CHECK((*parsed)[0].trigger.pruned == 9);
    CHECK((*parsed)[0].ring_wraps == -1);
    CHECK((*parsed)[0].ring_wraps_one_bit_less == -1);
    const std::string row = "\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1,3,1e-5,0.8,7,8,0.5,1,0,2.5,1,1,0";
    auto mixed = ParseRoundsCsv(v6_header + row + ",3,5\n");
    REQUIRE_FALSE(mixed.ok());
    CHECK(mixed.error().message().find("32 columns, expected 30") != std::string::npos);
    // Under the new header: a count, or empty (not counted); never negative.
    const std::string header(kRoundsCsvHeader);
    auto counted = ParseRoundsCsv(header + row + ",3,\n");
    REQUIRE_MESSAGE(counted.ok(), counted.status().ToString());
    CHECK((*counted)[0].ring_wraps == 3);
    CHECK((*counted)[0].ring_wraps_one_bit_less == -1);
    auto negative = ParseRoundsCsv(header + row + ",-1,5\n");
    REQUIRE_FALSE(negative.ok());
    CHECK(negative.error().message().find("ring_wraps") != std::string::npos);
    auto huge = ParseRoundsCsv(header + row + ",3,9223372036854775808\n");
    REQUIRE_FALSE(huge.ok());
    CHECK(huge.error().message().find("ring_wraps_one_bit_less") != std::string::npos);
  }

  TEST_CASE("rounds.csv of no rounds is the header alone and parses to no records") {
    std::ostringstream out;
    WriteRoundsCsv(out, {});
    CHECK(out.str() == std::string(kRoundsCsvHeader) + "\n");
    auto parsed = ParseRoundsCsv(out.str());
    REQUIRE(parsed.ok());
    CHECK(parsed->empty());
  }

  TEST_CASE("a NaN loss survives the rounds.csv round trip as NaN") {
    std::vector<RoundRecord> records = ThreeRounds();
    records[0].loss = std::numeric_limits<double>::quiet_NaN();
    std::ostringstream out;
    WriteRoundsCsv(out, records);
    auto parsed = ParseRoundsCsv(out.str());
    REQUIRE(parsed.ok());
    CHECK(std::isnan((*parsed)[0].loss));
  }

  TEST_CASE("malformed rounds.csv text is rejected with an error naming the line and column") {
    const std::string header = std::string(kRoundsCsvHeader) + "\n";
    const std::string good_row = "1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1,-1,-1,-1,0,0,0,0,-1,0,0,0,0,,\n";

    auto empty = ParseRoundsCsv("");
    REQUIRE_FALSE(empty.ok());
    CHECK(empty.error().code() == ErrorCode::kInvalidArgument);

    auto wrong_header = ParseRoundsCsv("round,accuracy\n" + good_row);
    REQUIRE_FALSE(wrong_header.ok());
    CHECK(wrong_header.error().message().find("header") != std::string::npos);

    auto short_row = ParseRoundsCsv(header + "1,0.4,1.7\n");
    REQUIRE_FALSE(short_row.ok());
    CHECK(short_row.error().message().find("line 2") != std::string::npos);
    CHECK(short_row.error().message().find("3 columns") != std::string::npos);

    auto negative_bytes =
        ParseRoundsCsv(header + good_row + "2,0.4,1.7,-5,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1,-1,-1,-1,0,0,0,0,-1,0,0,0,0,,\n");
    REQUIRE_FALSE(negative_bytes.ok());
    CHECK(negative_bytes.error().message().find("line 3") != std::string::npos);
    CHECK(negative_bytes.error().message().find("bytes_up") != std::string::npos);

    auto junk_number = ParseRoundsCsv(header + "1,0.4x,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1,-1,-1,-1,0,0,0,0,-1,0,0,0,0,,\n");
    REQUIRE_FALSE(junk_number.ok());
    CHECK(junk_number.error().message().find("accuracy") != std::string::npos);

    auto too_big =
        ParseRoundsCsv(header + "99999999999,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1,-1,-1,-1,0,0,0,0,-1,0,0,0,0,,\n");
    REQUIRE_FALSE(too_big.ok());
    CHECK(too_big.error().message().find("round") != std::string::npos);

    auto empty_field = ParseRoundsCsv(header + "1,,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1,-1,-1,-1,0,0,0,0,-1,0,0,0,0,,\n");
    REQUIRE_FALSE(empty_field.ok());

    auto gap = ParseRoundsCsv(header + good_row + "\n" + good_row);
    REQUIRE_FALSE(gap.ok());
    CHECK(gap.error().message().find("empty line") != std::string::npos);
  }

  TEST_CASE("mutated rounds.csv text either parses or returns an error, never crashes") {
    std::ostringstream out;
    WriteRoundsCsv(out, ThreeRounds());
    const std::string original = out.str();
    static constexpr std::string_view kAlphabet = "0123456789.,-+eEnaif\r\n\xff ";
    Rng rng(20261126);
    size_t parsed = 0, rejected = 0;
    for (int trial = 0; trial < 3000; ++trial) {
      std::string text = original;
      const int edits = 1 + static_cast<int>(rng.UniformInt(4));
      for (int e = 0; e < edits; ++e) {
        const size_t at = rng.UniformInt(text.size() + 1);
        switch (rng.UniformInt(3)) {
          case 0:
            text.insert(text.begin() + at, kAlphabet[rng.UniformInt(kAlphabet.size())]);
            break;
          case 1:
            if (at < text.size()) text.erase(at, 1);
            break;
          default:
            text.resize(at);
            break;  // truncation
        }
      }
      auto result = ParseRoundsCsv(text);
      if (result.ok()) {
        ++parsed;
        CHECK(result->size() <= 4);
      } else {
        ++rejected;
        CHECK(result.error().code() == ErrorCode::kInvalidArgument);
        CHECK_FALSE(result.error().message().empty());
      }
    }
    CHECK(parsed > 0);
    CHECK(rejected > 0);
  }

  TEST_CASE("rounds.csv with CRLF line endings parses like LF") {
    const std::string text =
        std::string(kRoundsCsvHeader) + "\r\n1,0.4,1.7,100,1000,2,0.5,0.01,10,9,1,60,0.25,12,0,0,0,-1,-1,-1,-1,0,0,0,0,-1,0,0,0,0,,\r\n";
    auto parsed = ParseRoundsCsv(text);
    REQUIRE(parsed.ok());
    REQUIRE(parsed->size() == 1);
    CHECK((*parsed)[0].wall_seconds == 0.25);
  }

  TEST_CASE(
      "ComputeTargets picks the first round at or over the target and the totals through it") {
    const std::vector<RoundRecord> records = ThreeRounds();
    RunSummary s;
    s.wall_seconds = 42;  // set by the front end; must be left alone
    ComputeTargets(records, 0.65, s);

    // Round 3 also has 0.65, but round 2 (0.70) is the first at or over it.
    REQUIRE(s.rounds_to_target.has_value());
    CHECK(*s.rounds_to_target == 2);
    REQUIRE(s.bytes_to_target.has_value());
    CHECK(*s.bytes_to_target == 3300);  // (100 + 1000) + (200 + 2000)
    REQUIRE(s.joules_to_target.has_value());
    CHECK(*s.joules_to_target == doctest::Approx(7.0));  // (2 + 0.5) + (3 + 1.5)
    REQUIRE(s.gco2e_to_target.has_value());
    CHECK(*s.gco2e_to_target == doctest::Approx(0.03));

    CHECK(s.target_accuracy == 0.65);
    CHECK(s.rounds == 3);
    CHECK(s.final_accuracy == 0.65);
    CHECK(s.bytes_up == 600);
    CHECK(s.bytes_down == 6000);
    CHECK(s.joules_client == doctest::Approx(13.5));
    CHECK(s.gco2e == doctest::Approx(0.06));
    CHECK(s.wall_seconds == 42);
  }

  TEST_CASE("a target met exactly in the first round counts that round alone") {
    RunSummary s;
    ComputeTargets(ThreeRounds(), 0.40, s);
    CHECK(s.rounds_to_target == 1u);
    CHECK(s.bytes_to_target == 1100u);
    CHECK(s.joules_to_target == doctest::Approx(2.5));
  }

  TEST_CASE("an unreached target leaves every *_to_target field empty") {
    RunSummary s;
    s.rounds_to_target = 7;  // stale value from an earlier call must be cleared
    ComputeTargets(ThreeRounds(), 0.9, s);
    CHECK_FALSE(s.rounds_to_target.has_value());
    CHECK_FALSE(s.bytes_to_target.has_value());
    CHECK_FALSE(s.joules_to_target.has_value());
    CHECK_FALSE(s.gco2e_to_target.has_value());
    CHECK(s.rounds == 3);

    RunSummary nan_target;
    ComputeTargets(ThreeRounds(), std::numeric_limits<double>::quiet_NaN(), nan_target);
    CHECK_FALSE(nan_target.rounds_to_target.has_value());

    RunSummary no_rounds;
    ComputeTargets({}, 0.5, no_rounds);
    CHECK(no_rounds.rounds == 0);
    CHECK(no_rounds.final_accuracy == 0);
    CHECK_FALSE(no_rounds.rounds_to_target.has_value());
  }

  TEST_CASE("summary.json parses and holds every required key, with null for an unreached target") {
    RunSummary s;
    s.run_id = "run-7";
    s.scenario = "fmnist-1m";
    s.pipeline = "topk-int8";
    s.model = "mlp";
    ComputeTargets(ThreeRounds(), 0.9, s);
    s.joules_server = 12.5;
    s.wall_seconds = 3.5;
    s.client_updates_per_second = 1234.5;
    s.peak_rss_bytes = 1ULL << 33;
    s.joules_by_radio = {{"lte", 3.0}, {"wifi", 1.5}};
    s.joules_by_device = {{"phone-mid", 4.5}};
    s.measured_vs_modelled["phone-mid"] = MeasuredVsModelled{.rows = 2, .measured_j = 3.0, .modelled_j = 2.0};
    s.notes = {"each client holds 32 examples"};
    s.config = {{"train.lr", "0.05"}, {"codec.topk", "0.01"}};
    s.extra_metrics = {{"mean_staleness", 0.5}};
    std::ostringstream out;
    WriteSummaryJson(out, s);

    const nlohmann::json j =
        nlohmann::json::parse(out.str());  // throws (fails the test) if malformed
    CHECK(j["measured_vs_modelled"]["phone-mid"]["rows"] == 2);
    CHECK(j["measured_vs_modelled"]["phone-mid"]["ratio"].get<double>() == doctest::Approx(1.5));
    for (const char* key : {"run_id",           "scenario",
                            "pipeline",         "model",
                            "rounds",           "final_accuracy",
                            "target_accuracy",  "rounds_to_target",
                            "bytes_to_target",  "joules_to_target",
                            "gco2e_to_target",  "bytes_up",
                            "bytes_down",       "joules_client",
                            "joules_server",    "gco2e",
                            "wall_seconds",     "client_updates_per_second",
                            "peak_rss_bytes",   "joules_by_radio",
                            "joules_by_device", "notes",
                            "config",           "extra_metrics"}) {
      CHECK_MESSAGE(j.contains(key), key);
    }
    CHECK(j["rounds_to_target"].is_null());
    CHECK(j["bytes_to_target"].is_null());
    CHECK(j["joules_to_target"].is_null());
    CHECK(j["gco2e_to_target"].is_null());
    CHECK(j["rounds"] == 3);
    CHECK(j["bytes_up"] == 600);
    CHECK(j["bytes_down"] == 6000);
    CHECK(j["peak_rss_bytes"] == (1ULL << 33));
    CHECK(j["joules_client"].get<double>() == doctest::Approx(13.5));
    CHECK(j["joules_by_radio"]["lte"] == 3.0);
    CHECK(j["notes"][0] == "each client holds 32 examples");
    CHECK(j["config"]["train.lr"] == "0.05");
    CHECK(j["extra_metrics"]["mean_staleness"] == 0.5);
  }

  TEST_CASE("summary.json holds the reached target's figures as numbers") {
    RunSummary s;
    ComputeTargets(ThreeRounds(), 0.65, s);
    std::ostringstream out;
    WriteSummaryJson(out, s);
    const nlohmann::json j = nlohmann::json::parse(out.str());
    CHECK(j["rounds_to_target"] == 2);
    CHECK(j["bytes_to_target"] == 3300);
    CHECK(j["joules_to_target"].get<double>() == doctest::Approx(7.0));
  }

  TEST_CASE(
      "summary.json stays valid JSON when a user string is not UTF-8 or a number is not finite") {
    RunSummary s;
    s.scenario = std::string("bad\xff\xfe name");
    s.config = {{"key\xc3", "\"quoted\"\n"}};
    s.wall_seconds = std::numeric_limits<double>::infinity();
    std::ostringstream out;
    WriteSummaryJson(out, s);
    const nlohmann::json j = nlohmann::json::parse(out.str());
    CHECK(j["scenario"] == "bad\xEF\xBF\xBD\xEF\xBF\xBD name");
    CHECK(j["wall_seconds"].is_null());
  }
}

}  // namespace
}  // namespace frugal
