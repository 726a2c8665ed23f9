#!/usr/bin/env bash
# Markdown tables for docs/benchmarks.md from bench/carbon_experiments.sh's
# table.csv and regions.csv: per variant, over seeds, gCO2e and virtual time
# to the target accuracy (mean, and the mean of per-seed ratios to uniform on
# the same seed), final accuracy (and its difference from uniform, in
# points), the lowest region participation/client ratio, the grams per kWh
# of all the clients' joules over the whole runs; then each region's
# participation share per variant (mean over seeds) against its client share.
#   bench/carbon_table.sh [DIR]      (DIR: $OUT/carbon, default runs/bench/carbon)
set -euo pipefail
dir=${1:-runs/bench/carbon}
order="uniform energy carbon_nofloor carbon carbon_shift carbon_shift_last carbon_wait"

awk -F, -v order="$order" '
  NR == 1 { next }
  { v = $1; s = $2; seeds[v] = seeds[v] " " s
    g[v, s] = $5; t[v, s] = $6; a[v, s] = $7; low[v, s] = $10; r[v, s] = $4
    gt[v] += $8; jt[v] += $9 }
  END {
    print "| selection | seeds | gCO2e to target | uniform / it (per seed) | virtual h to target | it / uniform | rounds | final accuracy | vs uniform (points) | lowest region share ratio | run gCO2e/kWh |"
    print "|---|---|---|---|---|---|---|---|---|---|---|"
    n = split(order, vs, " ")
    for (i = 1; i <= n; ++i) {
      v = vs[i]; if (!(v in seeds)) continue
      m = split(seeds[v], ss, " ")
      k = 0; sg = 0; st = 0; sa = 0; sr = 0; gr = 0; tr = 0; da = 0; kr = 0; lo = 9; miss = 0
      for (j = 1; j <= m; ++j) {
        s = ss[j]
        if (g[v, s] == "") { ++miss; continue }
        ++k; sg += g[v, s]; st += t[v, s]; sa += a[v, s]; sr += r[v, s]
        if (low[v, s] < lo) lo = low[v, s]
        if (g["uniform", s] != "" && g[v, s] > 0) { ++kr; gr += g["uniform", s] / g[v, s]; tr += t[v, s] / t["uniform", s]; da += 100 * (a[v, s] - a["uniform", s]) }
      }
      if (k == 0) { printf "| %s | %d | not reached | | | | | | | | |\n", v, m; continue }
      printf "| %s | %d%s | %.4g g | %s | %.2f | %s | %.1f | %.4f | %s | %.2f | %.0f |\n", v, m, miss ? " (" miss " missed)" : "",
        sg / k, kr ? sprintf("%.1fx", gr / kr) : "", st / k, kr ? sprintf("%.2fx", tr / kr) : "", sr / k, sa / k,
        kr ? sprintf("%+.2f", da / kr) : "", lo, (jt[v] > 0 ? gt[v] / (jt[v] / 3.6e6) : 0)
    }
  }' "$dir/table.csv"
echo
awk -F, -v order="$order" '
  NR == 1 { next }
  { v = $1; reg = $3; regs[reg] = 1; cs[reg] += $4; cn[reg]++; ps[v, reg] += $6; pn[v, reg]++; have[v] = 1 }
  END {
    n = split(order, vs, " ")
    printf "| region | client share |"
    for (i = 1; i <= n; ++i) if (vs[i] in have) printf " %s |", vs[i]
    printf "\n|---|---|"
    for (i = 1; i <= n; ++i) if (vs[i] in have) printf "---|"
    printf "\n"
    for (reg in regs) {
      printf "| %s | %.3f |", reg, cs[reg] / cn[reg]
      for (i = 1; i <= n; ++i) if (vs[i] in have) printf " %.3f |", pn[vs[i], reg] ? ps[vs[i], reg] / pn[vs[i], reg] : 0
      printf "\n"
    }
  }' "$dir/regions.csv" | { read -r h; read -r s; echo "$h"; echo "$s"; sort; }
