// The simulator's round loop: availability, selection, each selected client's
// download, training, upload and energy on a virtual clock, stragglers past
// the deadline, aggregation through the shared round engine, evaluation, and
// the run directory (rounds.csv, ledger.csv, emissions.csv, summary.json,
// report.html).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "frugal/core/status.h"
#include "frugal/data/dataset.h"
#include "frugal/train/trainer.h"
#include "frugal/energy/ledger.h"
#include "frugal/report/run_report.h"
#include "frugal/sim/comm.h"
#include "frugal/sim/config.h"

namespace frugal::sim {

// One simulated client's training by an application's own trainer (the
// simulator's counterpart of the embedding API, frugal/client/embed.h): the
// client's examples (data->CopyRow(i) for i in examples) and the task's
// settings; params holds the model the client starts from and is trained in
// place, in the layout of the run's model.
struct AppTrainInput {
  uint32_t client = 0;  // the client's id
  uint32_t round = 0;
  const Dataset* data = nullptr;
  std::span<const uint32_t> examples;
  const TrainConfig* train = nullptr;  // train->seed is the round's seed for this client
};
// Returns the training's statistics (examples, mean loss, executed FLOPs for
// the ledger); an error fails the client's task. Called from the run's
// threads concurrently when run.threads > 1.
using AppTrainFn = std::function<Result<TrainStats>(const AppTrainInput&, std::span<float> params)>;

struct RunOptions {
  std::string out_dir;          // empty: write nothing
  Communicator* comm = nullptr; // nullptr: a single process
  bool progress = false;        // progress bar on stderr
  // Measure single-thread Eigen sgemm GFLOP/s before the run and report the
  // trainer's efficiency against it (summary.json extra_metrics).
  bool gemm_baseline = false;
  // Secure pipeline, rings of at most 16 bits: write out_dir/ring_sums.bin,
  // each round's true sums of the survivors' levels on the support with the
  // server's public side information, and each broadcast step (the format is
  // in docs/benchmarks.md, "Seventeenth session"). Measurement only: it
  // holds what SecAgg+ hides (the sums before any decoding) and changes nothing.
  bool dump_ring_sums = false;
  // Called after every round (rank 0 only), e.g. to print a line.
  std::function<void(const RoundRecord&)> on_round;
  // Set: every client trains with the app's trainer instead of the core's
  // (its update is encoded, aggregated and priced as any other).
  AppTrainFn app_train;
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
