// The energy and carbon ledger: one row per (run, round, client) with bytes,
// FLOPs, compute and radio joules and grams of CO2e, plus the coordinator's
// aggregation energy per round; sums per round, run, radio and device class;
// exports ledger.csv and a CodeCarbon-compatible emissions.csv to a stream.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/energy/model.h"
#include "frugal/energy/profiles.h"

namespace frugal {

// kEvaluated: a federated evaluation (model download and a forward pass over
// local examples), not a training participation.
enum class ClientOutcome : uint8_t { kParticipated, kStraggled, kDropped, kEvaluated };
enum class EnergySource : uint8_t { kModelled, kMeasured };

// "participated" / "straggled" / "dropped" / "evaluated"; "modelled" / "measured".
std::string_view ClientOutcomeName(ClientOutcome o);
std::string_view EnergySourceName(EnergySource s);

struct LedgerRow {
  std::string run_id;
  uint32_t round = 0;
  uint64_t client_id = 0;
  std::string device, radio, region;
  uint64_t bytes_up = 0, bytes_down = 0;
  double flops = 0;
  double compute_j = 0, radio_j = 0, total_j = 0;
  double gco2e = 0;
  EnergySource source = EnergySource::kModelled;
  ClientOutcome outcome = ClientOutcome::kParticipated;
  // What robust aggregation (server.robust) did to this client's update:
  // empty when it was kept as sent (or no rule ran), else the action and why,
  // e.g. "clipped: norm 4.21 > bound 1.30" or "rejected: multi-krum score ...".
  std::string robust;
  // The model's compute joules for the same FLOPs, kept beside a measured
  // compute_j so measured and modelled can be compared (MakeLedgerRow sets
  // it; nullopt for rows read back from a store that does not keep it).
  std::optional<double> modelled_compute_j;
};

// Client sums (total_j and gco2e are clients only) plus, separately, the
// coordinator's aggregation energy; all_j()/all_gco2e() add both.
struct EnergyTotals {
  uint64_t bytes_up = 0, bytes_down = 0;
  double flops = 0, compute_j = 0, radio_j = 0, total_j = 0, gco2e = 0;
  size_t rows = 0;
  size_t participated = 0, straggled = 0, dropped = 0, evaluated = 0, measured = 0;
  double server_j = 0, server_gco2e = 0;

  double all_j() const { return total_j + server_j; }
  double all_gco2e() const { return gco2e + server_gco2e; }
  void Add(const LedgerRow& row);
};

// Measured against modelled compute energy over the rows that carry both.
struct MeasuredVsModelled {
  size_t rows = 0;          // measured rows with a modelled figure beside
  double measured_j = 0;    // their measured compute joules
  double modelled_j = 0;    // the model's compute joules for the same FLOPs
  double ratio() const { return modelled_j > 0 ? measured_j / modelled_j : 0; }
};

// What one client did in one round, for MakeLedgerRow().
struct ClientRoundUsage {
  uint32_t round = 0;
  uint64_t client_id = 0;
  double flops = 0;                   // FLOPs actually executed on the device
  bool int8 = false;                  // precision the FLOPs ran at
  std::span<const Transfer> transfers;  // encoded bytes actually sent/received
  double utc_hour = 0;                // when the energy was drawn, for the hourly profile
  ClientOutcome outcome = ClientOutcome::kParticipated;
  std::optional<double> measured_compute_j;  // from an EnergyMeter window, if any
};

// A ledger row costed with the model (compute from FLOPs unless a measured
// value is given, radio from the transfer schedule, carbon at PUE 1).
LedgerRow MakeLedgerRow(std::string_view run_id, const DeviceProfile& device, const RadioProfile& radio,
                        const RegionProfile& region, const ClientRoundUsage& usage);

// Not thread-safe; the caller serialises Add() and AddServer().
class EnergyLedger {
 public:
  explicit EnergyLedger(std::string run_id);

  // Appends a client row; an empty row.run_id is set to the ledger's.
  void Add(LedgerRow row);
  // Adds the coordinator's aggregation energy for a round (facility joules,
  // PUE included); several calls for one round accumulate.
  void AddServer(uint32_t round, double joules, double gco2e,
                 EnergySource source = EnergySource::kModelled);

  EnergyTotals RoundTotals(uint32_t round) const;
  EnergyTotals RunTotals() const;
  // Client sums keyed by radio id / device id (no server energy).
  std::map<std::string, EnergyTotals> TotalsByRadio() const;
  std::map<std::string, EnergyTotals> TotalsByDevice() const;
  // Per device id, the measured rows against the model's figure for them
  // (devices without a measured row are absent).
  std::map<std::string, MeasuredVsModelled> MeasuredVsModelledByDevice() const;

  const std::string& run_id() const { return run_id_; }
  const std::vector<LedgerRow>& rows() const { return rows_; }

  struct ServerEntry {
    uint32_t round = 0;
    double joules = 0;
    double gco2e = 0;
    EnergySource source = EnergySource::kModelled;
  };
  const std::vector<ServerEntry>& server_entries() const { return server_; }

  // ledger.csv: header run_id,round,client_id,device,radio,region,bytes_up,
  // bytes_down,flops,compute_j,radio_j,total_j,gco2e,source,outcome,robust; one
  // line per client row in insertion order, then one per server entry (client_id
  // empty, device "server", outcome "aggregation"). Joules in J, carbon in grams.
  void WriteLedgerCsv(std::ostream& out) const;

  struct EmissionsMeta {
    std::string project_name = "frugal";
    std::string timestamp;  // ISO 8601, supplied by the caller (common/ reads no clock)
    double duration_s = 0;
    std::string country_iso_code;
    std::string region;
    double pue = 1.0;  // reported only; the rows already include their PUE
  };
  // emissions.csv, one line for the whole run in CodeCarbon's units: header
  // timestamp,project_name,run_id,duration,emissions,emissions_rate,
  // energy_consumed,country_iso_code,region,pue; duration s, emissions kg CO2e,
  // emissions_rate kg/s, energy_consumed kWh (clients plus server).
  void WriteEmissionsCsv(std::ostream& out, const EmissionsMeta& meta) const;

 private:
  std::string run_id_;
  std::vector<LedgerRow> rows_;
  std::vector<ServerEntry> server_;
};

}  // namespace frugal
