#!/usr/bin/env bash
# Markdown tables of bench/robust_experiments.sh's table.csv: for each pipeline,
# attacks by rules, each cell the mean final accuracy over the seeds run (and,
# for the backdoor, the mean backdoor success in brackets), the seed count
# when it is not the most common one.
#   bench/robust_table.sh [runs/bench/robust/table.csv]
set -euo pipefail
csv=${1:-runs/bench/robust/table.csv}
awk -F, '
  NR == 1 { next }
  { k = $1 SUBSEP $2 SUBSEP $3; acc[k] += $5; bd[k] += $7; if (++n[k] > maxn) maxn = n[k]
    if (!($1 in P)) { P[$1] = 1; pl[++np] = $1 }
    if (!($2 in A)) { A[$2] = 1; at[++na] = $2 }
    if (!($3 in R)) { R[$3] = 1; ru[++nr] = $3 } }
  END {
    nattacks = split("none sign_flip scaling gaussian alie alie3 alie_flanders ipm label_flip backdoor backdoor10", order, " ")
    nrules = split("none norm_bound centered_clip median trimmed_mean multi_krum fltrust foolsgold foolsgold_out bulyan flame flame_ms1 clip_noise rlr rlr2 rlr3 rlr_zero rlr_zero2 rlr_zero3 cc_rlr", rorder, " ")
    for (p = 1; p <= np; ++p) {
      printf "\n%s pipeline: final accuracy, mean over %d seeds (fewer where a cell says so)\n\n", pl[p], maxn
      printf "| attack |"; for (r = 1; r <= nrules; ++r) if (rorder[r] in R) printf " %s |", rorder[r]; printf "\n"
      printf "|---|"; for (r = 1; r <= nrules; ++r) if (rorder[r] in R) printf "---|"; printf "\n"
      for (a = 1; a <= nattacks; ++a) {
        if (!(order[a] in A)) continue
        printf "| %s |", order[a]
        for (r = 1; r <= nrules; ++r) {
          if (!(rorder[r] in R)) continue
          k = pl[p] SUBSEP order[a] SUBSEP rorder[r]
          if (!(k in n)) { printf " |"; continue }
          printf " %.4f", acc[k] / n[k]
          if (order[a] ~ /^backdoor/) printf " (bd %.1f%%)", 100 * bd[k] / n[k]
          if (n[k] < maxn) printf " (%d seed%s)", n[k], (n[k] > 1 ? "s" : "")
          printf " |"
        }
        printf "\n"
      }
    }
  }' "$csv"
