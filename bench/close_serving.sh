#!/usr/bin/env bash
# Does the coordinator keep serving while a round closes? Runs one
# frugal-coordinator with a heavy close (the trigger scan on the trusted set
# every round, server.trigger_scan_every = 1, and distillation after the last
# round, [distill] at_end) and three frugal-client agents on loopback over
# mutual TLS, polls GET /status every 0.1 s from a second process until the
# coordinator exits, and prints how long the answers took, by the state they
# reported. The longest wait is how long the service could not answer.
#   bench/close_serving.sh COORDINATOR_BIN OUT SEED [--set key=value ...]
#   env: AGENT=build/release/client/frugal-client ROUNDS=3
# Output: OUT/polls.csv (sent_s,latency_s,state,round; latency -1: no answer)
# and one line of JSON on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
COORD=$(realpath "$1")
OUT=$2
SEED=$3
shift 3
AGENT=${AGENT:-build/release/client/frugal-client}
ROUNDS=${ROUNDS:-3}

rm -rf "$OUT"
mkdir -p "$OUT/logs"
"$COORD" ca init --dir "$OUT/ca" >/dev/null
for i in 0 1 2; do "$COORD" ca issue --dir "$OUT/ca" --client "device-$i" >/dev/null; done

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$COORD" run --set seed="$SEED" --set rounds="$ROUNDS" --set model='"mlp"' \
  --set round.clients_per_round=3 --set round.min_clients=3 --set round.deadline_s=120 \
  --set server.trigger_scan_every=1 --set server.trusted_examples=100 \
  --set distill.at_end=true --set distill.student='"mlp:48"' --set distill.pool_examples=20000 \
  --set distill.epochs=10 \
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
for i in 0 1 2; do
  "$AGENT" --set name="\"device-$i\"" --set state_dir="\"$OUT/state/device-$i\"" \
    --set coordinator.port_file="\"$OUT/port\"" \
    --set tls.ca_cert="\"$OUT/ca/ca.crt\"" --set tls.cert="\"$OUT/ca/clients/device-$i.crt\"" \
    --set tls.key="\"$OUT/ca/clients/device-$i.key\"" \
    --set data.partition='"dirichlet"' --set data.alpha=0.5 --set data.seed="$SEED" \
    --set data.clients=3 --set data.index="$i" \
    --set connection.backoff_initial_s=0.2 --set connection.backoff_max_s=2 \
    >"$OUT/logs/device-$i.log" 2>&1 &
  pids+=("$!")
done

# The poller: one GET /status at a time, the next 0.1 s after the previous answer.
python3 - "$(cat "$OUT/status_port")" "$coord_pid" "$OUT/polls.csv" <<'PY'
import json, os, socket, sys, time
port, pid, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def alive():
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
t0 = time.monotonic()
rows = []
while alive():
    sent = time.monotonic()
    state, rnd, latency = "", 0, -1.0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=600) as s:
            s.sendall(b"GET /status HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        latency = time.monotonic() - sent
        body = json.loads(data.split(b"\r\n\r\n", 1)[1])
        state, rnd = body.get("state", ""), body.get("round", 0)
    except (OSError, ValueError, IndexError):
        pass
    rows.append((sent - t0, latency, state, rnd))
    time.sleep(0.1)
with open(out, "w") as f:
    f.write("sent_s,latency_s,state,round\n")
    for r in rows:
        f.write("%.3f,%.4f,%s,%d\n" % r)
PY
wait "$coord_pid"
python3 - "$OUT/polls.csv" "$SEED" <<'PY'
import csv, json, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if float(r["latency_s"]) >= 0]
lat = sorted(float(r["latency_s"]) for r in rows)
closing = [r for r in rows if r["state"] == "closing"]
print(json.dumps({"seed": int(sys.argv[2]), "polls": len(rows), "max_latency_s": round(lat[-1], 3),
                  "median_latency_s": round(lat[len(lat) // 2], 4),
                  "polls_over_1s": sum(1 for x in lat if x > 1.0),
                  "polls_closing": len(closing),
                  "max_latency_closing_s": round(max((float(r["latency_s"]) for r in closing), default=0), 4)}))
PY
