#!/usr/bin/env bash
# How much a broadcast step of each candidate selection removes from the server's accumulated
# vector (step + error-feedback residual) per byte, on real rounds of b4m7 (docs/benchmarks.md,
# "Seventeenth session: block broadcast steps"). The probe is instrumentation, not shipped code:
#   git apply bench/broadcast_block_probe.patch && cmake --build build/release --target frugal-sim
#   bench/broadcast_block_probe.sh build/release/sim/frugal-sim runs/probe 1
#   git checkout common/round/engine.cpp
# Each round the patched engine codes every candidate as a codec-1 ternary frame (bytes from the
# encoder) and prints its entries, bytes and the fraction of ||acc||^2 the step removes
# (1 - ||acc - step||^2 / ||acc||^2); the run itself is b4m7's, unchanged. Summary: rounds 10-59.
#   usage: bench/broadcast_block_probe.sh SIM OUT_DIR SEED
set -euo pipefail
sim=${1:?usage: $0 SIM OUT_DIR SEED}
out=${2:?usage: $0 SIM OUT_DIR SEED}
seed=${3:?usage: $0 SIM OUT_DIR SEED}
scenario=$(cd "$(dirname "$0")/.." && pwd)/sim/scenarios/fmnist-dir0.5.toml
mkdir -p "$out"
FRUGAL_PROBE_BLOCKS=1 nice -n 10 "$sim" -c "$scenario" --set rounds=60 --set seed="$seed" --set run.threads=1 \
  --set pipeline=secure --set server.release_ema=0.9 --set uplink.density=0.1 --set server.learning_rate=1 \
  --set secure.guided=0.05 --set secure.clip=0.04 --set secure.step_scale=5 --set round.selection=uniform \
  --set downlink.merge_chains=true --set secure.bits=4 --set secure.max_clients=7 --set secure.modular_clip=true \
  --out "$out/probe-s$seed" --quiet --no-progress 2>"$out/probe-s$seed.log"
python3 - "$out/probe-s$seed.log" <<'PY'
import collections, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    t = line.split()
    if not t or t[0] != "PROBE" or int(t[2]) < 10:
        continue
    rows[(int(t[4]), int(t[6]), float(t[8]), float(t[10]))].append((int(t[12]), int(t[14]), float(t[16])))
print("| order | block | selection | density | entries | bytes | bits an entry | removed | removed per KB |")
print("|---|---|---|---|---|---|---|---|---|")
for (order, block, c, dens), v in rows.items():
    n, b, r = (sum(x[i] for x in v) / len(v) for i in range(3))
    sel = "top-k" if block == 1 else ("whole blocks" if c == 0 else f"top-k in the best {c:g}k/B blocks")
    print(f"| {'transposed' if order else 'native'} | {block} | {sel} | {dens:g} | {n:,.0f} | {b:,.0f} | "
          f"{8 * b / n:.2f} | {r:.4f} | {1000 * r / b:.4f} |")
PY
