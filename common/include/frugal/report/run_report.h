// The run report shared by every front end (frugal-sim, frugal-coordinator):
// per-round records, the run summary, and the three files written from them
// (rounds.csv, summary.json, report.html). Writers take a std::ostream; the
// front end opens and closes the files, so this module does no I/O of its own.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/round/record.h"
#include "frugal/round/representation.h"

namespace frugal {

// Everything summary.json holds, and the header of report.html.
struct RunSummary {
  std::string run_id, scenario, pipeline, model;
  uint32_t rounds = 0;
  double final_accuracy = 0;
  double target_accuracy = 0;
  std::optional<uint32_t> rounds_to_target;  // nullopt: the target was never reached
  std::optional<uint64_t> bytes_to_target;   // cumulative up + down through that round
  std::optional<double> joules_to_target;    // cumulative client compute + radio
  std::optional<double> gco2e_to_target;
  uint64_t bytes_up = 0, bytes_down = 0;
  double joules_client = 0, joules_server = 0, gco2e = 0;
  double wall_seconds = 0, client_updates_per_second = 0;
  uint64_t peak_rss_bytes = 0;
  std::map<std::string, double> joules_by_radio;   // client joules per radio class
  std::map<std::string, double> joules_by_device;  // client joules per device class
  // Per device class, its measured compute joules against the model's figure
  // for the same rows (EnergyLedger::MeasuredVsModelledByDevice); empty when
  // no client measured (every simulated run).
  std::map<std::string, MeasuredVsModelled> measured_vs_modelled;
  // Plain sentences a reader needs to judge the run, e.g. "each of the
  // 1,000,000 clients holds a seeded sample of 32 examples ...".
  std::vector<std::string> notes;
  std::map<std::string, std::string> config;    // flattened key -> value of the run configuration
  std::map<std::string, double> extra_metrics;  // anything else worth a number in summary.json
  // Each region's and device class's share of participations against its
  // share of clients and data (RepresentationShares); empty if not computed.
  std::vector<ShareRow> representation;
  // Differential privacy: (ε, δ) spent by the whole run (nullopt: no DP).
  std::optional<double> dp_epsilon, dp_delta;
  // What dp_epsilon is a bound for (DescribeDpAccounting): the sampling the
  // accountant composed ("poisson" or "fixed_size"), the adjacency
  // ("add_remove_one" or "replace_one") and "proven" or why it is approximate.
  std::string dp_sampling, dp_adjacency, dp_bound;
  // Why the run ended before its configured rounds (e.g. privacy.target_epsilon
  // reached), empty when it ran them all.
  std::string stop_reason;
};

// Writes representation.csv: a header and one line per ShareRow.
void WriteRepresentationCsv(std::ostream& out, std::span<const ShareRow> rows);

// Totals and first-reach figures of a series of rounds, as ComputeTargets
// derives them. Also used for the baseline series in report.html.
struct TargetFigures {
  std::optional<uint32_t> rounds_to_target;
  std::optional<uint64_t> bytes_to_target;
  std::optional<double> joules_to_target;
  std::optional<double> gco2e_to_target;
};

// Returns the first-reach figures of `records` for `target_accuracy`: the
// first record whose accuracy >= target, with cumulative bytes (up + down),
// client joules (compute + radio) and gCO2e through it; all nullopt when the
// target is never reached (a NaN accuracy or target never reaches).
TargetFigures FindTarget(std::span<const RoundRecord> records, double target_accuracy);

// Fills from `records`: target_accuracy, the *_to_target fields (as FindTarget),
// rounds (= number of records), final_accuracy (last record's, 0 when empty),
// bytes_up, bytes_down, joules_client (compute + radio) and gco2e (client side:
// callers that model the server's carbon add it afterwards). Leaves every other
// field (names, joules_server, wall_seconds, rates, peak RSS, maps, notes,
// config) as the caller set it.
void ComputeTargets(std::span<const RoundRecord> records, double target_accuracy,
                    RunSummary& summary);

// The exact header line of rounds.csv (without the newline).
inline constexpr std::string_view kRoundsCsvHeader =
    "round,accuracy,loss,bytes_up,bytes_down,joules_compute,joules_radio,gco2e,"
    "selected,completed,stragglers,virtual_seconds,wall_seconds,utc_hour,"
    "robust_clipped,robust_downweighted,robust_rejected,backdoor_success,dp_epsilon,dp_delta,accuracy_int8,"
    "protocol_bytes_up,protocol_bytes_down,protocol_cpu_seconds,"
    "trigger_scanned,trigger_flagged,trigger_anomaly,trigger_known,trigger_unlearnt,trigger_pruned,"
    "ring_wraps,ring_wraps_one_bit_less";

// Writes the header and one line per record; doubles in shortest round-trip
// form (so ParseRoundsCsv gives back the same values). Stream errors are left
// in `out`'s state for the caller to check.
void WriteRoundsCsv(std::ostream& out, std::span<const RoundRecord> records);

// Parses text written by WriteRoundsCsv (e.g. a baseline run's rounds.csv),
// or by a writer before the robust_* and backdoor_success columns or before
// the dp_epsilon and dp_delta columns, or before accuracy_int8 (their fields
// then keep RoundRecord's defaults).
// Returns InvalidArgument naming the line and column of the first malformed
// field, a missing or different header, or a wrong number of columns.
Result<std::vector<RoundRecord>> ParseRoundsCsv(std::string_view text);

// Writes summary.json: one object with every RunSummary field under its own
// name (null for an unreached target, non-finite numbers as null). Strings
// that are not valid UTF-8 are written with U+FFFD in place of bad bytes.
void WriteSummaryJson(std::ostream& out, const RunSummary& s);

// This process's peak resident set size so far, in bytes (getrusage
// ru_maxrss), for RunSummary::peak_rss_bytes; 0 if the OS will not say.
uint64_t ProcessPeakRssBytes();

// Writes report.html: one self-contained page (uPlot's JS and CSS inlined at
// build time, no network needed) with accuracy against round, against
// cumulative bytes (log axis) and against cumulative client joules, and tables
// of the summary, joules per radio and device class, notes and config. A
// non-empty `baseline_records` is drawn on the same charts under
// `baseline_label` and compared at the same target. Every user string is
// HTML-escaped; the series go into the page as JSON.
void WriteReportHtml(std::ostream& out, const RunSummary& s, std::span<const RoundRecord> records,
                     std::span<const RoundRecord> baseline_records = {},
                     std::string_view baseline_label = "baseline");

}  // namespace frugal
