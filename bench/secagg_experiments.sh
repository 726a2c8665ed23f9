#!/usr/bin/env bash
# The secure pipeline on fmnist-dir0.5 against dense FedAvg and Frugal's
# pipeline (issue 13; docs/benchmarks.md, "Secure aggregation"): 150 rounds,
# one seed, at most two simulator processes at a time, then one table row per
# run: rounds, bytes (up + down) and client joules to 85% and to 80%, final
# and best accuracy, bytes per round, and the secure runs' protocol totals.
#   usage: bench/secagg_experiments.sh BUILD_DIR OUT_DIR [SEED]
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR OUT_DIR [SEED]}
out=${2:?usage: $0 BUILD_DIR OUT_DIR [SEED]}
seed=${3:-1}
sim="$build/sim/frugal-sim"
scenario=$(cd "$(dirname "$0")/.." && pwd)/sim/scenarios/fmnist-dir0.5.toml
mkdir -p "$out"
run() {
  local name=$1
  shift
  [ -f "$out/$name/summary.json" ] || nice "$sim" -c "$scenario" --set rounds=150 --set seed="$seed" \
    --set run.threads=1 "$@" --out "$out/$name" --quiet --no-progress >"$out/$name.log" 2>&1
}
run dense --set pipeline=dense &
run frugal --set pipeline=frugal &
wait
# Secure: 10% shared support in an 8-bit ring (12 levels per client at 10 clients
# a round), server learning rate 2, clip 0.05 and release_ema 0.8 (the first
# defaults); the second clips at 0.1 and averages the released model over about
# 10 rounds (today's defaults); the third sends a 20% support.
run secure-d0.1 --set pipeline=secure --set uplink.density=0.1 --set secure.bits=8 --set server.learning_rate=2 \
  --set secure.clip=0.05 --set server.release_ema=0.8 &
run secure-d0.1-clip0.1 --set pipeline=secure --set uplink.density=0.1 --set secure.bits=8 \
  --set server.learning_rate=2 --set secure.clip=0.1 --set server.release_ema=0.9 &
wait
run secure-d0.2-clip0.1 --set pipeline=secure --set uplink.density=0.2 --set secure.bits=8 \
  --set server.learning_rate=2 --set secure.clip=0.1 --set server.release_ema=0.9
python3 - "$out" "$(dirname "$0")" <<'PY'
import json, os, sys
out = sys.argv[1]
sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, sys.argv[2])
from run_totals import best_accuracy, bytes_per_round, read_rounds, to
runs = [n for n in ["dense", "frugal", "secure-d0.1", "secure-d0.1-clip0.1", "secure-d0.2-clip0.1"]
        if os.path.exists(f"{out}/{n}/summary.json")]
data = {n: read_rounds(f"{out}/{n}") for n in runs}
dense85, dense80 = to(data["dense"], 0.85), to(data["dense"], 0.80)
print("| run | rounds / bytes / client J to 85% | to 80% (fewer bytes than dense) | final (best) accuracy | bytes per round | protocol bytes up / down, client CPU s, server CPU s |")
print("|---|---|---|---|---|---|")
for n in runs:
    rows = data[n]
    s = json.load(open(f"{out}/{n}/summary.json"))
    m = s["extra_metrics"]
    t85, t80 = to(rows, 0.85), to(rows, 0.80)
    f85 = f"{t85[0]} / {t85[1]:,} / {t85[2]:,.0f}" if t85 else "not reached"
    f80 = f"{t80[0]} / {t80[1]:,} / {t80[2]:,.0f} ({dense80[1] / t80[1]:.0f}x)" if t80 else "not reached"
    best = best_accuracy(rows)
    proto = (f"{m['secure_protocol_bytes_up']:,.0f} / {m['secure_protocol_bytes_down']:,.0f}, "
             f"{m['secure_client_cpu_seconds']:.1f}, {m['secure_server_cpu_seconds']:.2f}") if "secure_protocol_bytes_up" in m else ""
    print(f"| {n} | {f85} | {f80} | {s['final_accuracy']:.4f} ({best:.4f}) | {bytes_per_round(rows):,} | {proto} |")
PY
