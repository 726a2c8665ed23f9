#include "compare.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "frugal/report/run_dir.h"
#include "frugal/report/run_report.h"

namespace frugal::sim {
namespace {

Result<std::string> ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgumentError("cannot open " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return InvalidArgumentError("cannot read " + path.string());
  return ss.str();
}

}  // namespace

Result<ComparedRun> LoadComparedRun(const std::filesystem::path& dir, std::optional<double>& target) {
  FRUGAL_ASSIGN_OR_RETURN(std::string csv, ReadAll(dir / "rounds.csv"));
  auto records = ParseRoundsCsv(csv);
  if (!records.ok()) return records.error().WithContext((dir / "rounds.csv").string());
  ComparedRun run;
  run.records = std::move(*records);
  const std::filesystem::path normal = dir.lexically_normal();
  run.label = (normal.has_filename() ? normal.filename() : normal.parent_path().filename()).string();
  const std::filesystem::path summary_path = dir / "summary.json";
  if (std::filesystem::exists(summary_path)) {
    FRUGAL_ASSIGN_OR_RETURN(std::string text, ReadAll(summary_path));
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return InvalidArgumentError(summary_path.string() + " is not a JSON object");
    }
    // "dense" stays "dense"; "run-a" of the frugal pipeline becomes "run-a (frugal)".
    if (auto p = j.find("pipeline"); p != j.end() && p->is_string() && !p->get<std::string>().empty() &&
                                     run.label.find(p->get<std::string>()) == std::string::npos) {
      run.label += " (" + p->get<std::string>() + ")";
    }
    if (auto t = j.find("target_accuracy"); t != j.end() && t->is_number() && !target.has_value()) {
      target = t->get<double>();
    }
  }
  return run;
}

int RunCompareCommand(int argc, char** argv) {
  CLI::App app{"frugal-sim compare: overlay finished runs on the same axes, with bytes, joules, gCO2e and rounds "
               "to target and their ratios to the first run"};
  app.name("frugal-sim compare");
  std::vector<std::string> dirs;
  std::string out;
  std::optional<double> target;
  app.add_option("runs", dirs, "run directories (each with rounds.csv; the first is the baseline of the ratios)")
      ->required();
  app.add_option("-o,--out", out, "the HTML page to write")->required();
  app.add_option("--target", target, "target accuracy (default: the first run's summary.json)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  std::vector<ComparedRun> runs;
  for (const std::string& d : dirs) {
    auto run = LoadComparedRun(d, target);
    if (!run.ok()) {
      std::fprintf(stderr, "frugal-sim compare: %s\n", run.error().ToString().c_str());
      return 2;
    }
    runs.push_back(std::move(*run));
  }
  // Two runs of the same name (a/run, b/run) keep apart by their order.
  for (size_t i = 0; i < runs.size(); ++i) {
    for (size_t k = i + 1; k < runs.size(); ++k) {
      if (runs[k].label == runs[i].label) runs[k].label += " #" + std::to_string(k + 1);
    }
  }
  if (!target.has_value() || !(*target >= 0 && *target <= 1)) {
    std::fprintf(stderr, "frugal-sim compare: no target accuracy in [0, 1]: give --target or a run with summary.json\n");
    return 2;
  }
  const Status st = WriteFileAtomic(out, [&](std::ostream& os) { WriteCompareHtml(os, runs, *target); });
  if (!st.ok()) {
    std::fprintf(stderr, "frugal-sim compare: %s\n", st.error().ToString().c_str());
    return 2;
  }
  std::printf("comparison of %zu runs: %s\n", runs.size(), out.c_str());
  return 0;
}

}  // namespace frugal::sim
