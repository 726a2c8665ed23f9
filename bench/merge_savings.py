#!/usr/bin/env python3
"""Download bytes per participation of two frugal-sim runs that differ only in
downlink.merge_chains (docs/benchmarks.md, "Thirteenth session"): the same
rounds and clients (merging is lossless, so both runs select and train alike),
so each ledger row of one pairs with the same (round, client) of the other.
Prints one line per run pair and a table by the number of broadcast steps the
client missed (rounds since it last took part; its first time, since round 1).
With DENSE_BYTES (dense FedAvg's bytes to 85% on that seed) and ROUND (the
round the pair reaches 85%), also what the download per participation to that
round would have to be, uploads unchanged, for 45x and 50x fewer bytes.
  usage: bench/merge_savings.py CHAIN_RUN_DIR MERGED_RUN_DIR [DENSE_BYTES ROUND]"""
import csv
import sys
from collections import defaultdict


def participations(run_dir, column="bytes_down"):
    with open(f"{run_dir}/ledger.csv") as f:
        return {(int(r["round"]), r["client_id"]): int(r[column]) for r in csv.DictReader(f)
                if r["outcome"] == "participated"}


def main():
    chain, merged = participations(sys.argv[1]), participations(sys.argv[2])
    if chain.keys() != merged.keys():
        sys.exit("the runs did not draw the same participations: not a merge_chains pair")
    last = {}
    by_gap = defaultdict(lambda: [0, 0, 0])
    for rnd, client in sorted(chain):
        gap = rnd - last.get(client, 1)
        last[client] = rnd
        b = by_gap[min(gap, 40)]
        b[0] += 1
        b[1] += chain[(rnd, client)]
        b[2] += merged[(rnd, client)]
    n, c, m = len(chain), sum(chain.values()), sum(merged.values())
    print(f"participations {n}: bytes down per participation {c / n:,.0f} (chains) / {m / n:,.0f} (merged), "
          f"saved {(c - m) / n:,.0f} ({100 * (c - m) / c:.1f}%)")
    print("| steps missed | participations | down, chain | down, merged | saved |")
    print("|---|---|---|---|---|")
    for lo, hi in [(0, 1), (2, 4), (5, 9), (10, 19), (20, 40)]:
        rows = [by_gap[g] for g in range(lo, hi + 1) if g in by_gap]
        k = sum(r[0] for r in rows)
        if k == 0:
            continue
        bc, bm = sum(r[1] for r in rows), sum(r[2] for r in rows)
        label = f"{lo}-{hi}" if hi < 40 else f"{lo}+"
        print(f"| {label} | {k} | {bc / k:,.0f} | {bm / k:,.0f} | {(bc - bm) / k:,.0f} ({100 * (bc - bm) / bc:.1f}%) |")
    if len(sys.argv) == 5:
        dense, to_round = int(sys.argv[3]), int(sys.argv[4])
        up = participations(sys.argv[2], "bytes_up")
        keys = [k for k in merged if k[0] <= to_round]
        n_to = len(keys)
        up_mean = sum(up[k] for k in keys) / n_to
        down_c = sum(chain[k] for k in keys) / n_to
        down_m = sum(merged[k] for k in keys) / n_to
        need = {x: dense / x / n_to - up_mean for x in (45, 50)}
        print(f"to round {to_round}: {n_to} participations, up {up_mean:,.0f} / down {down_c:,.0f} (chains), "
              f"{down_m:,.0f} (merged) bytes each; 45x needs down <= {need[45]:,.0f}, 50x <= {need[50]:,.0f}")


if __name__ == "__main__":
    main()
