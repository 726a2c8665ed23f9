// The simulator's round loop: availability, selection, each selected client's
// download, training, upload and energy on a virtual clock, stragglers past
// the deadline, aggregation through the shared round engine, evaluation, and
// the run directory (rounds.csv, ledger.csv, emissions.csv, summary.json,
// report.html).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/energy/ledger.h"
#include "frugal/report/run_report.h"
#include "frugal/sim/comm.h"
#include "frugal/sim/config.h"

namespace frugal::sim {

struct RunOptions {
  std::string out_dir;          // empty: write nothing
  Communicator* comm = nullptr; // nullptr: a single process
  bool progress = false;        // progress bar on stderr
  // Measure single-thread Eigen sgemm GFLOP/s before the run and report the
  // trainer's efficiency against it (summary.json extra_metrics).
  bool gemm_baseline = false;
  // Called after every round (rank 0 only), e.g. to print a line.
  std::function<void(const RoundRecord&)> on_round;
};

struct RunResult {
  std::vector<RoundRecord> rounds;
  RunSummary summary;
  // Bytes of per-client state the population and residual store held at the end, per client.
  double population_bytes_per_client = 0;
  size_t residual_clients = 0;
  std::vector<float> final_model;  // the released model (RoundEngine::release_model)
};

// Runs the whole simulation. Deterministic for cfg.seed whatever cfg.threads
// and the number of MPI ranks (wall times and server energy aside).
Result<RunResult> RunSimulation(const SimConfig& cfg, const RunOptions& opts);

// Single-thread Eigen sgemm GFLOP/s at n x n x n, measured now (for efficiency ratios).
double MeasureGemmGflops(int n, double min_seconds);

}  // namespace frugal::sim
