// The one Frugal page: report.html of a finished run, the coordinator's live
// dashboard and the comparison of several runs are the same HTML and the same
// script, fed one JSON document (PageData). The live dashboard re-fetches that
// document from the status port; the other two carry it inline. No I/O here:
// writers take a std::ostream.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "frugal/energy/ledger.h"
#include "frugal/report/run_report.h"
#include "frugal/round/record.h"

namespace frugal {

// One client as the coordinator knows it, a row of the dashboard's clients table.
struct DashboardClient {
  uint64_t id = 0;
  std::string name, device, radio, region;
  // "connected" (registered, no round taken part in yet), "training" (owes an
  // update for the open round), "uploading" (its update is arriving),
  // "idle" (connected, no task outstanding), "ineligible" (declined the open
  // round's task: its device policy said no), "gone" (not connected).
  std::string state;
  uint32_t held_version = 0;
  std::optional<double> last_seen_s;  // seconds since it last sent a byte; nullopt: not in this process
  // Totals over the ledger (FillClientTotals): rounds it took part in (its
  // update aggregated), bytes up + down, client joules, gCO2e.
  uint32_t rounds = 0;
  uint64_t bytes = 0;
  double joules = 0, gco2e = 0;
  bool measured = false;  // some of its joules were measured rather than modelled
};

// The open round, or the last one closed.
struct DashboardRound {
  uint32_t round = 0;
  bool open = false;
  uint32_t selected = 0, received = 0, stragglers = 0;
  struct Rejection {
    std::string client, reason;
  };
  std::vector<Rejection> rejected;
};

// The coordinator's header line.
struct DashboardStatus {
  std::string run_id, state;
  uint32_t round = 0, rounds_total = 0, model_version = 0;
  bool round_open = false;
  size_t connected = 0, min_clients = 0;
  std::optional<double> next_round_in_s;  // a round is due and will open in this many seconds
  std::optional<double> epsilon;          // DP spent so far, only when the run reports one
  // What that epsilon is a bound for (summary.json's dp_sampling,
  // dp_adjacency, dp_bound); empty without DP.
  std::string dp_sampling, dp_adjacency, dp_bound;
};

// Everything one page shows. `runs` is drawn on the same axes; status,
// clients and round appear only when set (the live dashboard).
struct PageData {
  std::string title, subtitle, headline;
  double target_accuracy = 0;
  bool live = false;  // the script re-fetches api/state every poll_ms
  uint32_t poll_ms = 1000;
  struct Run {
    std::string label;
    std::span<const RoundRecord> records;
  };
  std::vector<Run> runs;
  std::optional<DashboardStatus> status;
  std::optional<std::vector<DashboardClient>> clients;
  std::optional<DashboardRound> round;
  // Per device class, measured compute joules against the model's figure for
  // the same rows; the page shows the table only when a client measured.
  std::map<std::string, MeasuredVsModelled> measured_vs_modelled;
};

// Adds each ledger row to the client of the same id in `clients`: rounds
// (rows with outcome participated), bytes up + down, total joules, gCO2e and
// whether any row was measured. Rows of unknown clients are skipped.
void FillClientTotals(std::span<const LedgerRow> rows, std::vector<DashboardClient>& clients);

// The JSON document the page draws (the live dashboard's GET /api/state).
// Invalid UTF-8 in names becomes U+FFFD; non-finite numbers become null.
std::string PageDataJson(const PageData& page);

// Writes the page: uPlot inlined, no request outside its origin. `body_html`
// is trusted markup the caller built with the escaping helpers (report
// tables); it goes after the charts.
void WritePageHtml(std::ostream& out, const PageData& page, std::string_view body_html = {});

// The coordinator's dashboard (GET /): the page with `live` set.
void WriteDashboardHtml(std::ostream& out, const PageData& page);

// One run directory for WriteCompareHtml.
struct ComparedRun {
  std::string label;
  std::vector<RoundRecord> records;
};

// Several runs on the same axes, with a table of rounds, bytes, client joules
// and gCO2e to `target_accuracy` and over the whole run, each as a ratio to
// the first run (the baseline).
void WriteCompareHtml(std::ostream& out, std::span<const ComparedRun> runs, double target_accuracy);

}  // namespace frugal
