// The one Frugal page (frugal/report/dashboard.h): report.html, the
// coordinator's live dashboard and the comparison of runs. The chart library
// (uPlot) is inlined from the build-time generated header, the data travel as
// JSON in a non-executed <script type="application/json"> block (and, live,
// from GET api/state), and every user string in the markup is HTML-escaped.
#include <algorithm>
#include <array>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <map>
#include <ostream>
#include <sstream>
#include <string>

#include "frugal/report/dashboard.h"
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
  Json cum_bytes = Json::array(), cum_joules = Json::array(), cum_gco2e = Json::array();
  uint64_t bytes = 0;
  double joules = 0, grams = 0;
  for (const RoundRecord& r : records) {
    bytes += r.bytes_up + r.bytes_down;
    joules += r.joules_compute + r.joules_radio;
    grams += r.gco2e;
    round.push_back(r.round);
    accuracy.push_back(r.accuracy);  // NaN is dumped as null: a gap in the line
    loss.push_back(r.loss);
    cum_bytes.push_back(bytes);
    cum_joules.push_back(joules);
    cum_gco2e.push_back(grams);
  }
  Json j;
  j["label"] = std::string(label);
  j["round"] = std::move(round);
  j["accuracy"] = std::move(accuracy);
  j["loss"] = std::move(loss);
  j["cum_bytes"] = std::move(cum_bytes);
  j["cum_joules"] = std::move(cum_joules);
  j["cum_gco2e"] = std::move(cum_gco2e);
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
  if (s.dp_epsilon.has_value()) {
    WriteRow(out, "\u03b5 spent (DP)", FormatNumber(*s.dp_epsilon) + " at \u03b4 = " + FormatNumber(s.dp_delta.value_or(0)));
    if (!s.dp_sampling.empty()) {
      // What that ε is a bound for (docs/privacy.md, "What the bound assumes").
      WriteRow(out, "DP bound", s.dp_sampling + " sampling, " + s.dp_adjacency + " adjacency, " + s.dp_bound);
    }
  }
  if (!s.stop_reason.empty()) WriteRow(out, "stopped early", s.stop_reason);
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
.sub { color: #555; margin: 0 0 8px; overflow-wrap: anywhere; }
.headline { font-size: 16px; background: #f4f7fb; border-left: 4px solid #1f77b4; padding: 8px 12px; }
.chart { margin: 8px 0 20px; min-height: 300px; }
.chart h3 { margin-bottom: 2px; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 4px 0 12px; }
th, td { text-align: left; padding: 3px 12px 3px 0; border-bottom: 1px solid #eee; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
th[scope=row] { font-weight: 600; color: #444; white-space: nowrap; }
table.cmp td, table.cmp thead th { padding-right: 24px; }
table.config td { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; word-break: break-all; }
table.grid td, table.grid th { padding: 4px 10px; white-space: nowrap; }
table.grid thead th { border-bottom: 2px solid #ccc; }
.columns { display: flex; flex-wrap: wrap; gap: 0 48px; }
.status { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 6px 16px;
          background: #f4f7fb; padding: 10px 12px; margin: 8px 0; }
.status div b { display: block; font-size: 12px; color: #555; font-weight: 600; text-transform: uppercase; }
.status div span { font-size: 18px; font-variant-numeric: tabular-nums; }
.state { display: inline-block; padding: 0 6px; border-radius: 3px; border: 1px solid; font-size: 13px; }
.state-training, .state-uploading { color: #084c8d; border-color: #1f77b4; background: #e8f1fa; }
.state-idle, .state-connected { color: #225522; border-color: #4a4; background: #eef8ee; }
.state-ineligible { color: #6b4a00; border-color: #c90; background: #fdf6e3; }
.state-gone { color: #7a1010; border-color: #c33; background: #fbeaea; text-decoration: line-through; }
footer { margin-top: 32px; color: #777; font-size: 13px; }
.empty { color: #999; font-style: italic; }
@media (max-width: 600px) {
  body { padding: 8px 10px 32px; font-size: 14px; }
  h1 { font-size: 20px; }
  .chart { min-height: 240px; }
  th[scope=row] { white-space: normal; }
}
)CSS";

// Draws the page from its JSON document: the status line, accuracy against
// round, cumulative bytes (log axis), cumulative client joules and gCO2e for
// every run (uPlot.join aligns runs whose x values differ), the current round
// and the clients table. A live page fetches the document again every
// poll_ms and redraws what changed.
constexpr std::string_view kPageJs = R"JS(
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('frugal-data').textContent);
  var colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
  var dashes = [[], [8, 4], [2, 3], [12, 3, 2, 3], [6, 6], [1, 5]];
  function count(v) { return v == null || !isFinite(v) ? 'n/a' : Math.round(v).toLocaleString('en-US'); }
  // 3 significant digits with an SI prefix: 0.0042 g -> "4.2 mg", 2515040 B -> "2.52 MB".
  function si(v, unit) {
    if (v == null || !isFinite(v)) return '';
    var prefixes = ['n', '\u00b5', 'm', '', 'k', 'M', 'G', 'T', 'P'], i = 3;
    while (Math.abs(v) >= 1000 && i < prefixes.length - 1) { v /= 1000; i++; }
    while (v !== 0 && Math.abs(v) < 1 && i > 0) { v *= 1000; i--; }
    return (+v.toPrecision(3)).toLocaleString('en-US') + ' ' + prefixes[i] + unit;
  }
  function grams(v) { return v == null || !isFinite(v) ? 'n/a' : si(v, 'g CO2e'); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text != null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  // [xs, ys] of one run; a log axis cannot show x <= 0.
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

  var specs = [
    ['chart-accuracy', 'round', 'round', function (v) { return v == null ? '' : count(v); }, false],
    ['chart-bytes', 'cum_bytes', 'bytes, up + down (log)', function (v) { return si(v, 'B'); }, true],
    ['chart-energy', 'cum_joules', 'client energy, joules (log)', function (v) { return si(v, 'J'); }, true],
    ['chart-carbon', 'cum_gco2e', 'client carbon, grams CO2e (log)', function (v) { return si(v, 'g'); }, true]
  ];
  var charts = {};
  function chartWidth(box) { return Math.max(260, Math.min(1100, box.clientWidth || 1100)); }
  function chartHeight() { return window.innerWidth < 600 ? 240 : 320; }
  function draw(spec) {
    var id = spec[0], key = spec[1], xLabel = spec[2], fmt = spec[3], logX = spec[4];
    var box = document.getElementById(id);
    if (!box) return;
    var tables = data.runs.map(function (s) { return table(s, key, logX); });
    var aligned = tables.length === 1 ? tables[0] : uPlot.join(tables);
    var sig = JSON.stringify(aligned);
    var old = charts[id];
    if (old && old.sig === sig) return;
    if (old && old.plot) old.plot.destroy();
    var empty = box.querySelector('.empty');
    if (empty) empty.remove();
    charts[id] = { sig: sig, plot: null };
    box.setAttribute('data-points', String(aligned[0].length));
    if (!aligned[0].length) {
      box.appendChild(el('p', data.live ? 'no round committed yet' : 'no data to draw', 'empty'));
      return;
    }
    var series = [{ label: xLabel, value: function (u, v) { return fmt(v); } }];
    data.runs.forEach(function (s, i) {
      series.push({ label: s.label, stroke: colors[i % colors.length], dash: dashes[i % dashes.length], width: 2,
                    spanGaps: true, points: { show: s.round.length <= 60, size: 6 },
                    value: function (u, v) { return v == null ? '' : v.toFixed(4); } });
    });
    if (data.target > 0) {
      aligned = aligned.concat([aligned[0].map(function () { return data.target; })]);
      series.push({ label: 'target ' + data.target, stroke: '#777', width: 1, dash: [3, 3], points: { show: false },
                    value: function () { return String(data.target); } });
    }
    var xScale = { time: false };
    if (logX) { xScale.distr = 3; xScale.log = 10; }
    var xAxis = { label: xLabel, values: function (u, splits) { return splits.map(fmt); } };
    if (key === 'round') xAxis.incrs = roundSteps;  // whole rounds only: no tick at 2.5
    var opts = {
      width: chartWidth(box), height: chartHeight(),
      scales: { x: xScale, y: { range: accuracyRange } },
      axes: [xAxis, { label: 'accuracy', size: 50 }],
      series: series
    };
    charts[id].plot = new uPlot(opts, aligned, box);
  }

  function renderStatus(s) {
    var box = document.getElementById('status');
    if (!box || !s) return;
    var next = '';
    if (s.state === 'done') next = 'run complete';
    else if (s.round_open) next = 'round ' + count(s.round) + ' open';
    else if (s.state === 'closing') next = 'round ' + count(s.round) + ' closing';
    else if (s.connected < s.min_clients) next = 'waiting for ' + count(s.min_clients - s.connected) + ' more client(s)';
    else if (s.next_round_in_s != null) next = s.next_round_in_s.toFixed(1) + ' s';
    var cells = [['state', s.state], ['round', count(s.round) + ' of ' + count(s.rounds_total)],
                 ['model version', count(s.model_version)], ['next round', next],
                 ['connected clients', count(s.connected)],
                 ['target accuracy', data.target > 0 ? String(data.target) : 'none']];
    if (s.epsilon != null) cells.push(['\u03b5 spent (DP)', s.epsilon.toFixed(3)]);
    if (s.dp_sampling != null) {
      cells.push(['DP bound', s.dp_sampling + ' sampling, ' + s.dp_adjacency + ' adjacency, ' + s.dp_bound]);
    }
    box.textContent = '';
    cells.forEach(function (c) {
      var d = el('div');
      d.setAttribute('data-field', c[0]);
      d.appendChild(el('b', c[0]));
      d.appendChild(el('span', c[1]));
      box.appendChild(d);
    });
  }

  function renderRound(r) {
    var box = document.getElementById('round');
    if (!box || !r) return;
    box.textContent = '';
    if (!r.round) { box.appendChild(el('p', 'no round opened yet', 'empty')); return; }
    box.appendChild(el('p', 'Round ' + count(r.round) + (r.open ? ' (open)' : ' (closed)') + ': ' +
        count(r.selected) + ' selected, ' + count(r.received) + ' updates received, ' +
        count(r.rejected.length) + ' rejected, ' + count(r.stragglers) + (r.open ? ' still training.' : ' stragglers.')));
    if (r.rejected.length) {
      var ul = el('ul');
      r.rejected.forEach(function (x) { ul.appendChild(el('li', x.client + ': ' + x.reason)); });
      box.appendChild(ul);
    }
  }

  function renderClients(list) {
    var t = document.getElementById('clients');
    if (!t || !list) return;
    var body = t.tBodies[0];
    body.textContent = '';
    list.forEach(function (c) {
      var tr = el('tr');
      tr.setAttribute('data-client', c.name);
      tr.setAttribute('data-state', c.state);
      var state = el('td');
      state.appendChild(el('span', c.state, 'state state-' + c.state));
      var cells = [el('td', c.name), state, el('td', c.device), el('td', c.radio), el('td', c.region),
                   el('td', 'v' + count(c.held_version), 'num'),
                   el('td', c.last_seen_s == null ? 'not this session' : c.last_seen_s.toFixed(1) + ' s ago', 'num'),
                   el('td', count(c.rounds), 'num'), el('td', count(c.bytes) + ' B', 'num'),
                   el('td', si(c.joules, 'J') + (c.measured ? ' (measured)' : ' (modelled)'), 'num'),
                   el('td', grams(c.gco2e), 'num')];
      cells.forEach(function (td) { tr.appendChild(td); });
      body.appendChild(tr);
    });
    var caption = document.getElementById('clients-count');
    if (caption) caption.textContent = count(list.length) + ' known client(s)';
  }

  function renderMeasured(list) {
    var section = document.getElementById('measured-section');
    var t = document.getElementById('measured');
    if (!section || !t || !list) return;
    section.hidden = list.length === 0;
    var body = t.tBodies[0];
    body.textContent = '';
    list.forEach(function (m) {
      var tr = el('tr');
      tr.setAttribute('data-device', m.device);
      [el('td', m.device), el('td', count(m.rows), 'num'), el('td', si(m.measured_j, 'J'), 'num'),
       el('td', si(m.modelled_j, 'J'), 'num'),
       el('td', m.ratio == null ? 'n/a' : m.ratio.toFixed(2) + '\u00d7', 'num')].forEach(function (td) {
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function render() {
    renderStatus(data.status);
    specs.forEach(draw);
    renderRound(data.round);
    renderClients(data.clients);
    renderMeasured(data.measured_vs_modelled);
  }
  render();

  window.addEventListener('resize', function () {
    Object.keys(charts).forEach(function (id) {
      var c = charts[id];
      if (c.plot) c.plot.setSize({ width: chartWidth(document.getElementById(id)), height: chartHeight() });
    });
  });

  if (data.live) {
    var live = document.getElementById('live');
    var poll = function () {
      fetch('api/state' + window.location.search, { cache: 'no-store' }).then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.json();
      }).then(function (next) {
        data = next;
        render();
        if (live) live.textContent = 'live: updated ' + new Date().toLocaleTimeString('en-GB');
      }).catch(function (e) {
        if (live) live.textContent = 'live: coordinator not answering (' + e.message + '); retrying';
      }).then(function () { setTimeout(poll, data.poll_ms || 1000); });
    };
    setTimeout(poll, data.poll_ms || 1000);
  }
})();
)JS";

std::string OptionalCount(const std::optional<uint32_t>& v) {
  return v.has_value() ? FormatCount(*v) : std::string(kNotReached);
}

// The comparison table of WriteCompareHtml: each figure of each run, and its
// ratio to the first run's.
void WriteCompareTable(std::ostream& out, std::span<const ComparedRun> runs, double target) {
  struct Figures {
    TargetFigures to_target;
    uint64_t bytes = 0, rounds = 0;
    double joules = 0, grams = 0, final_accuracy = 0;
  };
  std::vector<Figures> figures;
  for (const ComparedRun& r : runs) {
    Figures f;
    f.to_target = FindTarget(r.records, target);
    for (const RoundRecord& rec : r.records) {
      f.bytes += rec.bytes_up + rec.bytes_down;
      f.joules += rec.joules_compute + rec.joules_radio;
      f.grams += rec.gco2e;
    }
    f.rounds = r.records.size();
    f.final_accuracy = r.records.empty() ? 0.0 : r.records.back().accuracy;
    figures.push_back(f);
  }
  const std::string base = runs.empty() ? std::string() : runs.front().label;
  out << "<h2>Comparison</h2>\n<p>Each figure of each run; the figure in brackets is " << EscapeHtml(base)
      << "'s divided by that run's: above 1&times; means the run needed less than " << EscapeHtml(base)
      << ". Target accuracy " << FormatNumber(target) << ".</p>\n"
      << "<div class=\"scroll\"><table class=\"cmp grid\" id=\"compare\"><thead><tr><th></th>";
  for (const ComparedRun& r : runs) out << "<th scope=\"col\">" << EscapeHtml(r.label) << "</th>";
  out << "</tr></thead><tbody>\n";
  const auto row = [&](std::string_view label, auto value, auto number) {
    out << "<tr><th scope=\"row\">" << EscapeHtml(label) << "</th>";
    for (size_t i = 0; i < figures.size(); ++i) {
      std::string text = value(figures[i]);
      const std::optional<double> base_n = number(figures[0]), this_n = number(figures[i]);
      if (i > 0 && base_n && this_n) text += " (" + FormatRatio(*base_n, *this_n) + ")";
      out << "<td class=\"num\">" << EscapeHtml(text) << "</td>";
    }
    out << "</tr>\n";
  };
  const auto opt = [](const auto& v) -> std::optional<double> {
    if (!v.has_value()) return std::nullopt;
    return static_cast<double>(*v);
  };
  row("rounds to target", [](const Figures& f) { return OptionalCount(f.to_target.rounds_to_target); },
      [&](const Figures& f) { return opt(f.to_target.rounds_to_target); });
  row("bytes to target", [](const Figures& f) { return FormatOptional(f.to_target.bytes_to_target, FormatBytes); },
      [&](const Figures& f) { return opt(f.to_target.bytes_to_target); });
  row("client joules to target",
      [](const Figures& f) { return FormatOptional(f.to_target.joules_to_target, FormatJoules); },
      [&](const Figures& f) { return opt(f.to_target.joules_to_target); });
  row("carbon to target", [](const Figures& f) { return FormatOptional(f.to_target.gco2e_to_target, FormatGrams); },
      [&](const Figures& f) { return opt(f.to_target.gco2e_to_target); });
  row("rounds run", [](const Figures& f) { return FormatCount(f.rounds); },
      [](const Figures&) { return std::optional<double>(); });
  row("final accuracy", [](const Figures& f) { return FormatNumber(f.final_accuracy); },
      [](const Figures&) { return std::optional<double>(); });
  row("bytes, whole run", [](const Figures& f) { return FormatBytes(f.bytes); },
      [](const Figures& f) { return std::optional<double>(static_cast<double>(f.bytes)); });
  row("client joules, whole run", [](const Figures& f) { return FormatJoules(f.joules); },
      [](const Figures& f) { return std::optional<double>(f.joules); });
  row("carbon, whole run", [](const Figures& f) { return FormatGrams(f.grams); },
      [](const Figures& f) { return std::optional<double>(f.grams); });
  out << "</tbody></table></div>\n";
}

Json ClientJson(const DashboardClient& c) {
  Json j;
  j["id"] = c.id;
  j["name"] = c.name;
  j["device"] = c.device;
  j["radio"] = c.radio;
  j["region"] = c.region;
  j["state"] = c.state;
  j["held_version"] = c.held_version;
  j["last_seen_s"] = c.last_seen_s.has_value() ? Json(*c.last_seen_s) : Json(nullptr);
  j["rounds"] = c.rounds;
  j["bytes"] = c.bytes;
  j["joules"] = c.joules;
  j["gco2e"] = c.gco2e;
  j["measured"] = c.measured;
  return j;
}

Json PageJson(const PageData& page) {
  Json data;
  data["title"] = page.title;
  data["live"] = page.live;
  data["poll_ms"] = page.poll_ms;
  data["target"] = page.target_accuracy;
  data["runs"] = Json::array();
  for (const PageData::Run& r : page.runs) data["runs"].push_back(SeriesJson(r.label, r.records));
  if (page.status.has_value()) {
    const DashboardStatus& s = *page.status;
    Json st;
    st["run_id"] = s.run_id;
    st["state"] = s.state;
    st["round"] = s.round;
    st["rounds_total"] = s.rounds_total;
    st["round_open"] = s.round_open;
    st["model_version"] = s.model_version;
    st["connected"] = s.connected;
    st["min_clients"] = s.min_clients;
    st["next_round_in_s"] = s.next_round_in_s.has_value() ? Json(*s.next_round_in_s) : Json(nullptr);
    // Absent rather than null: the page shows the field only for a run that reports one.
    if (s.epsilon.has_value()) st["epsilon"] = *s.epsilon;
    if (!s.dp_sampling.empty()) {
      st["dp_sampling"] = s.dp_sampling;
      st["dp_adjacency"] = s.dp_adjacency;
      st["dp_bound"] = s.dp_bound;
    }
    data["status"] = std::move(st);
  }
  if (page.clients.has_value()) {
    data["clients"] = Json::array();
    for (const DashboardClient& c : *page.clients) data["clients"].push_back(ClientJson(c));
  }
  data["measured_vs_modelled"] = Json::array();
  for (const auto& [device, m] : page.measured_vs_modelled) {
    data["measured_vs_modelled"].push_back(Json{{"device", device},
                                                {"rows", m.rows},
                                                {"measured_j", m.measured_j},
                                                {"modelled_j", m.modelled_j},
                                                {"ratio", m.ratio()}});
  }
  if (page.round.has_value()) {
    const DashboardRound& r = *page.round;
    Json rj;
    rj["round"] = r.round;
    rj["open"] = r.open;
    rj["selected"] = r.selected;
    rj["received"] = r.received;
    rj["stragglers"] = r.stragglers;
    rj["rejected"] = Json::array();
    for (const auto& x : r.rejected) rj["rejected"].push_back(Json{{"client", x.client}, {"reason", x.reason}});
    data["round"] = std::move(rj);
  }
  return data;
}

}  // namespace

void FillClientTotals(std::span<const LedgerRow> rows, std::vector<DashboardClient>& clients) {
  std::map<uint64_t, DashboardClient*> by_id;
  for (DashboardClient& c : clients) by_id[c.id] = &c;
  for (const LedgerRow& row : rows) {
    auto it = by_id.find(row.client_id);
    if (it == by_id.end()) continue;
    DashboardClient& c = *it->second;
    if (row.outcome == ClientOutcome::kParticipated) ++c.rounds;
    c.bytes += row.bytes_up + row.bytes_down;
    c.joules += row.total_j;
    c.gco2e += row.gco2e;
    c.measured = c.measured || row.source == EnergySource::kMeasured;
  }
}

std::string PageDataJson(const PageData& page) {
  return PageJson(page).dump(-1, ' ', false, Json::error_handler_t::replace);
}

void WritePageHtml(std::ostream& out, const PageData& page, std::string_view body_html) {
  out << "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      << "<title>" << EscapeHtml(page.title) << (page.subtitle.empty() ? "" : ": ") << EscapeHtml(page.subtitle)
      << "</title>\n"
      << "<style>\n"
      << report_assets::kUplotCss << "\n</style>\n"
      << "<style>" << kPageCss << "</style>\n</head>\n<body>\n"
      << "<header>\n<h1>" << EscapeHtml(page.title) << "</h1>\n<p class=\"sub\">" << EscapeHtml(page.subtitle)
      << "</p>\n";
  if (page.live) out << "<p class=\"sub\" id=\"live\" aria-live=\"polite\">live: loading</p>\n";
  if (!page.headline.empty()) out << "<p class=\"headline\">" << EscapeHtml(page.headline) << "</p>\n";
  out << "</header>\n";
  if (page.status.has_value()) out << "<section class=\"status\" id=\"status\" aria-label=\"run state\"></section>\n";

  out << "<section>\n<h2>Accuracy</h2>\n"
      << "<div class=\"chart\" id=\"chart-accuracy\"><h3>Accuracy against round</h3></div>\n"
      << "<div class=\"chart\" id=\"chart-bytes\"><h3>Accuracy against cumulative bytes on the radio (up + down, "
         "log scale)</h3></div>\n"
      << "<div class=\"chart\" id=\"chart-energy\"><h3>Accuracy against cumulative client energy (compute + radio, "
         "joules, log scale)</h3></div>\n"
      << "<div class=\"chart\" id=\"chart-carbon\"><h3>Accuracy against cumulative client carbon (grams CO2e, log "
         "scale)</h3></div>\n"
      << "</section>\n";

  if (page.round.has_value()) {
    out << "<section>\n<h2>Current round</h2>\n<div id=\"round\"></div>\n</section>\n";
  }
  if (page.clients.has_value()) {
    out << "<section>\n<h2>Clients</h2>\n<p class=\"sub\" id=\"clients-count\"></p>\n"
        << "<div class=\"scroll\"><table class=\"grid\" id=\"clients\"><thead><tr>"
        << "<th scope=\"col\">name</th><th scope=\"col\">state</th><th scope=\"col\">device</th>"
        << "<th scope=\"col\">radio</th><th scope=\"col\">region</th><th scope=\"col\" class=\"num\">holds</th>"
        << "<th scope=\"col\" class=\"num\">last seen</th><th scope=\"col\" class=\"num\">rounds</th>"
        << "<th scope=\"col\" class=\"num\">bytes, up + down</th><th scope=\"col\" class=\"num\">energy</th>"
        << "<th scope=\"col\" class=\"num\">carbon</th></tr></thead><tbody></tbody></table></div>\n</section>\n";
  }
  // Filled by the script when a client measured its energy (hidden otherwise).
  out << "<section id=\"measured-section\" hidden>\n<h2>Device energy: measured against modelled</h2>\n"
      << "<p class=\"sub\">Compute joules of the participations whose device measured them (battery fuel gauge "
         "or RAPL), beside what the energy model gives for the same FLOPs.</p>\n"
      << "<div class=\"scroll\"><table class=\"grid\" id=\"measured\"><thead><tr>"
      << "<th scope=\"col\">device class</th><th scope=\"col\" class=\"num\">measured participations</th>"
      << "<th scope=\"col\" class=\"num\">measured</th><th scope=\"col\" class=\"num\">modelled</th>"
      << "<th scope=\"col\" class=\"num\">measured / modelled</th></tr></thead><tbody></tbody></table></div>\n"
      << "</section>\n";
  out << body_html;

  out << "<footer>Written by Frugal. Charts drawn by uPlot " << report_assets::kUplotVersion
      << " (MIT licence, inlined below; the page needs no network" << (page.live ? " beyond this coordinator" : "")
      << ").</footer>\n";

  // The licence must travel with the inlined code; "--" cannot occur inside an
  // HTML comment, so it is broken up.
  std::string license(report_assets::kUplotLicense);
  for (size_t at = license.find("--"); at != std::string::npos; at = license.find("--", at)) {
    license.replace(at, 2, "- -");
  }
  out << "<!-- uPlot licence:\n" << license << "\n-->\n";

  out << "<script type=\"application/json\" id=\"frugal-data\">" << JsonForScript(PageJson(page)) << "</script>\n"
      << "<script>\n"
      << report_assets::kUplotJs << "\n</script>\n"
      << "<script>" << kPageJs << "</script>\n</body>\n</html>\n";
}

void WriteDashboardHtml(std::ostream& out, const PageData& page) {
  PageData live = page;
  live.live = true;
  WritePageHtml(out, live);
}

void WriteReportHtml(std::ostream& out, const RunSummary& s, std::span<const RoundRecord> records,
                     std::span<const RoundRecord> baseline_records, std::string_view baseline_label) {
  const std::string run_label = s.pipeline.empty() ? "this run" : s.pipeline;
  PageData page;
  page.title = "Frugal run report";
  for (const std::string* part : {&s.scenario, &s.pipeline, &s.model, &s.run_id}) {
    if (part->empty()) continue;
    if (!page.subtitle.empty()) page.subtitle += " \xC2\xB7 ";  // U+00B7 middle dot
    page.subtitle += *part;
  }
  page.headline = Headline(s);
  page.target_accuracy = s.target_accuracy;
  page.runs.push_back({run_label, records});
  if (!baseline_records.empty()) page.runs.push_back({std::string(baseline_label), baseline_records});
  page.measured_vs_modelled = s.measured_vs_modelled;

  std::ostringstream body;
  if (!baseline_records.empty()) WriteBaselineTable(body, s, baseline_records, run_label, baseline_label);

  body << "<section>\n<h2>Summary</h2>\n<div class=\"columns\">\n<div>\n";
  WriteSummaryTable(body, s);
  body << "</div>\n<div>\n";
  WriteMapTable(body, "Client energy by radio class", "radio", "joules", WithShares(s.joules_by_radio),
                [](const std::string& v) { return v; });
  WriteMapTable(body, "Client energy by device class", "device", "joules", WithShares(s.joules_by_device),
                [](const std::string& v) { return v; });
  WriteMapTable(body, "Other metrics", "metric", "value", s.extra_metrics, FormatNumber);
  body << "</div>\n</div>\n</section>\n";

  if (!s.notes.empty()) {
    body << "<section>\n<h2>Notes</h2>\n<ul>\n";
    for (const std::string& note : s.notes) body << "<li>" << EscapeHtml(note) << "</li>\n";
    body << "</ul>\n</section>\n";
  }
  if (!s.config.empty()) {
    body << "<section>\n<h2>Configuration</h2>\n<div class=\"scroll\"><table class=\"kv config\"><tbody>\n";
    for (const auto& [key, value] : s.config) WriteRow(body, key, value);
    body << "</tbody></table></div>\n</section>\n";
  }
  WritePageHtml(out, page, body.str());
}

void WriteCompareHtml(std::ostream& out, std::span<const ComparedRun> runs, double target_accuracy) {
  PageData page;
  page.title = "Frugal run comparison";
  for (const ComparedRun& r : runs) {
    if (!page.subtitle.empty()) page.subtitle += " vs ";
    page.subtitle += r.label;
  }
  page.target_accuracy = target_accuracy;
  for (const ComparedRun& r : runs) page.runs.push_back({r.label, r.records});
  std::ostringstream body;
  WriteCompareTable(body, runs, target_accuracy);
  WritePageHtml(out, page, body.str());
}

}  // namespace frugal
