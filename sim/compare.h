// `frugal-sim compare RUN_DIR... --out FILE`: one page overlaying several
// finished runs (frugal-sim or frugal-coordinator run directories) on the
// same axes, with their bytes, joules, gCO2e and rounds to target and the
// ratios to the first run.
#pragma once

#include <filesystem>
#include <string>

#include "frugal/core/status.h"
#include "frugal/report/dashboard.h"

namespace frugal::sim {

// Reads RUN_DIR/rounds.csv and, when present, RUN_DIR/summary.json (for the
// label "DIR (pipeline)" and the target). Errors name the file and the fault.
// `target` is set from the summary when it holds one and `target` is unset.
Result<ComparedRun> LoadComparedRun(const std::filesystem::path& dir, std::optional<double>& target);

// argv[0] is "compare". Returns the exit code: 0 when FILE was written, 2 for
// bad arguments or a run directory that cannot be read (message on stderr).
int RunCompareCommand(int argc, char** argv);

}  // namespace frugal::sim
