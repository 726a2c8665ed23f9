#!/usr/bin/env python3
"""Download bytes per participation of two frugal-sim runs that differ only in
downlink.merge_chains (docs/benchmarks.md, "Thirteenth session"): the same
rounds and clients (merging is lossless, so both runs select and train alike),
so each ledger row of one pairs with the same (round, client) of the other.
Prints one line per run pair and a table by the number of broadcast steps the
client missed (rounds since it last took part; its first time, since round 1).
  usage: bench/merge_savings.py CHAIN_RUN_DIR MERGED_RUN_DIR"""
import csv
import sys
from collections import defaultdict


def participations(run_dir):
    with open(f"{run_dir}/ledger.csv") as f:
        return {(int(r["round"]), r["client_id"]): int(r["bytes_down"]) for r in csv.DictReader(f)
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


if __name__ == "__main__":
    main()
