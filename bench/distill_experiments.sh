#!/usr/bin/env bash
# Issue 15, items 3-4: fmnist-dir0.5 with Frugal's pipeline, the released
# model evaluated in int8 beside fp32 every round (eval.int8), then distilled
# at the end into a student (distill.at_end); one run per seed, at most two
# simulator processes at a time, niced. Prints one CSV line per run:
#   seed,rounds_to_target,final_fp32,final_int8,student,student_fp32,student_int8,flops_ratio,...
# docs/benchmarks.md, "Frugal models: int8 evaluation and distillation".
#   bench/distill_experiments.sh [build dir] [out dir] [student] [seeds...]
set -euo pipefail
build=${1:-build/release}
out=${2:-runs/distill}
student=${3:-mlp:48}
shift $(( $# < 3 ? $# : 3 ))
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=(1 2 3)
mkdir -p "$out"
run() {
  local s=$1
  nice "$build/sim/frugal-sim" -c sim/scenarios/fmnist-dir0.5.toml --set seed="$s" --set eval.int8=true \
    --set distill.at_end=true --set "distill.student=\"$student\"" --set distill.pool_examples=20000 \
    --set distill.epochs=10 --out "$out/seed$s" > "$out/seed$s.log" 2>&1
}
pending=()
for s in "${seeds[@]}"; do
  run "$s" &
  pending+=($!)
  if [ ${#pending[@]} -ge 2 ]; then wait "${pending[0]}"; pending=("${pending[@]:1}"); fi
done
for p in "${pending[@]}"; do wait "$p"; done
echo "seed,final_fp32,final_int8,int8_minus_fp32_points,max_abs_round_gap_points,student,student_fp32,student_int8,student_minus_teacher_points,flops_ratio,teacher_bytes,student_fp32_bytes,student_int8_bytes"
for s in "${seeds[@]}"; do
  python3 - "$out/seed$s" "$s" "$student" <<'PY'
import csv, json, sys
d, seed, student = sys.argv[1], sys.argv[2], sys.argv[3]
s = json.load(open(d + "/summary.json"))
m = s["extra_metrics"]
gap = 0.0
with open(d + "/rounds.csv") as f:
    for row in csv.DictReader(f):
        if "accuracy_int8" in row and float(row["accuracy_int8"]) >= 0:
            gap = max(gap, abs(float(row["accuracy_int8"]) - float(row["accuracy"])))
print(f"{seed},{s['final_accuracy']:.4f},{m['final_accuracy_int8']:.4f},"
      f"{100 * (m['final_accuracy_int8'] - s['final_accuracy']):+.2f},{100 * gap:.2f},{student},"
      f"{m['student_accuracy']:.4f},{m['student_int8_accuracy']:.4f},"
      f"{100 * (m['student_accuracy'] - m['teacher_accuracy']):+.2f},{m['student_flops_ratio']:.3f},"
      f"{int(m['teacher_fp32_bytes'])},{int(m['student_fp32_bytes'])},{int(m['student_int8_bytes'])}")
PY
done
