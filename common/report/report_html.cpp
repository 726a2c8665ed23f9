// report.html: one self-contained page per run. The chart library (uPlot) is
// inlined from the build-time generated header, the series travel as JSON in
// a non-executed <script type="application/json"> block, and every user
// string in the markup is HTML-escaped.
#include <algorithm>
#include <array>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

#include "frugal/report/run_report.h"
#include "frugal/report/uplot_assets.h"

namespace frugal {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

// Length of the well-formed UTF-8 sequence at the start of `s`, or 0 when the
// first bytes are not one (overlong forms, surrogates and > U+10FFFF included).
size_t Utf8SequenceLength(std::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) return 1;
  size_t length = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < length) return 0;
  if (byte(1) < lo || byte(1) > hi) return 0;
  for (size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return length;
}

// Escapes the five characters HTML gives meaning to, and replaces bytes that
// are not UTF-8 with U+FFFD (the page declares charset utf-8).
std::string EscapeHtml(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  while (!text.empty()) {
    const size_t length = Utf8SequenceLength(text);
    if (length == 0) {
      out += kReplacementCharacter;
      text.remove_prefix(1);
      continue;
    }
    if (length == 1) {
      switch (text[0]) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&quot;";
          break;
        case '\'':
          out += "&#39;";
          break;
        default:
          out += text[0];
      }
    } else {
      out.append(text.substr(0, length));
    }
    text.remove_prefix(length);
  }
  return out;
}

// JSON text that is safe inside a <script> element: '<', '>' and '&' can only
// occur inside JSON strings, where their \u escapes mean the same thing, so
// no "</script>" or "<!--" in a user string can end the block.
std::string JsonForScript(const Json& j) {
  const std::string text = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '<':
        out += "\\u003c";
        break;
      case '>':
        out += "\\u003e";
        break;
      case '&':
        out += "\\u0026";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Printf(const char* format, double value) {
  std::array<char, 64> buffer;
  std::snprintf(buffer.data(), buffer.size(), format, value);
  return buffer.data();
}

// 1234567 -> "1,234,567".
std::string FormatCount(uint64_t value) {
  std::string digits = std::to_string(value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// Whole numbers as counts with separators ("24,036"), others to six digits.
std::string FormatNumber(double value) {
  if (!std::isfinite(value)) return "n/a";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    const std::string count = FormatCount(static_cast<uint64_t>(std::fabs(value)));
    return value < 0 ? "-" + count : count;
  }
  return Printf("%.6g", value);
}

// Scales to k, M, G, T, P (powers of 1000) with four significant digits.
std::string FormatSi(double value, std::string_view unit) {
  if (!std::isfinite(value)) return "n/a";
  static constexpr std::array<std::string_view, 6> kPrefixes = {"", "k", "M", "G", "T", "P"};
  size_t prefix = 0;
  while (std::fabs(value) >= 1000 && prefix + 1 < kPrefixes.size()) {
    value /= 1000;
    ++prefix;
  }
  return Printf("%.4g", value) + " " + std::string(kPrefixes[prefix]) + std::string(unit);
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1000) return FormatCount(bytes) + " B";
  return FormatSi(static_cast<double>(bytes), "B") + " (" + FormatCount(bytes) + " B)";
}

std::string FormatJoules(double joules) { return FormatSi(joules, "J"); }

std::string FormatGrams(double grams) {
  if (!std::isfinite(grams)) return "n/a";
  if (std::fabs(grams) >= 1e6) return Printf("%.4g", grams / 1e6) + " t CO2e";
  if (std::fabs(grams) >= 1e3) return Printf("%.4g", grams / 1e3) + " kg CO2e";
  return Printf("%.4g", grams) + " g CO2e";
}

constexpr std::string_view kNotReached = "not reached";

template <typename T, typename Format>
std::string FormatOptional(const std::optional<T>& value, Format format) {
  return value.has_value() ? format(*value) : std::string(kNotReached);
}

std::string FormatRatio(double numerator, double denominator) {
  if (!(numerator > 0) || !(denominator > 0) || !std::isfinite(numerator / denominator)) {
    return "n/a";
  }
  return Printf("%.3g", numerator / denominator) + "\xC3\x97";  // U+00D7 multiplication sign
}

Json SeriesJson(std::string_view label, std::span<const RoundRecord> records) {
  Json round = Json::array(), accuracy = Json::array(), loss = Json::array();
  Json cum_bytes = Json::array(), cum_joules = Json::array();
  uint64_t bytes = 0;
  double joules = 0;
  for (const RoundRecord& r : records) {
    bytes += r.bytes_up + r.bytes_down;
    joules += r.joules_compute + r.joules_radio;
    round.push_back(r.round);
    accuracy.push_back(r.accuracy);  // NaN is dumped as null: a gap in the line
    loss.push_back(r.loss);
    cum_bytes.push_back(bytes);
    cum_joules.push_back(joules);
  }
  Json j;
  j["label"] = std::string(label);
  j["round"] = std::move(round);
  j["accuracy"] = std::move(accuracy);
  j["loss"] = std::move(loss);
  j["cum_bytes"] = std::move(cum_bytes);
  j["cum_joules"] = std::move(cum_joules);
  return j;
}

void WriteRow(std::ostream& out, std::string_view label, std::string_view value) {
  out << "<tr><th scope=\"row\">" << EscapeHtml(label) << "</th><td>" << EscapeHtml(value)
      << "</td></tr>\n";
}

template <typename Map, typename Format>
void WriteMapTable(std::ostream& out, std::string_view title, std::string_view key_header,
                   std::string_view value_header, const Map& map, Format format) {
  if (map.empty()) return;
  out << "<h3>" << EscapeHtml(title) << "</h3>\n<table class=\"kv\"><thead><tr><th>"
      << EscapeHtml(key_header) << "</th><th>" << EscapeHtml(value_header)
      << "</th></tr></thead><tbody>\n";
  for (const auto& [key, value] : map) WriteRow(out, key, format(value));
  out << "</tbody></table>\n";
}

// Joules per class with each class's share of the total.
std::map<std::string, std::string> WithShares(const std::map<std::string, double>& joules) {
  double total = 0;
  for (const auto& [name, j] : joules) total += j;
  std::map<std::string, std::string> out;
  for (const auto& [name, j] : joules) {
    std::string text = FormatJoules(j);
    if (total > 0 && std::isfinite(j)) text += " (" + Printf("%.1f", 100.0 * j / total) + " %)";
    out[name] = std::move(text);
  }
  return out;
}

std::string Headline(const RunSummary& s) {
  std::string text;
  if (s.rounds_to_target.has_value()) {
    text = "Reached accuracy " + FormatNumber(s.target_accuracy) + " in round " +
           std::to_string(*s.rounds_to_target);
    if (s.bytes_to_target.has_value()) text += ", after " + FormatBytes(*s.bytes_to_target);
    if (s.joules_to_target.has_value()) {
      text += " on the radio and " + FormatJoules(*s.joules_to_target) + " of client energy";
    }
    text += ".";
  } else {
    text = "Did not reach accuracy " + FormatNumber(s.target_accuracy) + " within " +
           std::to_string(s.rounds) + " rounds.";
  }
  text += " Final accuracy " + FormatNumber(s.final_accuracy) + ".";
  return text;
}

void WriteSummaryTable(std::ostream& out, const RunSummary& s) {
  out << "<table class=\"kv\"><tbody>\n";
  WriteRow(out, "run id", s.run_id);
  WriteRow(out, "scenario", s.scenario);
  WriteRow(out, "pipeline", s.pipeline);
  WriteRow(out, "model", s.model);
  WriteRow(out, "rounds", FormatCount(s.rounds));
  WriteRow(out, "final accuracy", FormatNumber(s.final_accuracy));
  WriteRow(out, "target accuracy", FormatNumber(s.target_accuracy));
  WriteRow(out, "rounds to target",
           FormatOptional(s.rounds_to_target, [](uint32_t v) { return FormatCount(v); }));
  WriteRow(out, "bytes to target (up + down)", FormatOptional(s.bytes_to_target, FormatBytes));
  WriteRow(out, "client joules to target", FormatOptional(s.joules_to_target, FormatJoules));
  WriteRow(out, "carbon to target", FormatOptional(s.gco2e_to_target, FormatGrams));
  WriteRow(out, "bytes up", FormatBytes(s.bytes_up));
  WriteRow(out, "bytes down", FormatBytes(s.bytes_down));
  WriteRow(out, "client joules", FormatJoules(s.joules_client));
  WriteRow(out, "server joules", FormatJoules(s.joules_server));
  WriteRow(out, "carbon", FormatGrams(s.gco2e));
  WriteRow(out, "wall time", FormatNumber(s.wall_seconds) + " s");
  WriteRow(out, "client updates per second", FormatNumber(s.client_updates_per_second));
  WriteRow(out, "peak RSS", FormatBytes(s.peak_rss_bytes));
  out << "</tbody></table>\n";
}

void WriteBaselineTable(std::ostream& out, const RunSummary& s,
                        std::span<const RoundRecord> baseline, std::string_view run_label,
                        std::string_view baseline_label) {
  const TargetFigures b = FindTarget(baseline, s.target_accuracy);
  uint64_t b_bytes = 0;
  double b_joules = 0;
  for (const RoundRecord& r : baseline) {
    b_bytes += r.bytes_up + r.bytes_down;
    b_joules += r.joules_compute + r.joules_radio;
  }
  const double b_final = baseline.empty() ? 0.0 : baseline.back().accuracy;
  const auto optional_ratio = [](const auto& base, const auto& run) {
    if (!base.has_value() || !run.has_value()) return std::string("n/a");
    return FormatRatio(static_cast<double>(*base), static_cast<double>(*run));
  };
  const auto row = [&](std::string_view label, const std::string& run_value,
                       const std::string& base_value, const std::string& ratio) {
    out << "<tr><th scope=\"row\">" << EscapeHtml(label) << "</th><td>" << EscapeHtml(run_value)
        << "</td><td>" << EscapeHtml(base_value) << "</td><td>" << EscapeHtml(ratio)
        << "</td></tr>\n";
  };
  const auto count = [](uint32_t v) { return FormatCount(v); };

  out << "<h2>Against " << EscapeHtml(baseline_label) << "</h2>\n"
      << "<p>Both series measured against target accuracy " << FormatNumber(s.target_accuracy)
      << ". The last column is " << EscapeHtml(baseline_label) << " divided by "
      << EscapeHtml(run_label) << ": above 1 means this run needed less.</p>\n"
      << "<table class=\"cmp\"><thead><tr><th></th><th>" << EscapeHtml(run_label) << "</th><th>"
      << EscapeHtml(baseline_label) << "</th><th>ratio</th></tr></thead><tbody>\n";
  row("rounds to target", FormatOptional(s.rounds_to_target, count),
      FormatOptional(b.rounds_to_target, count),
      optional_ratio(b.rounds_to_target, s.rounds_to_target));
  row("bytes to target", FormatOptional(s.bytes_to_target, FormatBytes),
      FormatOptional(b.bytes_to_target, FormatBytes),
      optional_ratio(b.bytes_to_target, s.bytes_to_target));
  row("client joules to target", FormatOptional(s.joules_to_target, FormatJoules),
      FormatOptional(b.joules_to_target, FormatJoules),
      optional_ratio(b.joules_to_target, s.joules_to_target));
  row("carbon to target", FormatOptional(s.gco2e_to_target, FormatGrams),
      FormatOptional(b.gco2e_to_target, FormatGrams),
      optional_ratio(b.gco2e_to_target, s.gco2e_to_target));
  row("rounds run", FormatCount(s.rounds), FormatCount(baseline.size()), "");
  row("final accuracy", FormatNumber(s.final_accuracy), FormatNumber(b_final), "");
  row("bytes, whole run", FormatBytes(s.bytes_up + s.bytes_down), FormatBytes(b_bytes),
      FormatRatio(static_cast<double>(b_bytes), static_cast<double>(s.bytes_up + s.bytes_down)));
  row("client joules, whole run", FormatJoules(s.joules_client), FormatJoules(b_joules),
      FormatRatio(b_joules, s.joules_client));
  out << "</tbody></table>\n";
}

constexpr std::string_view kPageCss = R"CSS(
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       margin: 0 auto; max-width: 1150px; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin: 8px 0 2px; }
h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
.sub { color: #555; margin: 0 0 8px; }
.headline { font-size: 16px; background: #f4f7fb; border-left: 4px solid #1f77b4; padding: 8px 12px; }
.chart { margin: 8px 0 20px; min-height: 360px; }
.chart h3 { margin-bottom: 2px; }
table { border-collapse: collapse; margin: 4px 0 12px; }
th, td { text-align: left; padding: 3px 12px 3px 0; border-bottom: 1px solid #eee; vertical-align: top; }
th[scope=row] { font-weight: 600; color: #444; white-space: nowrap; }
table.cmp td, table.cmp thead th { padding-right: 24px; }
table.config td { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; word-break: break-all; }
.columns { display: flex; flex-wrap: wrap; gap: 0 48px; }
footer { margin-top: 32px; color: #777; font-size: 13px; }
.empty { color: #999; font-style: italic; }
)CSS";

// Draws accuracy against round, cumulative bytes and cumulative client joules
// for the run and, when present, the baseline; uPlot.join aligns two series
// whose x values differ.
constexpr std::string_view kPageJs = R"JS(
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('frugal-data').textContent);
  var colors = ['#1f77b4', '#d62728'];
  function si(v, unit) {
    if (v == null || !isFinite(v)) return '';
    var prefixes = ['', 'k', 'M', 'G', 'T', 'P'], i = 0;
    while (Math.abs(v) >= 1000 && i < prefixes.length - 1) { v /= 1000; i++; }
    return (+v.toPrecision(3)) + ' ' + prefixes[i] + unit;
  }
  function fmt(unit) {
    return function (v) { return unit ? si(v, unit) : (v == null ? '' : String(v)); };
  }
  var list = [data.run];
  if (data.baseline) list.push(data.baseline);

  // [xs, ys] of one series; a log axis cannot show x <= 0.
  function table(s, key, positiveOnly) {
    var xs = [], ys = [];
    for (var i = 0; i < s[key].length; i++) {
      var x = s[key][i];
      if (x == null || (positiveOnly && !(x > 0))) continue;
      if (xs.length && x <= xs[xs.length - 1]) {
        ys[ys.length - 1] = s.accuracy[i];  // uPlot needs strictly rising x: keep the later point
        continue;
      }
      xs.push(x);
      ys.push(s.accuracy[i]);
    }
    return [xs, ys];
  }

  function accuracyRange(u, min, max) {
    if (min == null || max == null) return [0, 1];
    var lo = Math.max(0, Math.floor(Math.min(min, data.target || min) * 10) / 10);
    var hi = Math.min(1, Math.ceil(Math.max(max, data.target || max) * 10 + 1e-9) / 10);
    if (hi <= lo) hi = lo + 0.1;
    return [lo, hi];
  }

  var roundSteps = [];
  for (var m = 1; m <= 1e9; m *= 10) roundSteps.push(m, 2 * m, 5 * m);

  var charts = [];
  function draw(id, key, xLabel, unit, logX) {
    var el = document.getElementById(id);
    var tables = list.map(function (s) { return table(s, key, logX); });
    var aligned = tables.length === 1 ? tables[0] : uPlot.join(tables);
    if (!aligned[0].length) {
      el.insertAdjacentHTML('beforeend', '<p class="empty">no data to draw</p>');
      return;
    }
    var series = [{ label: xLabel, value: function (u, v) { return fmt(unit)(v); } }];
    list.forEach(function (s, i) {
      series.push({ label: s.label, stroke: colors[i], width: 2, spanGaps: true,
                    points: { show: s.round.length <= 60 },
                    value: function (u, v) { return v == null ? '' : v.toFixed(4); } });
    });
    if (data.target > 0) {
      aligned.push(aligned[0].map(function () { return data.target; }));
      series.push({ label: 'target', stroke: '#999', width: 1, dash: [6, 4], points: { show: false },
                    value: function () { return String(data.target); } });
    }
    var xScale = { time: false };
    if (logX) { xScale.distr = 3; xScale.log = 10; }
    var xAxis = { label: xLabel, values: function (u, splits) { return splits.map(fmt(unit)); } };
    if (key === 'round') xAxis.incrs = roundSteps;  // whole rounds only: no tick at 2.5
    var opts = {
      width: Math.max(320, Math.min(1100, el.clientWidth || 1100)),
      height: 320,
      scales: { x: xScale, y: { range: accuracyRange } },
      axes: [
        xAxis,
        { label: 'accuracy' }
      ],
      series: series
    };
    charts.push([new uPlot(opts, aligned, el), el]);
  }

  draw('chart-accuracy-round', 'round', 'round', '', false);
  draw('chart-accuracy-bytes', 'cum_bytes', 'cumulative bytes, up + down (log)', 'B', true);
  draw('chart-accuracy-joules', 'cum_joules', 'cumulative client energy', 'J', false);

  window.addEventListener('resize', function () {
    charts.forEach(function (c) {
      c[0].setSize({ width: Math.max(320, Math.min(1100, c[1].clientWidth || 1100)), height: 320 });
    });
  });
})();
)JS";

}  // namespace

void WriteReportHtml(std::ostream& out, const RunSummary& s, std::span<const RoundRecord> records,
                     std::span<const RoundRecord> baseline_records,
                     std::string_view baseline_label) {
  const std::string run_label = s.pipeline.empty() ? "this run" : s.pipeline;

  Json data;
  data["target"] = s.target_accuracy;
  data["run"] = SeriesJson(run_label, records);
  data["baseline"] =
      baseline_records.empty() ? Json(nullptr) : SeriesJson(baseline_label, baseline_records);

  std::string subtitle;
  for (const std::string* part : {&s.scenario, &s.pipeline, &s.model, &s.run_id}) {
    if (part->empty()) continue;
    if (!subtitle.empty()) subtitle += " \xC2\xB7 ";  // U+00B7 middle dot
    subtitle += *part;
  }

  out << "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      << "<title>Frugal run report" << (subtitle.empty() ? "" : ": ") << EscapeHtml(subtitle)
      << "</title>\n"
      << "<style>\n"
      << report_assets::kUplotCss << "\n</style>\n"
      << "<style>" << kPageCss << "</style>\n</head>\n<body>\n"
      << "<header>\n<h1>Frugal run report</h1>\n<p class=\"sub\">" << EscapeHtml(subtitle)
      << "</p>\n<p class=\"headline\">" << EscapeHtml(Headline(s)) << "</p>\n</header>\n";

  out << "<section>\n<h2>Accuracy</h2>\n"
      << "<div class=\"chart\" id=\"chart-accuracy-round\"><h3>Accuracy against round</h3></div>\n"
      << "<div class=\"chart\" id=\"chart-accuracy-bytes\"><h3>Accuracy against cumulative bytes "
         "on the radio (up + down, log scale)</h3></div>\n"
      << "<div class=\"chart\" id=\"chart-accuracy-joules\"><h3>Accuracy against cumulative client "
         "energy (compute + radio)</h3></div>\n"
      << "</section>\n";

  if (!baseline_records.empty()) {
    WriteBaselineTable(out, s, baseline_records, run_label, baseline_label);
  }

  out << "<section>\n<h2>Summary</h2>\n<div class=\"columns\">\n<div>\n";
  WriteSummaryTable(out, s);
  out << "</div>\n<div>\n";
  WriteMapTable(out, "Client energy by radio class", "radio", "joules",
                WithShares(s.joules_by_radio), [](const std::string& v) { return v; });
  WriteMapTable(out, "Client energy by device class", "device", "joules",
                WithShares(s.joules_by_device), [](const std::string& v) { return v; });
  WriteMapTable(out, "Other metrics", "metric", "value", s.extra_metrics, FormatNumber);
  out << "</div>\n</div>\n</section>\n";

  if (!s.notes.empty()) {
    out << "<section>\n<h2>Notes</h2>\n<ul>\n";
    for (const std::string& note : s.notes) out << "<li>" << EscapeHtml(note) << "</li>\n";
    out << "</ul>\n</section>\n";
  }

  if (!s.config.empty()) {
    out << "<section>\n<h2>Configuration</h2>\n<table class=\"kv config\"><tbody>\n";
    for (const auto& [key, value] : s.config) WriteRow(out, key, value);
    out << "</tbody></table>\n</section>\n";
  }

  out << "<footer>Written by Frugal. Charts drawn by uPlot " << report_assets::kUplotVersion
      << " (MIT licence, inlined below; the page needs no network).</footer>\n";

  // The licence must travel with the inlined code; "--" cannot occur inside an
  // HTML comment, so it is broken up.
  std::string license(report_assets::kUplotLicense);
  for (size_t at = license.find("--"); at != std::string::npos; at = license.find("--", at)) {
    license.replace(at, 2, "- -");
  }
  out << "<!-- uPlot licence:\n" << license << "\n-->\n";

  out << "<script type=\"application/json\" id=\"frugal-data\">" << JsonForScript(data)
      << "</script>\n"
      << "<script>\n"
      << report_assets::kUplotJs << "\n</script>\n"
      << "<script>" << kPageJs << "</script>\n</body>\n</html>\n";
}

}  // namespace frugal
