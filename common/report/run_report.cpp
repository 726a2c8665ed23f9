#include "frugal/report/run_report.h"

#include <sys/resource.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>
#include <system_error>
#include <type_traits>

#include "csv_text.h"

namespace frugal {

TargetFigures FindTarget(std::span<const RoundRecord> records, double target_accuracy) {
  TargetFigures figures;
  uint64_t bytes = 0;
  double joules = 0;
  double gco2e = 0;
  for (const RoundRecord& r : records) {
    bytes += r.bytes_up + r.bytes_down;
    joules += r.joules_compute + r.joules_radio;
    gco2e += r.gco2e;
    // `>=` is false for NaN on either side, so a NaN never reaches the target.
    if (r.accuracy >= target_accuracy) {
      figures.rounds_to_target = r.round;
      figures.bytes_to_target = bytes;
      figures.joules_to_target = joules;
      figures.gco2e_to_target = gco2e;
      break;
    }
  }
  return figures;
}

void ComputeTargets(std::span<const RoundRecord> records, double target_accuracy,
                    RunSummary& summary) {
  const TargetFigures figures = FindTarget(records, target_accuracy);
  summary.target_accuracy = target_accuracy;
  summary.rounds_to_target = figures.rounds_to_target;
  summary.bytes_to_target = figures.bytes_to_target;
  summary.joules_to_target = figures.joules_to_target;
  summary.gco2e_to_target = figures.gco2e_to_target;

  summary.rounds = static_cast<uint32_t>(records.size());
  summary.final_accuracy = records.empty() ? 0.0 : records.back().accuracy;
  summary.bytes_up = 0;
  summary.bytes_down = 0;
  summary.joules_client = 0;
  summary.gco2e = 0;
  for (const RoundRecord& r : records) {
    summary.bytes_up += r.bytes_up;
    summary.bytes_down += r.bytes_down;
    summary.joules_client += r.joules_compute + r.joules_radio;
    summary.gco2e += r.gco2e;
  }
}

namespace {

constexpr size_t kRoundsCsvColumns = 32;
// Run directories written before the ring_wraps* columns.
constexpr size_t kRoundsCsvColumnsV6 = 30;
// Run directories written before the trigger_* columns.
constexpr size_t kRoundsCsvColumnsV5 = 24;
// Run directories written before the protocol_* columns.
constexpr size_t kRoundsCsvColumnsV4 = 21;
// Run directories written before the accuracy_int8 column.
constexpr size_t kRoundsCsvColumnsV3 = 20;
// Run directories written before the dp_epsilon and dp_delta columns.
constexpr size_t kRoundsCsvColumnsV2 = 18;
// Run directories written before the robust_* and backdoor_success columns.
constexpr size_t kRoundsCsvColumnsV1 = 14;

// Shortest text that parses back to the same value (std::to_chars guarantees it).
template <typename T>
void AppendNumber(std::string& line, T value) {
  std::array<char, 64> buffer;
  const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  // 64 characters hold any double or 64-bit integer, so this cannot fail.
  line.append(buffer.data(), ec == std::errc() ? end : buffer.data());
}

template <typename T>
Status ParseNumber(std::string_view field, size_t line_number, std::string_view column, T& value) {
  const char* first = field.data();
  const char* last = field.data() + field.size();
  std::from_chars_result result;
  if constexpr (std::is_floating_point_v<T>) {
    result = std::from_chars(first, last, value, std::chars_format::general);
  } else {
    result = std::from_chars(first, last, value);
  }
  if (field.empty() || result.ec != std::errc() || result.ptr != last) {
    const char* what = std::is_floating_point_v<T> ? "a number" : "a non-negative integer";
    return InvalidArgumentError("rounds.csv line " + std::to_string(line_number) + ": column " +
                                std::string(column) + " is '" + std::string(field.substr(0, 40)) +
                                "', not " + what +
                                (result.ec == std::errc::result_out_of_range ? " in range" : ""));
  }
  return OkStatus();
}


}  // namespace

void WriteRoundsCsv(std::ostream& out, std::span<const RoundRecord> records) {
  out << kRoundsCsvHeader << '\n';
  std::string line;
  for (const RoundRecord& r : records) {
    line.clear();
    AppendNumber(line, r.round);
    for (double v : {r.accuracy, r.loss}) {
      line += ',';
      AppendNumber(line, v);
    }
    for (uint64_t v : {r.bytes_up, r.bytes_down}) {
      line += ',';
      AppendNumber(line, v);
    }
    for (double v : {r.joules_compute, r.joules_radio, r.gco2e}) {
      line += ',';
      AppendNumber(line, v);
    }
    for (uint32_t v : {r.selected, r.completed, r.stragglers}) {
      line += ',';
      AppendNumber(line, v);
    }
    for (double v : {r.virtual_seconds, r.wall_seconds, r.utc_hour}) {
      line += ',';
      AppendNumber(line, v);
    }
    for (uint32_t v : {r.robust_clipped, r.robust_downweighted, r.robust_rejected}) {
      line += ',';
      AppendNumber(line, v);
    }
    for (double v : {r.backdoor_success, r.dp_epsilon, r.dp_delta, r.accuracy_int8}) {
      line += ',';
      AppendNumber(line, v);
    }
    if (r.protocol_cpu_seconds < 0) {
      line += ",,,";  // the protocol was not run (secure.run_protocol = false): nothing measured
    } else {
      for (uint64_t v : {r.protocol_bytes_up, r.protocol_bytes_down}) {
        line += ',';
        AppendNumber(line, v);
      }
      line += ',';
      AppendNumber(line, r.protocol_cpu_seconds);
    }
    line += ',';
    AppendNumber(line, r.trigger.scanned);
    line += ',';
    AppendNumber(line, r.trigger.flagged);
    line += ',';
    AppendNumber(line, r.trigger.anomaly);
    for (uint32_t v : {r.trigger.known, r.trigger.unlearnt, r.trigger.pruned}) {
      line += ',';
      AppendNumber(line, v);
    }
    for (int64_t v : {r.ring_wraps, r.ring_wraps_one_bit_less}) {
      line += ',';
      if (v >= 0) AppendNumber(line, v);  // empty: not counted
    }
    line += '\n';
    out << line;
  }
}

Result<std::vector<RoundRecord>> ParseRoundsCsv(std::string_view text) {
  static constexpr std::array<std::string_view, kRoundsCsvColumns> kColumns = {
      "round",          "accuracy",        "loss",        "bytes_up", "bytes_down",
      "joules_compute", "joules_radio",    "gco2e",       "selected", "completed",
      "stragglers",     "virtual_seconds", "wall_seconds", "utc_hour", "robust_clipped",
      "robust_downweighted", "robust_rejected", "backdoor_success", "dp_epsilon", "dp_delta",
      "accuracy_int8", "protocol_bytes_up", "protocol_bytes_down", "protocol_cpu_seconds", "trigger_scanned",
      "trigger_flagged", "trigger_anomaly", "trigger_known", "trigger_unlearnt", "trigger_pruned", "ring_wraps",
      "ring_wraps_one_bit_less"};
  const std::string_view header_v1 = kRoundsCsvHeader.substr(0, kRoundsCsvHeader.find(",robust_clipped"));
  const std::string_view header_v2 = kRoundsCsvHeader.substr(0, kRoundsCsvHeader.find(",dp_epsilon"));
  const std::string_view header_v3 = kRoundsCsvHeader.substr(0, kRoundsCsvHeader.find(",accuracy_int8"));
  const std::string_view header_v4 = kRoundsCsvHeader.substr(0, kRoundsCsvHeader.find(",protocol_bytes_up"));
  const std::string_view header_v5 = kRoundsCsvHeader.substr(0, kRoundsCsvHeader.find(",trigger_scanned"));
  const std::string_view header_v6 = kRoundsCsvHeader.substr(0, kRoundsCsvHeader.find(",ring_wraps"));
  size_t columns = kRoundsCsvColumns;
  std::vector<RoundRecord> records;
  bool saw_header = false;
  csv_text::Lines lines(text);
  std::string_view line;
  while (lines.Next(line)) {
    const size_t line_number = lines.number();
    if (!saw_header) {
      if (line == header_v1) columns = kRoundsCsvColumnsV1;
      if (line == header_v2) columns = kRoundsCsvColumnsV2;
      if (line == header_v3) columns = kRoundsCsvColumnsV3;
      if (line == header_v4) columns = kRoundsCsvColumnsV4;
      if (line == header_v5) columns = kRoundsCsvColumnsV5;
      if (line == header_v6) columns = kRoundsCsvColumnsV6;
      if (line != kRoundsCsvHeader && line != header_v1 && line != header_v2 && line != header_v3 &&
          line != header_v4 && line != header_v5 && line != header_v6) {
        return InvalidArgumentError("rounds.csv line 1: header is '" +
                                    std::string(line.substr(0, 200)) + "', expected '" +
                                    std::string(kRoundsCsvHeader) + "'");
      }
      saw_header = true;
      continue;
    }
    // Only a final newline may leave an empty line; an empty line in the
    // middle means the file was spliced or truncated.
    if (line.empty()) {
      if (lines.done()) break;
      return InvalidArgumentError("rounds.csv line " + std::to_string(line_number) +
                                  ": empty line before the end of the file");
    }
    const std::vector<std::string_view> fields = csv_text::SplitFields(line);
    if (fields.size() != columns) {
      return InvalidArgumentError("rounds.csv line " + std::to_string(line_number) + ": " +
                                  std::to_string(fields.size()) + " columns, expected " +
                                  std::to_string(columns));
    }
    RoundRecord r;
    size_t i = 0;
    auto next = [&](auto& value) {
      const size_t column = i++;
      return ParseNumber(fields[column], line_number, kColumns[column], value);
    };
    FRUGAL_RETURN_IF_ERROR(next(r.round));
    FRUGAL_RETURN_IF_ERROR(next(r.accuracy));
    FRUGAL_RETURN_IF_ERROR(next(r.loss));
    FRUGAL_RETURN_IF_ERROR(next(r.bytes_up));
    FRUGAL_RETURN_IF_ERROR(next(r.bytes_down));
    FRUGAL_RETURN_IF_ERROR(next(r.joules_compute));
    FRUGAL_RETURN_IF_ERROR(next(r.joules_radio));
    FRUGAL_RETURN_IF_ERROR(next(r.gco2e));
    FRUGAL_RETURN_IF_ERROR(next(r.selected));
    FRUGAL_RETURN_IF_ERROR(next(r.completed));
    FRUGAL_RETURN_IF_ERROR(next(r.stragglers));
    FRUGAL_RETURN_IF_ERROR(next(r.virtual_seconds));
    FRUGAL_RETURN_IF_ERROR(next(r.wall_seconds));
    FRUGAL_RETURN_IF_ERROR(next(r.utc_hour));
    if (columns >= kRoundsCsvColumnsV2) {
      FRUGAL_RETURN_IF_ERROR(next(r.robust_clipped));
      FRUGAL_RETURN_IF_ERROR(next(r.robust_downweighted));
      FRUGAL_RETURN_IF_ERROR(next(r.robust_rejected));
      FRUGAL_RETURN_IF_ERROR(next(r.backdoor_success));
    }
    if (columns >= kRoundsCsvColumnsV3) {
      FRUGAL_RETURN_IF_ERROR(next(r.dp_epsilon));
      FRUGAL_RETURN_IF_ERROR(next(r.dp_delta));
    }
    if (columns >= kRoundsCsvColumnsV4) FRUGAL_RETURN_IF_ERROR(next(r.accuracy_int8));
    if (columns >= kRoundsCsvColumnsV5 && fields[i].empty() && fields[i + 1].empty() && fields[i + 2].empty()) {
      r.protocol_cpu_seconds = -1;  // the protocol was not run: its three columns are empty
      i += 3;
    } else if (columns >= kRoundsCsvColumnsV5) {
      FRUGAL_RETURN_IF_ERROR(next(r.protocol_bytes_up));
      FRUGAL_RETURN_IF_ERROR(next(r.protocol_bytes_down));
      FRUGAL_RETURN_IF_ERROR(next(r.protocol_cpu_seconds));
    }
    if (columns >= kRoundsCsvColumnsV6) {
      FRUGAL_RETURN_IF_ERROR(next(r.trigger.scanned));
      FRUGAL_RETURN_IF_ERROR(next(r.trigger.flagged));
      FRUGAL_RETURN_IF_ERROR(next(r.trigger.anomaly));
      FRUGAL_RETURN_IF_ERROR(next(r.trigger.known));
      FRUGAL_RETURN_IF_ERROR(next(r.trigger.unlearnt));
      FRUGAL_RETURN_IF_ERROR(next(r.trigger.pruned));
    }
    if (columns == kRoundsCsvColumns) {
      // Empty: not counted (-1); else a count of support entries.
      for (int64_t* v : {&r.ring_wraps, &r.ring_wraps_one_bit_less}) {
        if (fields[i].empty()) {
          ++i;
          continue;
        }
        uint64_t count = 0;
        FRUGAL_RETURN_IF_ERROR(next(count));
        if (count > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          return InvalidArgumentError("rounds.csv line " + std::to_string(line_number) + ": column " +
                                      std::string(kColumns[i - 1]) + " is out of range");
        }
        *v = static_cast<int64_t>(count);
      }
    }
    records.push_back(r);
  }
  if (!saw_header) return InvalidArgumentError("rounds.csv is empty: no header line");
  return records;
}

namespace {

template <typename T>
nlohmann::ordered_json OptionalToJson(const std::optional<T>& value) {
  if (!value.has_value()) return nullptr;
  return *value;
}

}  // namespace

void WriteSummaryJson(std::ostream& out, const RunSummary& s) {
  nlohmann::ordered_json j;
  j["run_id"] = s.run_id;
  j["scenario"] = s.scenario;
  j["pipeline"] = s.pipeline;
  j["model"] = s.model;
  j["rounds"] = s.rounds;
  j["final_accuracy"] = s.final_accuracy;
  j["target_accuracy"] = s.target_accuracy;
  j["rounds_to_target"] = OptionalToJson(s.rounds_to_target);
  j["bytes_to_target"] = OptionalToJson(s.bytes_to_target);
  j["joules_to_target"] = OptionalToJson(s.joules_to_target);
  j["gco2e_to_target"] = OptionalToJson(s.gco2e_to_target);
  j["bytes_up"] = s.bytes_up;
  j["bytes_down"] = s.bytes_down;
  j["joules_client"] = s.joules_client;
  j["joules_server"] = s.joules_server;
  j["gco2e"] = s.gco2e;
  j["wall_seconds"] = s.wall_seconds;
  j["client_updates_per_second"] = s.client_updates_per_second;
  j["peak_rss_bytes"] = s.peak_rss_bytes;
  j["dp_epsilon"] = OptionalToJson(s.dp_epsilon);
  j["dp_delta"] = OptionalToJson(s.dp_delta);
  if (!s.dp_sampling.empty()) {
    j["dp_sampling"] = s.dp_sampling;
    j["dp_adjacency"] = s.dp_adjacency;
    j["dp_bound"] = s.dp_bound;
  }
  j["stop_reason"] = s.stop_reason.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s.stop_reason);
  j["joules_by_radio"] = nlohmann::ordered_json::object();
  for (const auto& [name, joules] : s.joules_by_radio) j["joules_by_radio"][name] = joules;
  j["joules_by_device"] = nlohmann::ordered_json::object();
  for (const auto& [name, joules] : s.joules_by_device) j["joules_by_device"][name] = joules;
  j["measured_vs_modelled"] = nlohmann::ordered_json::object();
  for (const auto& [device, m] : s.measured_vs_modelled) {
    j["measured_vs_modelled"][device] = {{"rows", m.rows}, {"measured_j", m.measured_j},
                                         {"modelled_j", m.modelled_j}, {"ratio", m.ratio()}};
  }
  j["notes"] = s.notes;
  j["config"] = nlohmann::ordered_json::object();
  for (const auto& [key, value] : s.config) j["config"][key] = value;
  j["extra_metrics"] = nlohmann::ordered_json::object();
  for (const auto& [key, value] : s.extra_metrics) j["extra_metrics"][key] = value;
  j["representation"] = nlohmann::ordered_json::array();
  for (const ShareRow& r : s.representation) {
    j["representation"].push_back({{"kind", r.kind}, {"id", r.id}, {"clients", r.clients}, {"examples", r.examples},
                                   {"participations", r.participations}, {"selections", r.selections},
                                   {"client_share", r.client_share}, {"data_share", r.data_share},
                                   {"participation_share", r.participation_share},
                                   {"selection_share", r.selection_share}});
  }
  // `replace` turns bytes that are not UTF-8 into U+FFFD instead of throwing:
  // names and config values come from users.
  out << j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
}

void WriteRepresentationCsv(std::ostream& out, std::span<const ShareRow> rows) {
  out << "kind,id,clients,examples,participations,selections,client_share,data_share,participation_share,"
         "selection_share\n";
  char buf[160];
  for (const ShareRow& r : rows) {
    std::snprintf(buf, sizeof buf, ",%.17g,%.17g,%.17g,%.17g", r.client_share, r.data_share, r.participation_share,
                  r.selection_share);
    out << r.kind << ',' << r.id << ',' << r.clients << ',' << r.examples << ',' << r.participations << ','
        << r.selections << buf << '\n';
  }
}

uint64_t ProcessPeakRssBytes() {
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace frugal
