#!/usr/bin/env bash
# The real service in one command: installs what is missing, builds
# frugal-coordinator and frugal-client, creates a CA with a server certificate
# and ten device certificates, then runs a coordinator and 10 client agent
# processes on loopback over mutual TLS 1.3 on Fashion-MNIST (Dirichlet 0.5
# partitions, 2NN, Frugal's compressed pipeline) for 20 rounds, printing each
# round's accuracy, bytes and joules, and where the run directory is.
#   scripts/demo-service.sh [--set key=value ...]   (extra coordinator overrides)
#   env: ROUNDS=20 CLIENTS=10 CLIENTS_PER_ROUND=$CLIENTS OUT=runs/demo-service BUILD=build/release
#        JOBS=$(nproc) PREBUILT=1 (use BUILD's binaries as they are: no setup, no build; for tests)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
ROUNDS=${ROUNDS:-20}
CLIENTS=${CLIENTS:-10}
CLIENTS_PER_ROUND=${CLIENTS_PER_ROUND:-$CLIENTS}
OUT=${OUT:-runs/demo-service}
BUILD=${BUILD:-build/release}

if [ -z "${PREBUILT:-}" ]; then
  bash scripts/setup.sh
  if [ "$BUILD" = build/release ]; then
    cmake --preset release >/dev/null
  else
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build "$BUILD" -j "$JOBS" --target frugal-coordinator frugal-client
fi
COORD=$BUILD/coordinator/frugal-coordinator
AGENT=$BUILD/client/frugal-client

# A fresh run each time: its own CA, store and run directory.
rm -rf "$OUT"
mkdir -p "$OUT/logs"
"$COORD" ca init --dir "$OUT/ca" >/dev/null
for i in $(seq 0 $((CLIENTS - 1))); do
  "$COORD" ca issue --dir "$OUT/ca" --client "device-$i" >/dev/null
done
echo "CA, server and $CLIENTS device certificates in $OUT/ca"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

"$COORD" run --config docs/examples/coordinator.toml \
  --set rounds="$ROUNDS" --set round.clients_per_round="$CLIENTS_PER_ROUND" --set round.min_clients="$CLIENTS" \
  --set service.port=0 --set service.port_file="\"$OUT/port\"" \
  --set service.status_port=0 --set service.status_port_file="\"$OUT/status_port\"" \
  --set service.ca_cert="\"$OUT/ca/ca.crt\"" --set service.server_cert="\"$OUT/ca/server.crt\"" \
  --set service.server_key="\"$OUT/ca/server.key\"" \
  --set service.store="\"$OUT/coordinator.db\"" --set service.out_dir="\"$OUT/run\"" \
  "$@" >"$OUT/logs/coordinator.log" 2>&1 &
coord_pid=$!
pids+=("$coord_pid")
for _ in $(seq 1 600); do
  [ -s "$OUT/port" ] && [ -s "$OUT/status_port" ] && break
  if ! kill -0 "$coord_pid" 2>/dev/null; then cat "$OUT/logs/coordinator.log" >&2; exit 1; fi
  sleep 0.1
done
echo "coordinator on 127.0.0.1:$(cat "$OUT/port") (mutual TLS 1.3); status: http://127.0.0.1:$(cat "$OUT/status_port")/status"
echo "dashboard: http://127.0.0.1:$(cat "$OUT/status_port")/  (live while the run lasts; open it in a browser)"

# A mixed fleet: device classes and radios from the energy profiles.
devices=(phone-low phone-mid phone-flagship rpi4 laptop)
radios=(wifi lte 5g)
for i in $(seq 0 $((CLIENTS - 1))); do
  "$AGENT" --config docs/examples/client.toml \
    --set name="\"device-$i\"" --set state_dir="\"$OUT/state/device-$i\"" \
    --set coordinator.port_file="\"$OUT/port\"" \
    --set tls.ca_cert="\"$OUT/ca/ca.crt\"" --set tls.cert="\"$OUT/ca/clients/device-$i.crt\"" \
    --set tls.key="\"$OUT/ca/clients/device-$i.key\"" \
    --set device.class="\"${devices[$((i % 5))]}\"" --set device.radio="\"${radios[$((i % 3))]}\"" \
    --set data.clients="$CLIENTS" --set data.index="$i" \
    >"$OUT/logs/device-$i.log" 2>&1 &
  pids+=("$!")
done
echo "$CLIENTS client agents started; training $ROUNDS rounds"
printf '%6s %9s %12s %12s %10s\n' round accuracy bytes_up bytes_down joules

# One line per committed round, from the coordinator's log as it happens.
shown=0
while kill -0 "$coord_pid" 2>/dev/null || [ "$shown" -lt "$ROUNDS" ]; do
  while IFS= read -r line; do
    r=$(sed -E 's/.*round ([0-9]+) closed.*/\1/' <<<"$line")
    acc=$(sed -E 's/.*accuracy ([0-9.]+).*/\1/' <<<"$line")
    up=$(sed -E 's/.*; ([0-9]+) B up.*/\1/' <<<"$line")
    down=$(sed -E 's/.* ([0-9]+) B down.*/\1/' <<<"$line")
    j=$(sed -E 's/.*; ([0-9.]+) J$/\1/' <<<"$line")
    printf '%6s %9s %12s %12s %10s\n' "$r" "$acc" "$up" "$down" "$j"
    shown=$((shown + 1))
  done < <(grep -E 'round [0-9]+ closed' "$OUT/logs/coordinator.log" | tail -n +$((shown + 1)))
  kill -0 "$coord_pid" 2>/dev/null || break
  sleep 1
done
wait "$coord_pid" || { echo "coordinator failed; see $OUT/logs/coordinator.log" >&2; tail -n 20 "$OUT/logs/coordinator.log" >&2; exit 1; }
for p in "${pids[@]:1}"; do wait "$p" || true; done
trap - EXIT

echo
echo "run directory: $OUT/run (rounds.csv, ledger.csv, emissions.csv, summary.json, report.html, run.toml, clients.csv)"
echo "replay it in the simulator: frugal-sim --replay $OUT/run --out $OUT/replay"
echo "state: $OUT/coordinator.db (SQLite); logs: $OUT/logs"
