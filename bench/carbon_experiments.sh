#!/usr/bin/env bash
# Issue 18's grid (docs/benchmarks.md, "Carbon-aware rounds"): on
# sim/scenarios/fleet-carbon.toml, the same fleet under four selections,
# several seeds, one run directory each under $OUT/carbon/<variant>-s<seed>/,
# then one CSV line per run in $OUT/carbon/table.csv and one line per run and
# region in $OUT/carbon/regions.csv (bench/carbon_table.sh makes the tables).
#   uniform        round.selection = uniform, no shifting, no floor (the baseline)
#   energy         round.selection = energy, no shifting, no floor
#   carbon_nofloor round.selection = carbon, no shifting, no floor
#   carbon         round.selection = carbon, the scenario's region floor (0.6), no shifting
#   carbon_shift   the scenario's Frugal pipeline: carbon, floor 0.6, per-region
#                  shifting (carbon.shift_mode = "region", slack 3 h; rounds run on time)
#   carbon_shift_last  carbon_shift, and a deferring region is drawn after the others
#                  (carbon.shift_draw_last = true)
#   carbon_wait    carbon, floor 0.6, the whole round waits (carbon.shift_mode = "round")
#   bench/carbon_experiments.sh         (env SEEDS, JOBS, OUT, SIM, VARIANTS, EXTRA)
# Needs a release build; copy frugal-sim elsewhere first so a rebuild cannot
# change it mid-grid (SIM=/tmp/frugal-sim). Runs JOBS simulations at once, one thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
SIM=${SIM:-build/release/sim/frugal-sim}
OUT=${OUT:-runs/bench}/carbon
SEEDS=${SEEDS:-1 2 3}
JOBS=${JOBS:-2}
VARIANTS=${VARIANTS:-uniform energy carbon_nofloor carbon carbon_shift carbon_shift_last carbon_wait}
EXTRA=${EXTRA:-}
SCENARIO=sim/scenarios/fleet-carbon.toml
mkdir -p "$OUT"

jobs_file=$(mktemp)
trap 'rm -f "$jobs_file"' EXIT
for seed in $SEEDS; do
  for v in $VARIANTS; do
    name="$v-s$seed"
    [[ -f $OUT/$name/summary.json ]] && continue  # already run: rerun by deleting the directory
    args="-c $SCENARIO --set seed=$seed --set run.threads=1 $EXTRA"
    case $v in
      uniform) args+=" --set round.selection=uniform --set carbon.shift_slack_h=0 --set carbon.region_floor=0" ;;
      energy) args+=" --set round.selection=energy --set carbon.shift_slack_h=0 --set carbon.region_floor=0" ;;
      carbon_nofloor) args+=" --set round.selection=carbon --set carbon.shift_slack_h=0 --set carbon.region_floor=0" ;;
      carbon) args+=" --set round.selection=carbon --set carbon.shift_slack_h=0" ;;
      carbon_shift) ;;
      carbon_shift_last) args+=" --set carbon.shift_draw_last=true" ;;
      carbon_wait) args+=" --set carbon.shift_mode=round" ;;
      *) echo "unknown variant $v" >&2; exit 2 ;;
    esac
    # xargs -L 1 joins a line ending in a blank to the next: squeeze blanks.
    echo "$name $(echo $args)" >> "$jobs_file"
  done
done
echo "$(wc -l < "$jobs_file") runs to do, $JOBS at a time, into $OUT"
# shellcheck disable=SC2016
xargs -P "$JOBS" -L 1 bash -c 'name=$0; "'"$SIM"'" "$@" --out "'"$OUT"'/$name" --quiet --no-progress \
  > "'"$OUT"'/$name.log" 2>&1 || echo "FAILED: $name (see '"$OUT"'/$name.log)"' < "$jobs_file"

# From rounds.csv: the first round at the target accuracy (read from
# run.toml), client gCO2e through it, the virtual time when it closed (hours
# since the run's start: its UTC hour less the first round's, plus its own
# virtual seconds; waits included), the final accuracy and the run's gCO2e.
{
  echo "variant,seed,target,rounds_to_target,gco2e_to_target,virtual_h_to_target,final_accuracy,gco2e_total,joules_total,lowest_region_ratio"
  for d in "$OUT"/*-s*/; do
    name=$(basename "$d")
    [[ -f $d/rounds.csv ]] || continue
    v=${name%-s*}
    s=${name##*-s}
    target=$(awk -F' = ' '$1 == "target_accuracy" { print $2 }' "$d/run.toml")
    low=$(awk -F, 'NR > 1 && $1 == "region" && $7 > 0 { r = $9 / $7; if (!seen || r < m) { m = r; seen = 1 } } END { printf "%.4f", m }' \
      "$d/representation.csv")
    awk -F, -v v="$v" -v s="$s" -v t="$target" -v low="$low" '
      NR == 2 { start = $14 }
      NR > 1 { g += $8; j += $6 + $7; acc = $2
               if (!hit && $2 >= t) { hit = 1; k = $1; gt = g; vt = ($14 - start) + $12 / 3600 } }
      END {
        if (hit) printf "%s,%s,%s,%d,%.6g,%.4f,%.4f,%.6g,%.6g,%s\n", v, s, t, k, gt, vt, acc, g, j, low
        else printf "%s,%s,%s,,,,%.4f,%.6g,%.6g,%s\n", v, s, t, acc, g, j, low
      }' "$d/rounds.csv"
  done
} > "$OUT/table.csv"
{
  echo "variant,seed,region,client_share,data_share,participation_share"
  for d in "$OUT"/*-s*/; do
    name=$(basename "$d")
    [[ -f $d/representation.csv ]] || continue
    awk -F, -v v="${name%-s*}" -v s="${name##*-s}" 'NR > 1 && $1 == "region" { print v "," s "," $2 "," $7 "," $8 "," $9 }' \
      "$d/representation.csv"
  done
} > "$OUT/regions.csv"
echo "wrote $OUT/table.csv and $OUT/regions.csv"
