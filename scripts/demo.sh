#!/usr/bin/env bash
# Command (a) of the README: installs what is missing, builds, and runs the
# main job: a federated run on Fashion-MNIST through frugal-sim (2NN, 100
# clients with Dirichlet(0.5) label skew, 10 per round, Frugal's compressed
# pipeline), printing per-round accuracy, bytes and joules, then the run
# directory with rounds.csv, ledger.csv, emissions.csv, summary.json, report.html.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
ROUNDS=${ROUNDS:-20}
OUT=${OUT:-runs/demo}

bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build build/release -j "$JOBS" --target frugal-sim
./build/release/sim/frugal-sim --config sim/scenarios/fmnist-dir0.5.toml --set rounds="$ROUNDS" --out "$OUT" "$@"
