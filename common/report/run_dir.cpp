#include "frugal/report/run_dir.h"

#include <charconv>
#include <fstream>
#include <ostream>
#include <sstream>

#include "csv_text.h"

namespace frugal {
namespace {

void WriteDouble(std::ostream& out, double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.write(buf, ec == std::errc() ? end - buf : 0);
}

template <typename T>
bool ParseField(std::string_view s, T& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

// Profile ids and names go into clients.csv unquoted: refuse what would break a line.
bool PlainField(std::string_view s) { return s.find_first_of(",\"\r\n") == std::string_view::npos; }

}  // namespace

Status WriteFileAtomic(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return UnavailableError("cannot create " + tmp.string());
    write(out);
    out.close();
    if (!out) return UnavailableError("error writing " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return UnavailableError("cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
  return OkStatus();
}

void WriteClientsCsv(std::ostream& out, std::span<const RosterEntry> clients) {
  out << kClientsCsvHeader << '\n';
  for (const RosterEntry& c : clients) {
    out << c.id << ',' << (PlainField(c.name) ? c.name : "?") << ',' << c.device << ',' << c.radio << ','
        << c.region << ',' << c.examples << ',';
    if (c.partition) {
      const PartitionSpec& p = *c.partition;
      out << p.scheme << ',' << p.clients << ',' << c.partition_index << ',';
      WriteDouble(out, p.alpha);
      out << ',' << p.shards_per_client << ',' << p.seed << ',';
      WriteDouble(out, p.holdout);
    } else {
      out << ",,,,,,";
    }
    out << '\n';
  }
}

Result<std::vector<RosterEntry>> ParseClientsCsv(std::string_view text) {
  std::vector<RosterEntry> out;
  csv_text::Lines lines(text);
  std::string_view line;
  while (lines.Next(line)) {
    const size_t line_number = lines.number();
    auto bad = [&](const std::string& what) {
      return InvalidArgumentError("clients.csv line " + std::to_string(line_number) + ": " + what);
    };
    if (line_number == 1) {
      if (line != kClientsCsvHeader) return bad("header is not '" + std::string(kClientsCsvHeader) + "'");
      continue;
    }
    if (line.empty()) continue;
    const std::vector<std::string_view> f = csv_text::SplitFields(line);
    if (f.size() != 13) return bad(std::to_string(f.size()) + " columns, expected 13");
    RosterEntry c;
    c.name = f[1];
    c.device = f[2];
    c.radio = f[3];
    c.region = f[4];
    if (!ParseField(f[0], c.id)) return bad("client_id '" + std::string(f[0]) + "' is not a number");
    if (!ParseField(f[5], c.examples)) return bad("examples '" + std::string(f[5]) + "' is not a number");
    if (!f[6].empty()) {
      PartitionSpec p;
      p.scheme = f[6];
      uint64_t clients = 0, shards = 0;
      if (!ParseField(f[7], clients) || !ParseField(f[8], c.partition_index) || !ParseField(f[9], p.alpha) ||
          !ParseField(f[10], shards) || !ParseField(f[11], p.seed) || !ParseField(f[12], p.holdout)) {
        return bad("a partition field is not a number");
      }
      p.clients = clients;
      p.shards_per_client = shards;
      c.partition = p;
    }
    out.push_back(std::move(c));
  }
  if (lines.number() == 0) return InvalidArgumentError("clients.csv is empty: no header line");
  return out;
}

Status WriteRunDirectory(const std::filesystem::path& dir, const RunFiles& f) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return UnavailableError("cannot create " + dir.string() + ": " + ec.message());
  FRUGAL_RETURN_IF_ERROR(WriteFileAtomic(dir / "run.toml", [&](std::ostream& os) { os << f.run_toml; }));
  if (!f.clients.empty()) {
    FRUGAL_RETURN_IF_ERROR(WriteFileAtomic(dir / "clients.csv", [&](std::ostream& os) { WriteClientsCsv(os, f.clients); }));
  }
  FRUGAL_RETURN_IF_ERROR(WriteFileAtomic(dir / "rounds.csv", [&](std::ostream& os) { WriteRoundsCsv(os, f.rounds); }));
  FRUGAL_RETURN_IF_ERROR(WriteFileAtomic(dir / "ledger.csv", [&](std::ostream& os) { f.ledger->WriteLedgerCsv(os); }));
  FRUGAL_RETURN_IF_ERROR(
      WriteFileAtomic(dir / "emissions.csv", [&](std::ostream& os) { f.ledger->WriteEmissionsCsv(os, f.emissions); }));
  FRUGAL_RETURN_IF_ERROR(WriteFileAtomic(dir / "summary.json", [&](std::ostream& os) { WriteSummaryJson(os, *f.summary); }));
  if (!f.summary->representation.empty()) {
    FRUGAL_RETURN_IF_ERROR(WriteFileAtomic(
        dir / "representation.csv", [&](std::ostream& os) { WriteRepresentationCsv(os, f.summary->representation); }));
  }
  if (f.student) {
    for (const auto& file : {std::pair{"student.f32", EncodeStudentModel(*f.student)},
                             std::pair{"student.int8", f.student->student_int8}}) {
      FRUGAL_RETURN_IF_ERROR(WriteFileAtomic(dir / file.first, [&](std::ostream& os) {
        os.write(reinterpret_cast<const char*>(file.second.data()), static_cast<std::streamsize>(file.second.size()));
      }));
    }
  }
  return WriteFileAtomic(dir / "report.html", [&](std::ostream& os) { WriteReportHtml(os, *f.summary, f.rounds); });
}

RunSummary SummarizeRun(const RunSettings& settings, std::string_view scenario, std::span<const RoundRecord> rounds,
                        const EnergyLedger& ledger, const std::map<std::string, std::string>& config) {
  RunSummary sum;
  sum.run_id = ledger.run_id();
  sum.scenario = scenario;
  sum.pipeline = std::string(PipelineName(settings.pipeline));
  sum.model = settings.model;
  ComputeTargets(rounds, settings.target_accuracy, sum);
  const EnergyTotals totals = ledger.RunTotals();
  sum.joules_server = totals.server_j;
  sum.gco2e += totals.server_gco2e;
  sum.peak_rss_bytes = ProcessPeakRssBytes();
  for (const auto& [radio, t] : ledger.TotalsByRadio()) sum.joules_by_radio[radio] = t.total_j;
  for (const auto& [device, t] : ledger.TotalsByDevice()) sum.joules_by_device[device] = t.total_j;
  sum.measured_vs_modelled = ledger.MeasuredVsModelledByDevice();
  sum.config = config;
  sum.config["pipeline"] = sum.pipeline;
  sum.extra_metrics["server_joules"] = totals.server_j;
  return sum;
}

}  // namespace frugal
