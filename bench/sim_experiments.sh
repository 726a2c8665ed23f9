#!/usr/bin/env bash
# The simulator experiments of docs/benchmarks.md, each written to runs/bench/<name>/.
#   bench/sim_experiments.sh [thrift|flower|scale|mpi|all]
# Needs a release build (cmake --preset release && cmake --build build/release).
set -euo pipefail
cd "$(dirname "$0")/.."
SIM=${SIM:-build/release/sim/frugal-sim}
OUT=${OUT:-runs/bench}
what=${1:-all}
mkdir -p "$OUT"

summary() {  # name: the figures of runs/bench/<name>/summary.json on one line
  tr -d '\n ' < "$OUT/$1/summary.json" |
    grep -oE '"(final_accuracy|rounds_to_target|bytes_to_target|joules_to_target|bytes_up|bytes_down|joules_client|wall_seconds|client_updates_per_second|peak_rss_bytes|trainer_efficiency|gemm_gflops_per_thread)":[^,}]*' |
    tr '\n' ' '
  echo
}

run() {  # name, args...
  local name=$1
  shift
  echo "== $name: $SIM $*"
  /usr/bin/time -v "$SIM" "$@" --out "$OUT/$name" --quiet --no-progress 2> "$OUT/$name.time"
  summary "$name"
  grep -E "Elapsed|Maximum resident" "$OUT/$name.time" | sed 's/^\s*/   /'
}

if [[ $what == thrift || $what == all ]]; then
  # Dense FedAvg against Frugal's pipeline for seeds 1-5 (SEEDS to change), and
  # dense with the same released moving average as Frugal's (the second
  # comparison of docs/benchmarks.md); then each of Frugal's choices alone on
  # seed 1, to show where savings and accuracy come from.
  thrift=(--config sim/scenarios/fmnist-dir0.5.toml --set rounds=150)
  for seed in ${SEEDS:-1 2 3 4 5}; do
    for p in dense frugal; do
      run "thrift-$p-s$seed" "${thrift[@]}" --set pipeline=$p --set seed=$seed
    done
    run "thrift-dense-ema-s$seed" "${thrift[@]}" --set pipeline=dense --set seed=$seed --set server.release_ema=0.8
  done
  run thrift-dense-energy "${thrift[@]}" --set pipeline=dense --set round.selection=energy
  run thrift-frugal-uniform "${thrift[@]}" --set pipeline=frugal --set round.selection=uniform
  run thrift-frugal-no-ema "${thrift[@]}" --set pipeline=frugal --set server.release_ema=0
  run thrift-frugal-all-lr3 "${thrift[@]}" --set pipeline=frugal --set server.averaging=all --set server.learning_rate=3
fi
if [[ $what == flower || $what == all ]]; then
  for p in dense frugal; do
    run "flower-$p" --config sim/scenarios/fmnist-logreg-c10.toml --set pipeline=$p
  done
fi
if [[ $what == scale || $what == all ]]; then
  run fleet-1m --config sim/scenarios/fleet-1m.toml --gemm-baseline
fi
if [[ $what == mpi || $what == all ]]; then
  for np in 1 2; do
    echo "== mpi np=$np"
    mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp -np $np \
      "$SIM" --config sim/scenarios/fmnist-dir0.5.toml --set rounds=20 --set run.threads=1 \
      --out "$OUT/mpi-np$np" --quiet --no-progress
  done
  if diff <(cut -d, -f1-5 "$OUT/mpi-np1/rounds.csv") <(cut -d, -f1-5 "$OUT/mpi-np2/rounds.csv"); then
    echo "mpi: rounds.csv round,accuracy,loss,bytes_up,bytes_down identical for -np 1 and -np 2"
  else
    echo "mpi: DIFFERENT"
    exit 1
  fi
fi
