#include "frugal/energy/ledger.h"

#include <charconv>
#include <utility>

namespace frugal {
namespace {

constexpr double kJoulesPerKwh = 3.6e6;
constexpr double kGramsPerKg = 1000.0;

// Shortest text that reads back to the same double.
void WriteNumber(std::ostream& out, double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) {
    out << v;
    return;
  }
  out.write(buf, end - buf);
}

// RFC 4180: quote a field holding a comma, quote or line break.
void WriteField(std::ostream& out, std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) {
    out << s;
    return;
  }
  out << '"';
  for (char c : s) {
    if (c == '"') out << '"';
    out << c;
  }
  out << '"';
}

}  // namespace

std::string_view ClientOutcomeName(ClientOutcome o) {
  switch (o) {
    case ClientOutcome::kParticipated: return "participated";
    case ClientOutcome::kStraggled: return "straggled";
    case ClientOutcome::kDropped: return "dropped";
    case ClientOutcome::kEvaluated: return "evaluated";
  }
  return "unknown";
}

std::string_view EnergySourceName(EnergySource s) {
  switch (s) {
    case EnergySource::kModelled: return "modelled";
    case EnergySource::kMeasured: return "measured";
  }
  return "unknown";
}

void EnergyTotals::Add(const LedgerRow& row) {
  bytes_up += row.bytes_up;
  bytes_down += row.bytes_down;
  flops += row.flops;
  compute_j += row.compute_j;
  radio_j += row.radio_j;
  total_j += row.total_j;
  gco2e += row.gco2e;
  ++rows;
  switch (row.outcome) {
    case ClientOutcome::kParticipated: ++participated; break;
    case ClientOutcome::kStraggled: ++straggled; break;
    case ClientOutcome::kDropped: ++dropped; break;
    case ClientOutcome::kEvaluated: ++evaluated; break;
  }
  if (row.source == EnergySource::kMeasured) ++measured;
}

LedgerRow MakeLedgerRow(std::string_view run_id, const DeviceProfile& device, const RadioProfile& radio,
                        const RegionProfile& region, const ClientRoundUsage& usage) {
  LedgerRow row;
  row.run_id = std::string(run_id);
  row.round = usage.round;
  row.client_id = usage.client_id;
  row.device = device.id;
  row.radio = radio.id;
  row.region = region.id;
  for (const Transfer& t : usage.transfers) {
    (t.dir == Direction::kUp ? row.bytes_up : row.bytes_down) += t.bytes;
  }
  row.flops = usage.flops;
  row.modelled_compute_j = ComputeJoules(device, usage.flops, usage.int8);
  if (usage.measured_compute_j.has_value()) {
    row.compute_j = *usage.measured_compute_j;
    row.source = EnergySource::kMeasured;
  } else {
    row.compute_j = *row.modelled_compute_j;
    row.source = EnergySource::kModelled;
  }
  row.radio_j = RadioEnergy(radio, usage.transfers).joules;
  row.total_j = row.compute_j + row.radio_j;
  row.gco2e = CarbonGrams(row.total_j, region, usage.utc_hour, 1.0);
  row.outcome = usage.outcome;
  return row;
}

std::map<std::string, MeasuredVsModelled> EnergyLedger::MeasuredVsModelledByDevice() const {
  std::map<std::string, MeasuredVsModelled> out;
  for (const LedgerRow& row : rows_) {
    if (row.source != EnergySource::kMeasured || !row.modelled_compute_j) continue;
    MeasuredVsModelled& m = out[row.device];
    ++m.rows;
    m.measured_j += row.compute_j;
    m.modelled_j += *row.modelled_compute_j;
  }
  return out;
}

EnergyLedger::EnergyLedger(std::string run_id) : run_id_(std::move(run_id)) {}

void EnergyLedger::Add(LedgerRow row) {
  if (row.run_id.empty()) row.run_id = run_id_;
  rows_.push_back(std::move(row));
}

void EnergyLedger::AddServer(uint32_t round, double joules, double gco2e, EnergySource source) {
  // Consecutive calls for one round (several aggregation steps) share an entry.
  if (!server_.empty() && server_.back().round == round && server_.back().source == source) {
    server_.back().joules += joules;
    server_.back().gco2e += gco2e;
    return;
  }
  server_.push_back({round, joules, gco2e, source});
}

EnergyTotals EnergyLedger::RoundTotals(uint32_t round) const {
  EnergyTotals t;
  for (const LedgerRow& r : rows_) {
    if (r.round == round) t.Add(r);
  }
  for (const ServerEntry& e : server_) {
    if (e.round == round) {
      t.server_j += e.joules;
      t.server_gco2e += e.gco2e;
    }
  }
  return t;
}

EnergyTotals EnergyLedger::RunTotals() const {
  EnergyTotals t;
  for (const LedgerRow& r : rows_) t.Add(r);
  for (const ServerEntry& e : server_) {
    t.server_j += e.joules;
    t.server_gco2e += e.gco2e;
  }
  return t;
}

std::map<std::string, EnergyTotals> EnergyLedger::TotalsByRadio() const {
  std::map<std::string, EnergyTotals> m;
  for (const LedgerRow& r : rows_) m[r.radio].Add(r);
  return m;
}

std::map<std::string, EnergyTotals> EnergyLedger::TotalsByDevice() const {
  std::map<std::string, EnergyTotals> m;
  for (const LedgerRow& r : rows_) m[r.device].Add(r);
  return m;
}

void EnergyLedger::WriteLedgerCsv(std::ostream& out) const {
  out << "run_id,round,client_id,device,radio,region,bytes_up,bytes_down,flops,compute_j,radio_j,"
         "total_j,gco2e,source,outcome,robust\n";
  for (const LedgerRow& r : rows_) {
    WriteField(out, r.run_id);
    out << ',' << r.round << ',' << r.client_id << ',';
    WriteField(out, r.device);
    out << ',';
    WriteField(out, r.radio);
    out << ',';
    WriteField(out, r.region);
    out << ',' << r.bytes_up << ',' << r.bytes_down << ',';
    WriteNumber(out, r.flops);
    out << ',';
    WriteNumber(out, r.compute_j);
    out << ',';
    WriteNumber(out, r.radio_j);
    out << ',';
    WriteNumber(out, r.total_j);
    out << ',';
    WriteNumber(out, r.gco2e);
    out << ',' << EnergySourceName(r.source) << ',' << ClientOutcomeName(r.outcome) << ',';
    WriteField(out, r.robust);
    out << '\n';
  }
  for (const ServerEntry& e : server_) {
    WriteField(out, run_id_);
    out << ',' << e.round << ",,server,,,0,0,0,";
    WriteNumber(out, e.joules);
    out << ",0,";
    WriteNumber(out, e.joules);
    out << ',';
    WriteNumber(out, e.gco2e);
    out << ',' << EnergySourceName(e.source) << ",aggregation,\n";
  }
}

void EnergyLedger::WriteEmissionsCsv(std::ostream& out, const EmissionsMeta& meta) const {
  const EnergyTotals t = RunTotals();
  const double emissions_kg = t.all_gco2e() / kGramsPerKg;
  const double energy_kwh = t.all_j() / kJoulesPerKwh;
  const double rate = meta.duration_s > 0 ? emissions_kg / meta.duration_s : 0.0;
  out << "timestamp,project_name,run_id,duration,emissions,emissions_rate,energy_consumed,"
         "country_iso_code,region,pue\n";
  WriteField(out, meta.timestamp);
  out << ',';
  WriteField(out, meta.project_name);
  out << ',';
  WriteField(out, run_id_);
  out << ',';
  WriteNumber(out, meta.duration_s);
  out << ',';
  WriteNumber(out, emissions_kg);
  out << ',';
  WriteNumber(out, rate);
  out << ',';
  WriteNumber(out, energy_kwh);
  out << ',';
  WriteField(out, meta.country_iso_code);
  out << ',';
  WriteField(out, meta.region);
  out << ',';
  WriteNumber(out, meta.pue);
  out << '\n';
}

}  // namespace frugal
