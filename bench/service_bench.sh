#!/usr/bin/env bash
# The service benchmark of issue 6, item 9 (results: docs/benchmarks.md,
# "Service"). Three parts, each selectable:
#
#   e2e   frugal-coordinator + 10 frugal-client processes on fmnist-logreg-c10
#         (logistic regression, IID tenths, all 10 every round, SGD lr 0.1,
#         batch 32, 1 epoch, FedAvg by examples, 20 rounds, full test set each
#         round), every process under /usr/bin/time -v: wall time from the
#         first launch until every process has exited, server peak RSS, max
#         client peak RSS, final accuracy. Dense and frugal pipelines.
#   idle  concurrent idle mutual-TLS connections one coordinator holds and its
#         RSS per connection (frugal-service-idle-conns), one client
#         certificate per connection (idle-0 .. idle-N-1, issued once).
#   agg   time from the last accepted update to the new model version for a
#         round of 1,000 sparse 2NN updates (frugal-service-aggregation-bench).
#
# Usage: bench/service_bench.sh [BUILD_DIR] [e2e|idle|agg|all] [IDLE_CONNECTIONS]
#   BUILD_DIR defaults to build/svc (cmake --preset release -B build/svc).
# Work files go to $FRUGAL_BENCH_DIR (default: a fresh directory under /tmp).
set -euo pipefail

build=${1:-build/svc}
what=${2:-all}
idle_n=${3:-10000}
coord=$build/coordinator/frugal-coordinator
client=$build/client/frugal-client
idle_bin=$build/bench/frugal-service-idle-conns
agg_bin=$build/bench/frugal-service-aggregation-bench
for b in "$coord" "$client"; do [[ -x $b ]] || { echo "missing $b: build first" >&2; exit 1; }; done
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (Debian package 'time')" >&2; exit 1; }

work=${FRUGAL_BENCH_DIR:-$(mktemp -d /tmp/frugal-service-bench.XXXXXX)}
mkdir -p "$work"
echo "# work directory: $work"
echo "# machine: $(nproc) CPUs; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

ca=$work/ca
if [[ ! -f $ca/ca.crt ]]; then
  "$coord" ca init --dir "$ca" >/dev/null
  for i in $(seq 0 15); do "$coord" ca issue --dir "$ca" --client "device-$i" >/dev/null; done
fi

# The fields of /usr/bin/time -v we report.
peak_kb() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }

run_e2e() {  # $1 = pipeline (dense | frugal)
  local p=$1
  local d=$work/e2e-$p
  rm -rf "$d"; mkdir -p "$d"
  # fmnist-logreg-c10 (sim/scenarios/fmnist-logreg-c10.toml) as coordinator keys.
  local sets=(run_id=\"fmnist-logreg-c10\" seed=1 rounds=20 pipeline=\"$p\" model=\"logreg\" model_init=\"zeros\"
    target_accuracy=0.83 round.clients_per_round=10 round.min_clients=10 round.deadline_s=3600
    train.epochs=1 train.batch_size=32 train.learning_rate=0.1
    uplink.density=0.1 uplink.values=\"ternary\" downlink.bits=8 downlink.broadcast_density=0.1
    service.port=0 service.port_file=\"$d/port\" service.status_port=0
    service.ca_cert=\"$ca/ca.crt\" service.server_cert=\"$ca/server.crt\" service.server_key=\"$ca/server.key\"
    service.store=\"$d/coordinator.db\" service.out_dir=\"$d/run\")
  local args=() s
  for s in "${sets[@]}"; do args+=(--set "$s"); done
  local t0 t1 pids=()
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$d/time-coordinator.txt" "$coord" run "${args[@]}" >"$d/coordinator.log" 2>&1 &
  pids+=($!)
  for i in $(seq 0 9); do
    /usr/bin/time -v -o "$d/time-client-$i.txt" "$client" \
      --set name=\"device-$i\" --set coordinator.port_file=\"$d/port\" \
      --set tls.ca_cert=\"$ca/ca.crt\" --set tls.cert=\"$ca/clients/device-$i.crt\" \
      --set tls.key=\"$ca/clients/device-$i.key\" --set state_dir=\"$d/state-$i\" \
      --set data.source=\"fmnist-partition\" --set data.partition=\"iid\" --set data.clients=10 \
      --set data.index=$i --set data.seed=1 \
      --set connection.backoff_initial_s=0.1 --set connection.backoff_max_s=1 >"$d/client-$i.log" 2>&1 &
    pids+=($!)
  done
  local failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  t1=$(date +%s.%N)
  local server_kb client_kb=0 k
  server_kb=$(peak_kb "$d/time-coordinator.txt")
  for i in $(seq 0 9); do
    k=$(peak_kb "$d/time-client-$i.txt")
    (( k > client_kb )) && client_kb=$k
  done
  local last
  last=$(tail -n 1 "$d/run/rounds.csv")
  # /usr/bin/time reports KiB.
  printf '{"bench": "e2e", "pipeline": "%s", "wall_seconds": %.2f, "server_peak_rss_kib": %d, "max_client_peak_rss_kib": %d, "server_peak_rss_mib": %.1f, "max_client_peak_rss_mib": %.1f, "exit_ok": %s, "last_rounds_csv_row": "%s", "load": "%s"}\n' \
    "$p" "$(echo "$t1 - $t0" | bc)" "$server_kb" "$client_kb" "$(echo "$server_kb / 1024" | bc -l)" "$(echo "$client_kb / 1024" | bc -l)" \
    "$([[ $failed == 0 ]] && echo true || echo false)" "$last" "$(cut -d' ' -f1-3 /proc/loadavg)"
  head -n 1 "$d/run/rounds.csv" | sed 's/^/# rounds.csv columns: /'
  wire_vs_sim "$d"
}

# Bytes per round on the wire (the coordinator's TCP payload, TLS records and
# handshakes included, wire.csv) against the simulator's payload bytes for the
# same run (frugal-sim --replay of the run directory), round by round.
wire_vs_sim() {
  local d=$1 sim=${build}/sim/frugal-sim
  [[ -x $sim && -s $d/run/wire.csv ]] || { echo "# wire_vs_sim: needs $sim and $d/run/wire.csv" >&2; return; }
  "$sim" --replay "$d/run" --out "$d/replay" -q --no-progress >/dev/null
  join -t, <(tail -n +2 "$d/run/wire.csv" | sort -t, -k1,1) \
           <(tail -n +2 "$d/replay/rounds.csv" | cut -d, -f1,4,5 | sort -t, -k1,1) | sort -t, -n -k1,1 |
    awk -F, -v p="$(basename "$d")" '
      { wire = $2 + $3; sim = $6 + $7; r = wire / sim; printf "# %s round %d: wire %d B (up %d, down %d), simulator payload %d B, wire/sim %.3f\n", p, $1, wire, $2, $3, sim, r
        if (r > max || NR == 1) max = r; if (r < min || NR == 1) min = r; tw += wire; ts += sim; if ($1 == 1) r1 = r }
      END { printf "{\"bench\": \"wire_vs_sim\", \"run\": \"%s\", \"rounds\": %d, \"wire_bytes_per_round\": %.0f, \"sim_payload_bytes_per_round\": %.0f, \"ratio_total\": %.4f, \"ratio_min\": %.4f, \"ratio_max\": %.4f, \"ratio_round1\": %.4f}\n", p, NR, tw / NR, ts / NR, tw / ts, min, max, r1 }'
}

run_idle() {
  [[ -x $idle_bin ]] || { echo "missing $idle_bin" >&2; exit 1; }
  local d=$work/idle
  rm -rf "$d"; mkdir -p "$d"
  ulimit -n 20000
  if [[ ! -f $ca/clients/idle-$((idle_n - 1)).crt ]]; then
    local t0=$(date +%s.%N)
    "$coord" ca issue --dir "$ca" --count "$idle_n" --prefix idle- >/dev/null
    echo "# issued $idle_n client certificates (idle-0 .. idle-$((idle_n - 1))) in $(echo "$(date +%s.%N) - $t0" | bc) s"
  fi
  # No round ever opens (min_clients is out of reach): every connection idles,
  # answering the coordinator's heartbeats (every 10 s; silent for 60 s = dropped).
  "$coord" run -q --set run_id=\"idle\" --set model=\"logreg\" --set round.min_clients=1000000 \
    --set service.max_connections=20000 --set service.handshake_timeout_s=60 \
    --set service.heartbeat_s=10 --set service.idle_timeout_s=60 \
    --set service.port=0 --set service.port_file=\"$d/port\" --set service.status_port=0 \
    --set service.status_port_file=\"$d/status_port\" --set service.ca_cert=\"$ca/ca.crt\" \
    --set service.server_cert=\"$ca/server.crt\" --set service.server_key=\"$ca/server.key\" \
    --set service.store=\"$d/coordinator.db\" --set service.out_dir=\"$d/run\" >"$d/coordinator.log" 2>&1 &
  local cpid=$!
  for _ in $(seq 200); do [[ -s $d/status_port ]] && break; sleep 0.1; done
  sleep 1  # let the coordinator finish starting before the baseline RSS is read
  # One certificate per connection: each connection registers as its own client,
  # so the coordinator's clients map and the store's clients table grow with them.
  "$idle_bin" --pid "$cpid" --port "$(cat "$d/port")" --status-port "$(cat "$d/status_port")" \
    --ca "$ca/ca.crt" --certs "$ca/clients" --identity-prefix idle- --identity-count "$idle_n" \
    --connections "$idle_n" --hold-s "${FRUGAL_IDLE_HOLD_S:-75}" || true
  echo "# clients in the store: $(sqlite3 "$d/coordinator.db" 'SELECT COUNT(*) FROM clients' 2>/dev/null || echo '?')"
  kill -TERM "$cpid"; wait "$cpid" || true
}

run_agg() {
  [[ -x $agg_bin ]] || { echo "missing $agg_bin" >&2; exit 1; }
  "$agg_bin" --clients 1000 --rounds 5 --density 0.01 --dir "$work/agg"
}

case $what in
  e2e) run_e2e dense; run_e2e frugal ;;
  idle) run_idle ;;
  agg) run_agg ;;
  all) run_e2e dense; run_e2e frugal; run_idle; run_agg ;;
  *) echo "unknown part $what (e2e | idle | agg | all)" >&2; exit 2 ;;
esac
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
