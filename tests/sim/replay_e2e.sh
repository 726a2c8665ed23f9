#!/usr/bin/env bash
# The product's core guarantee, end to end: a service run re-run by the
# simulator gives the same rounds and the same ledger. The service run is
# scripts/demo-service.sh's (frugal-coordinator and 10 frugal-client processes
# on loopback over mutual TLS 1.3, 2NN on Fashion-MNIST Dirichlet(0.5) shares,
# the Frugal pipeline) with energy-aware selection of 5 of the 10 clients per
# round; then `frugal-sim --replay` runs it again from its run directory.
#   tests/sim/replay_e2e.sh BUILD_DIR        (env ROUNDS, default 20)
# Equal: rounds.csv in round, selected, completed, bytes_up, bytes_down,
# accuracy; ledger.csv in every column of every client row, and the server
# rows but for their joules and grams (measured CPU time). Also checked: the
# run compressed, selection chose 5 of 10, and round 1 sent no full model.
set -euo pipefail
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${ROUNDS:-20}
work=$(mktemp -d /tmp/frugal-replay.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
cd "$root"

fail() { echo "replay_e2e: $*" >&2; exit 1; }

PREBUILT=1 BUILD="$build" OUT="$work/service" ROUNDS="$rounds" CLIENTS=10 CLIENTS_PER_ROUND=5 \
  scripts/demo-service.sh --set 'round.selection="energy"' >"$work/demo.log" 2>&1 ||
  { cat "$work/demo.log" >&2; tail -n 30 "$work/service/logs/coordinator.log" >&2; fail "the service run failed"; }
run=$work/service/run
for f in rounds.csv ledger.csv run.toml clients.csv; do [ -s "$run/$f" ] || fail "the service wrote no $f"; done
grep -q "^selection = 'energy'" "$run/run.toml" || fail "run.toml does not record energy-aware selection"

"$build/sim/frugal-sim" --replay "$run" --out "$work/replay" -q --no-progress || fail "frugal-sim --replay failed"

# Columns by name, in the order given, from a CSV with a header line.
cols() {
  awk -F, -v want="$2" 'NR == 1 { n = split(want, w, ","); for (i = 1; i <= NF; i++) at[$i] = i; next }
    { line = ""; for (i = 1; i <= n; i++) line = line (i > 1 ? "," : "") $(at[w[i]]); print line }' "$1"
}
rounds_cols=round,selected,completed,bytes_up,bytes_down,accuracy
diff <(cols "$run/rounds.csv" $rounds_cols) <(cols "$work/replay/rounds.csv" $rounds_cols) ||
  fail "rounds.csv differs between the service run and its replay"
[ "$(tail -n +2 "$work/replay/rounds.csv" | wc -l)" -eq "$rounds" ] || fail "the replay did not run $rounds rounds"

ledger() {  # client rows whole; server rows without their measured joules and grams
  awk -F, 'NR > 1 { if ($4 == "server") print $1 "," $2 "," $3 "," $4; else print }' "$1"
}
diff <(ledger "$run/ledger.csv") <(ledger "$work/replay/ledger.csv") ||
  fail "ledger.csv differs between the service run and its replay"
[ "$(awk -F, 'NR > 1 && $4 != "server"' "$run/ledger.csv" | wc -l)" -eq $((rounds * 5)) ] ||
  fail "expected 5 client rows per round in the ledger"

# Not a trivial match: 5 of 10 selected, compressed updates, no full model in round 1.
awk -F, 'NR > 1 && $9 != 5 { exit 1 }' "$run/rounds.csv" || fail "a round did not select 5 clients"
awk -F, 'NR > 1 && $4 / $9 > 20000 { exit 1 }' "$run/rounds.csv" ||
  fail "an update averaged more than 20,000 bytes: the Frugal pipeline did not compress (dense 2NN: 796,840)"
awk -F, 'NR == 2 && $5 / $9 > 20000 { exit 1 }' "$run/rounds.csv" ||
  fail "round 1 downloaded a full model (clients build version 1 from the seed)"
echo "replay_e2e: $rounds rounds and $((rounds * 5)) ledger rows equal in the service run and its replay"
