#!/usr/bin/env bash
# Issue 13's DP measurement (docs/benchmarks.md and docs/privacy.md, "Accuracy
# against epsilon"): test accuracy of the 2NN on sim/scenarios/fmnist-dp.toml
# (60,000 clients, 1,000 per round, central DP-FedAvg, adaptive clipping) for
# each target epsilon at delta = 1e-5, and the same scenario without DP, one
# run directory each under $OUT/dp/eps<E>-s<seed>/ (eps0: no DP), then one CSV
# line per run in $OUT/dp/table.csv.
#   bench/dp_accuracy.sh            (env EPSILONS, SEEDS, ROUNDS, JOBS, OUT, SIM, MODE, SCENARIO)
# MODE=distributed runs distributed DP instead (pipeline = secure: clients clip
# to privacy.clip = DIST_CLIP, default 0.5, and add Skellam noise in the ring;
# the secure pipeline's 10% support), into $OUT/dp/dist-eps<E>-s<seed>/.
# SCENARIO=sim/scenarios/fmnist-dp-disjoint.toml runs the disjoint-data
# variant, into $OUT/dp/disjoint-... directories.
# RUN_PROTOCOL=0 (distributed mode) skips the SecAgg+ protocol itself
# (secure.run_protocol = false: the survivors' ring inputs summed directly,
# the exact sum unmasking yields; accuracy only, the protocol's bytes and CPU
# not on the ledger), into $OUT/dp/dist-sum-... directories. SETS="k=v ..."
# adds --set overrides to every run and TAG=<name> puts its runs into
# $OUT/dp/<prefix><TAG>-eps<E>-s<seed>/ (a configuration under study).
# The tenth session's runs (control, full support, no release EMA) and their
# SETS: docs/benchmarks.md, "The control, and what the secure pipeline costs DP".
# Needs a release build. Runs JOBS simulations at once (nice), one thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
SIM=${SIM:-build/release/sim/frugal-sim}
OUT=${OUT:-runs/bench}/dp
EPSILONS=${EPSILONS:-8 1 4 2 0}
SEEDS=${SEEDS:-1}
ROUNDS=${ROUNDS:-40}
JOBS=${JOBS:-2}
MODE=${MODE:-central}
SCENARIO=${SCENARIO:-sim/scenarios/fmnist-dp.toml}
DIST_CLIP=${DIST_CLIP:-0.5}
RUN_PROTOCOL=${RUN_PROTOCOL:-1}
SETS=${SETS:-}
TAG=${TAG:-}
prefix=""
[[ $SCENARIO == *disjoint* ]] && prefix="disjoint-"
[[ $MODE == distributed ]] && prefix+="dist-"
[[ $MODE == distributed && $RUN_PROTOCOL == 0 ]] && prefix+="sum-"
[[ -n $TAG ]] && prefix+="$TAG-"
mkdir -p "$OUT"

jobs_file=$(mktemp)
trap 'rm -f "$jobs_file"' EXIT
for seed in $SEEDS; do
  for e in $EPSILONS; do
    name="${prefix}eps$e-s$seed"
    [[ -f $OUT/$name/summary.json ]] && continue  # already run: rerun by deleting the directory
    args="-c $SCENARIO --set rounds=$ROUNDS --set seed=$seed --set run.threads=1"
    if [[ $e == 0 ]]; then
      args+=" --set privacy.mode=none"
    else
      args+=" --set privacy.target_epsilon=$e"
    fi
    if [[ $MODE == distributed ]]; then
      args+=" --set pipeline=secure"  # eps 0: the secure pipeline without DP
      [[ $e != 0 ]] && args+=" --set privacy.mode=distributed --set privacy.adaptive_clip_quantile=0 --set privacy.clip=$DIST_CLIP"
      [[ $RUN_PROTOCOL == 0 ]] && args+=" --set secure.run_protocol=false"
    fi
    for kv in $SETS; do args+=" --set $kv"; done
    echo "$name $args" >> "$jobs_file"
  done
done
echo "$(wc -l < "$jobs_file") runs to do, $JOBS at a time, into $OUT"
# shellcheck disable=SC2016
xargs -P "$JOBS" -L 1 bash -c 'name=$0; nice "'"$SIM"'" "$@" --out "'"$OUT"'/$name" --quiet --no-progress \
  > "'"$OUT"'/$name.log" 2>&1 || echo "FAILED: $name (see '"$OUT"'/$name.log)"' < "$jobs_file"

# One line per run: the epsilon spent, the noise multiplier, the final clip,
# the final accuracy and the best accuracy evaluated.
{
  echo "variant:target_epsilon,seed,epsilon,delta,noise_multiplier,final_clip,rounds,final_accuracy,best_accuracy"
  for dir in "$OUT"/*eps*-s*/; do
    [[ -f $dir/summary.json ]] || continue
    name=$(basename "$dir")
    e=${name#*eps}; e=${e%-s*}; seed=${name##*-s}; variant=${name%eps*}; variant=${variant%-}
    e="${variant:-central}:$e"
    python3 - "$dir" "$e" "$seed" <<'PY'
import csv, json, sys
d, e, seed = sys.argv[1:]
s = json.load(open(d + "/summary.json"))
rows = list(csv.DictReader(open(d + "/rounds.csv")))
m = s["extra_metrics"]
print(",".join(str(x) for x in [e, seed, s["dp_epsilon"], s["dp_delta"], m.get("dp_noise_multiplier", 0),
      m.get("dp_final_clip", ""), s["rounds"], s["final_accuracy"], max(float(r["accuracy"]) for r in rows)]))
PY
  done
} > "$OUT/table.csv"
cat "$OUT/table.csv"
