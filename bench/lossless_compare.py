#!/usr/bin/env python3
"""A lossless downlink change against its baseline runs, seed by seed
(docs/benchmarks.md, "Seventeenth session"): the rows of rounds.csv must agree
in accuracy, loss, bytes up and clients selected/completed on all rounds
(ledger.csv: the same clients in the same rounds with the same bytes up), and
only bytes down may move. Prints one line per seed: rounds / bytes to 85%,
the ratio against the baseline directory's dense run of that seed, the
baseline variant's ratio, and the saving; then mean, median, geometric mean
and lowest over the seeds given.
  usage: bench/lossless_compare.py BASE_DIR BASE_VARIANT NEW_DIR NEW_VARIANT SEED..."""
import csv, math, statistics, sys
sys.dont_write_bytecode = True
sys.path.insert(0, __import__("os").path.dirname(__file__))
from run_totals import read_rounds, to

base_dir, base_var, new_dir, new_var = sys.argv[1:5]
seeds = [int(s) for s in sys.argv[5:]]
same_cols = ["round", "accuracy", "loss", "bytes_up", "selected", "completed", "stragglers", "ring_wraps"]
ratios, base_ratios = [], []
print("| seed | rows equal (accuracy, loss, bytes up, selected) | ledger: same clients, bytes up | dense bytes to 85% | baseline: rounds / bytes to 85% (ratio) | new: rounds / bytes to 85% (ratio) | saved to 85% | final accuracy; vs dense |")
print("|---|---|---|---|---|---|---|---|")
for s in seeds:
    b = read_rounds(f"{base_dir}/{base_var}-s{s}")
    n = read_rounds(f"{new_dir}/{new_var}-s{s}")
    d = read_rounds(f"{base_dir}/dense-s{s}")
    equal = len(b) == len(n) and all(x[c] == y[c] for x, y in zip(b, n) for c in same_cols if c in x)
    down_le = all(int(y["bytes_down"]) <= int(x["bytes_down"]) for x, y in zip(b, n))
    lb = list(csv.DictReader(open(f"{base_dir}/{base_var}-s{s}/ledger.csv")))
    ln = list(csv.DictReader(open(f"{new_dir}/{new_var}-s{s}/ledger.csv")))
    ledger_same = len(lb) == len(ln) and all(
        x[c] == y[c] for x, y in zip(lb, ln) for c in ("round", "client_id", "outcome", "bytes_up"))
    dr, db, _ = to(d, 0.85)
    br, bb, _ = to(b, 0.85)
    nr, nb, _ = to(n, 0.85)
    ratios.append(db / nb)
    base_ratios.append(db / bb)
    fa, fd = float(n[-1]["accuracy"]), float(d[-1]["accuracy"])
    print(f"| {s} | {'yes' if equal else 'NO'}{'' if down_le else ' (some round has more bytes down)'} | "
          f"{'yes' if ledger_same else 'NO'} | {db:,} | {br} / {bb:,} ({db / bb:.2f}x) | {nr} / {nb:,} (**{db / nb:.2f}x**) | "
          f"{bb - nb:,} ({100 * (bb - nb) / bb:.2f}%) | {fa:.4f}; {100 * (fa - fd):+.2f} |")
def summary(name, r):
    print(f"{name}: mean {statistics.mean(r):.2f}x, median {statistics.median(r):.2f}x, "
          f"geometric mean {math.exp(statistics.mean(math.log(x) for x in r)):.2f}x, lowest {min(r):.2f}x "
          f"(seed {seeds[r.index(min(r))]}), at or above 50x: {sum(x >= 50 for x in r)} of {len(r)}")
summary("baseline", base_ratios)
summary("new", ratios)
