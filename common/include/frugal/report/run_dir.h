// A run directory, written the same way by every front end: rounds.csv,
// ledger.csv, emissions.csv, summary.json, report.html, the complete
// configuration the run ran with (run.toml) and the fleet as the run saw it
// (clients.csv), which together let `frugal-sim --replay` run it again. Every
// file is written beside its final name and renamed over it, so a crash
// never leaves a half-written file. Part of frugal_report (not frugal_core):
// this is where a run's results meet the file system.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/data/partition.h"
#include "frugal/energy/ledger.h"
#include "frugal/model/release_models.h"
#include "frugal/report/run_report.h"
#include "frugal/round/settings.h"

namespace frugal {

// Writes `path` through `write` into `path`.tmp, then renames it over `path`.
// kUnavailable naming the file when it cannot be created, written or renamed.
Status WriteFileAtomic(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write);

// One client of a run, as the run directory records it (clients.csv).
struct RosterEntry {
  uint32_t id = 0;
  std::string name;                     // certificate CN (service) or "sim-<id>"
  std::string device, radio, region;    // energy profile ids
  uint64_t examples = 0;                // local training examples (its FedAvg weight)
  // Where its data came from, when it is a seeded split of Fashion-MNIST's
  // training set (PartitionForClient), with its index in that split.
  std::optional<PartitionSpec> partition;
  uint32_t partition_index = 0;
};

inline constexpr std::string_view kClientsCsvHeader =
    "client_id,name,device,radio,region,examples,partition,partition_clients,partition_index,alpha,"
    "shards_per_client,partition_seed,holdout";
void WriteClientsCsv(std::ostream& out, std::span<const RosterEntry> clients);
// Errors name the line and column of the first bad field.
Result<std::vector<RosterEntry>> ParseClientsCsv(std::string_view text);

// What a front end hands over to write a run directory.
struct RunFiles {
  const RunSummary* summary = nullptr;
  std::span<const RoundRecord> rounds;
  const EnergyLedger* ledger = nullptr;
  EnergyLedger::EmissionsMeta emissions;
  std::string run_toml;                  // TomlText of the run's configuration
  std::span<const RosterEntry> clients;  // empty: no clients.csv
  // The distilled student ([distill]): student.f32 (EncodeStudentModel) and
  // student.int8 (EncodeInt8Model) beside the run's files. Null: none.
  const StudentReport* student = nullptr;
};

// Creates `dir` if needed and (re)writes every file of the run into it.
Status WriteRunDirectory(const std::filesystem::path& dir, const RunFiles& files);

// The summary fields every front end fills the same way from its settings,
// records and ledger: names, targets and totals (ComputeTargets), server
// joules and grams, joules per radio and device class, this process's peak
// RSS and the configuration. The front end adds its wall time, rates and
// notes (ServerNotes among them).
RunSummary SummarizeRun(const RunSettings& settings, std::string_view scenario, std::span<const RoundRecord> rounds,
                        const EnergyLedger& ledger, const std::map<std::string, std::string>& config);

}  // namespace frugal
