#!/usr/bin/env bash
# Issue 15's lean-model measurement (docs/benchmarks.md, "Frugal models:
# pruning and widths"): fmnist-dir0.5 with dense FedAvg (dense), with Frugal's
# pipeline (frugal), and sim/scenarios/fmnist-dir0.5-lean.toml with its
# pruning alone (pruned) and with pruning and per-device widths (lean), 150
# rounds each, one run directory per run under $OUT/lean/<variant>-s<seed>/,
# then one table line per run in $OUT/lean/table.csv (rounds, client joules
# and bytes to 85%, final accuracy, mean of the last 20 rounds, and phone-low's
# mean compute joules per participation). Variants *-defer add
# carbon.defer_metered; bench/radio_breakdown.py splits a run's joules.
# The lean scenario ships phone-low = 0.6 and deferral since the twelfth
# session; the earlier variants pin what they ran (width 0.5, deferral as
# named), so every earlier table's command still gives what it gave.
#   bench/lean_experiments.sh        (env SEEDS, ROUNDS, VARIANTS, JOBS, OUT, SIM)
# Needs a release build. Runs JOBS simulations at once (nice), one thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
SIM=${SIM:-build/release/sim/frugal-sim}
OUT=${OUT:-runs/bench}/lean
SEEDS=${SEEDS:-1 2 3}
ROUNDS=${ROUNDS:-150}
VARIANTS=${VARIANTS:-dense frugal pruned lean}
JOBS=${JOBS:-2}
mkdir -p "$OUT"

jobs_file=$(mktemp)
trap 'rm -f "$jobs_file"' EXIT
for seed in $SEEDS; do
  for v in $VARIANTS; do
    name="$v-s$seed"
    [[ -f $OUT/$name/summary.json ]] && continue  # already run: rerun by deleting the directory
    case $v in
      dense) args="-c sim/scenarios/fmnist-dir0.5-lean.toml --set pipeline=dense" ;;
      frugal) args="-c sim/scenarios/fmnist-dir0.5.toml" ;;
      pruned) args="-c sim/scenarios/fmnist-dir0.5-lean.toml --set pipelines.frugal.widths.devices={} --set carbon.defer_metered=false" ;;
      lean) args="-c sim/scenarios/fmnist-dir0.5-lean.toml --set pipelines.frugal.widths.devices={phone-low=0.5} --set carbon.defer_metered=false" ;;
      # The same runs with carbon.defer_metered (cellular clients only for
      # slots Wi-Fi ones cannot fill; issue 15, eleventh session).
      lean-defer) args="-c sim/scenarios/fmnist-dir0.5-lean.toml --set pipelines.frugal.widths.devices={phone-low=0.5} --set carbon.defer_metered=true" ;;
      pruned-defer) args="-c sim/scenarios/fmnist-dir0.5-lean.toml --set pipelines.frugal.widths.devices={} --set carbon.defer_metered=true" ;;
      frugal-defer) args="-c sim/scenarios/fmnist-dir0.5.toml --set carbon.defer_metered=true" ;;
      dense-defer) args="-c sim/scenarios/fmnist-dir0.5-lean.toml --set pipeline=dense --set carbon.defer_metered=true" ;;
      # lean-defer with FedRolex's rolling windows for the narrow clients (twelfth session).
      lean-defer-rolling) args="-c sim/scenarios/fmnist-dir0.5-lean.toml --set pipelines.frugal.widths.devices={phone-low=0.5} --set carbon.defer_metered=true --set pipelines.frugal.widths.rolling=true" ;;
      # lean-defer with phone-low at 0.6 of the pruned model's units rather than 0.5:
      # the scenario as shipped since the twelfth session (lean12 names it).
      lean-defer-w60) args="-c sim/scenarios/fmnist-dir0.5-lean.toml --set carbon.defer_metered=true --set pipelines.frugal.widths.devices={phone-low=0.6}" ;;
      lean12) args="-c sim/scenarios/fmnist-dir0.5-lean.toml" ;;
      *) echo "unknown variant $v" >&2; exit 2 ;;
    esac
    echo "$name $args --set rounds=$ROUNDS --set seed=$seed --set run.threads=1" >> "$jobs_file"
  done
done
echo "$(wc -l < "$jobs_file") runs to do, $JOBS at a time, into $OUT"
# shellcheck disable=SC2016
xargs -P "$JOBS" -L 1 bash -c 'name=$0; nice -n 10 "'"$SIM"'" "$@" --out "'"$OUT"'/$name" --quiet --no-progress \
  > "'"$OUT"'/$name.log" 2>&1 || echo "FAILED: $name (see '"$OUT"'/$name.log)"' < "$jobs_file"

python3 - "$OUT" <<'PY'
import csv, json, os, sys
out = sys.argv[1]
rows = []
for name in sorted(os.listdir(out)):
    p = os.path.join(out, name, "summary.json")
    if not os.path.isfile(p):
        continue
    s = json.load(open(p))
    rounds = list(csv.DictReader(open(os.path.join(out, name, "rounds.csv"))))
    last = [float(r["accuracy"]) for r in rounds[-20:]]
    low = [float(r["compute_j"]) for r in csv.DictReader(open(os.path.join(out, name, "ledger.csv")))
           if r["device"] == "phone-low" and r["outcome"] == "participated"]
    rows.append([name, s["rounds_to_target"], s["joules_to_target"], s["bytes_to_target"], s["final_accuracy"],
                 round(sum(last) / len(last), 4), round(s["joules_client"], 1),
                 round(sum(low) / len(low), 4) if low else "", len(low)])
with open(os.path.join(out, "table.csv"), "w") as f:
    w = csv.writer(f)
    w.writerow(["run", "rounds_to_85", "client_joules_to_85", "bytes_to_85", "final_accuracy", "mean_last_20",
                "client_joules_total", "phone_low_compute_j_per_participation", "phone_low_participations"])
    w.writerows(rows)
for r in rows:
    print(*r, sep="\t")
PY
