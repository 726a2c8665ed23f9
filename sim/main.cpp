// frugal-sim: federated rounds over a simulated fleet. Thin front end: parse
// the command line, run the simulation, print a line per round.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string_view>

#include "accountant_cli.h"
#include "compare.h"

#include "frugal/sim/comm.h"
#include "frugal/sim/config.h"
#include "frugal/sim/runner.h"

int main(int argc, char** argv) {
  // `frugal-sim accountant ...` is a calculator: no MPI, no scenario.
  if (argc >= 2 && std::string_view(argv[1]) == "accountant") return frugal::sim::RunAccountantCommand(argc - 1, argv + 1);
  // `frugal-sim compare RUN_DIR... --out FILE`: one page overlaying finished runs.
  if (argc >= 2 && std::string_view(argv[1]) == "compare") return frugal::sim::RunCompareCommand(argc - 1, argv + 1);
  std::unique_ptr<frugal::sim::Communicator> mpi = frugal::sim::MakeMpiCommunicator(&argc, &argv);
  const bool leader = mpi == nullptr || mpi->rank() == 0;

  CLI::App app{"frugal-sim: simulate federated rounds and what they cost in bytes, joules and CO2e"};
  std::string config_path, out_dir;
  std::vector<std::string> sets;
  bool quiet = false, no_progress = false;
  std::string replay_dir;
  auto* config_opt = app.add_option("-c,--config", config_path, "scenario TOML file (see sim/scenarios/)");
  auto* replay_opt = app.add_option("--replay", replay_dir,
                                    "re-run a finished run directory (a frugal-coordinator or frugal-sim run): its "
                                    "run.toml, its clients (clients.csv) and its rounds' UTC hours");
  config_opt->excludes(replay_opt);
  replay_opt->excludes(config_opt);
  app.add_option("--set", sets, "override a key, e.g. --set pipeline=dense --set rounds=50")->take_all();
  app.add_option("-o,--out", out_dir, "run directory for rounds.csv, ledger.csv, emissions.csv, summary.json, report.html");
  app.add_flag("-q,--quiet", quiet, "no per-round lines");
  app.add_flag("--no-progress", no_progress, "no progress bar");
  bool gemm = false;
  app.add_flag("--gemm-baseline", gemm, "measure Eigen sgemm first and report the trainer's efficiency against it");
  bool dump_ring_sums = false;
  app.add_flag("--dump-ring-sums", dump_ring_sums,
               "secure pipeline: write each round's true ring sums and the server's side information to "
               "OUT/ring_sums.bin (measurement only)");
  CLI11_PARSE(app, argc, argv);
  if (config_path.empty() && replay_dir.empty()) {
    std::fprintf(stderr, "frugal-sim: give a scenario (--config FILE) or a run to replay (--replay RUN_DIR)\n");
    return 2;
  }

  auto cfg = replay_dir.empty() ? frugal::sim::LoadSimConfig(config_path, sets)
                                : frugal::sim::LoadReplayConfig(replay_dir, sets);
  if (!cfg.ok()) {
    std::fprintf(stderr, "frugal-sim: %s\n", cfg.error().ToString().c_str());
    return 2;
  }
  if (leader) {
    for (const std::string& w : cfg->warnings) std::fprintf(stderr, "frugal-sim: warning: %s\n", w.c_str());
  }
  frugal::sim::RunOptions opts;
  opts.out_dir = out_dir;
  opts.comm = mpi.get();
  opts.progress = !no_progress;
  opts.gemm_baseline = gemm;
  opts.dump_ring_sums = dump_ring_sums;
  if (leader && !quiet) {
    std::printf("%-6s %-9s %-8s %-12s %-12s %-11s %-10s %-9s %s\n", "round", "accuracy", "loss", "bytes_up",
                "bytes_down", "joules", "gco2e", "clients", "virtual_s");
    opts.on_round = [](const frugal::RoundRecord& r) {
      std::printf("%-6u %-9.4f %-8.4f %-12llu %-12llu %-11.2f %-10.4f %3u/%-5u %.1f\n", r.round, r.accuracy, r.loss,
                  static_cast<unsigned long long>(r.bytes_up), static_cast<unsigned long long>(r.bytes_down),
                  r.joules_compute + r.joules_radio, r.gco2e, r.completed, r.selected, r.virtual_seconds);
      std::fflush(stdout);
    };
  }
  auto result = frugal::sim::RunSimulation(*cfg, opts);
  if (!result.ok()) {
    std::fprintf(stderr, "frugal-sim: %s\n", result.error().ToString().c_str());
    return 1;
  }
  if (leader && !quiet) {
    const auto& s = result->summary;
    std::printf("final accuracy %.4f after %u rounds; %llu bytes up, %llu bytes down; %.1f J on clients; %.3f gCO2e\n",
                s.final_accuracy, s.rounds, static_cast<unsigned long long>(s.bytes_up),
                static_cast<unsigned long long>(s.bytes_down), s.joules_client, s.gco2e);
    if (s.rounds_to_target) {
      std::printf("target %.2f reached in round %u with %llu bytes and %.1f J\n", s.target_accuracy, *s.rounds_to_target,
                  static_cast<unsigned long long>(*s.bytes_to_target), *s.joules_to_target);
    } else {
      std::printf("target %.2f not reached\n", s.target_accuracy);
    }
    if (!out_dir.empty()) std::printf("run directory: %s\n", out_dir.c_str());
  }
  return 0;
}
