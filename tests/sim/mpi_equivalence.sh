#!/usr/bin/env bash
# Runs the same scenario with mpirun -np 1 and -np 2 (real OpenMPI processes on
# this machine) and requires identical per-round accuracies and bytes.
set -euo pipefail
sim=$1
config=$2
shift 2  # anything further is passed to frugal-sim (e.g. --set attack.kind=alie)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! command -v mpirun >/dev/null; then
  echo "FAIL: mpirun not found (scripts/setup.sh installs openmpi-bin)"
  exit 1
fi
# Root is allowed here because CI runs as root; --oversubscribe lets 2 ranks share a small machine.
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp)
for np in 1 2; do
  "${MPIRUN[@]}" -np "$np" "$sim" --config "$config" --set run.threads=1 "$@" --out "$work/np$np" --quiet --no-progress
  # A frugal-sim built without MPI would run np independent copies of the whole
  # simulation and agree with itself: require the ranks to have been one run.
  if ! grep -Eq "\"mpi_ranks\": *\"$np\"" "$work/np$np/summary.json"; then
    echo "FAIL: the -np $np run did not report mpi_ranks = $np in summary.json (is frugal-sim built with MPI?)"
    grep -o '"mpi_ranks":[^,]*' "$work/np$np/summary.json" || true
    exit 1
  fi
done
# Columns 1-5: round, accuracy, loss, bytes_up, bytes_down.
cut -d, -f1-5 "$work/np1/rounds.csv" > "$work/a"
cut -d, -f1-5 "$work/np2/rounds.csv" > "$work/b"
if ! diff "$work/a" "$work/b"; then
  echo "FAIL: rounds.csv differs between 1 and 2 MPI ranks"
  exit 1
fi
lines=$(wc -l < "$work/a")
if [ "$lines" -ne 4 ]; then
  echo "FAIL: expected a header and 3 rounds, got $lines lines"
  exit 1
fi
echo "PASS: 1 and 2 ranks agree on $((lines - 1)) rounds"
cat "$work/a"
