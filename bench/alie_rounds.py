#!/usr/bin/env python3
"""Attackers per round, and what the robust rule did with them, from frugal-sim run directories.

For each run directory (run.toml, rounds.csv, ledger.csv), the malicious clients are
those frugal-sim chose for the run's seed (build/release/bench/frugal-attackers), and m
is how many of a round's participating senders are among them. Prints, per run:
  - the rounds by m;
  - the attackers' verdicts by m (kept / clipped / downweighted / rejected);
  - for median, trimmed_mean, bulyan: the share of the attackers' and of the honest
    values the rule used (from the verdicts' "N of K values" reasons);
  - the rounds at or past the rule's breakdown point against identical copies at 10
    senders (median m >= 5, trimmed_mean and multi_krum m >= 3, bulyan m >= 4, none
    m >= 1; docs/robustness.md), the first of them with the accuracy before and after,
    and the mean accuracy change in points in those rounds and in the others up to the
    first one.
With --rounds, one line per round as well.
  bench/alie_rounds.py [--rounds] RUN_DIR...
"""
import collections
import csv
import re
import subprocess
import sys
import tomllib

ATTACKERS = "build/release/bench/frugal-attackers"
BREAKDOWN = {"median": 5, "trimmed_mean": 3, "multi_krum": 3, "bulyan": 4, "none": 1}


def malicious(clients, fraction, seed):
    out = subprocess.run([ATTACKERS, str(clients), repr(fraction), str(seed)], capture_output=True, text=True,
                         check=True).stdout.split()
    return set(int(x) for x in out[1:])


def action(reason):
    return reason.split(":")[0] if reason else "kept"


def report(run, per_round):
    with open(f"{run}/run.toml", "rb") as f:
        cfg = tomllib.load(f)
    rule = cfg["server"]["robust"]
    bad = malicious(cfg["population"]["clients"], cfg["attack"]["fraction"], cfg["seed"])
    acc = {int(r["round"]): float(r["accuracy"]) for r in csv.DictReader(open(f"{run}/rounds.csv"))}
    senders = collections.defaultdict(list)  # round -> [(attacker, reason)]
    for r in csv.DictReader(open(f"{run}/ledger.csv")):
        if r["client_id"] and r["outcome"] == "participated":
            senders[int(r["round"])].append((int(r["client_id"]) in bad, r["robust"]))
    m = {t: sum(a for a, _ in senders[t]) for t in acc}
    by_m = collections.Counter(m.values())
    verdicts = collections.defaultdict(collections.Counter)
    used = {True: [0, 0], False: [0, 0]}
    for t in acc:
        for a, reason in senders[t]:
            if a:
                verdicts[m[t]][action(reason)] += 1
            hit = re.search(r"(\d+) of (\d+) values", reason)
            if hit:
                used[a][0] += int(hit.group(2)) - int(hit.group(1))
                used[a][1] += int(hit.group(2))
    print(f"{run}: rule {rule}, seed {cfg['seed']}, final accuracy {acc[max(acc)]:.4f}")
    print("  rounds by m: " + ", ".join(f"{k}: {by_m[k]}" for k in sorted(by_m)))
    print("  attackers' verdicts by m: " +
          "; ".join(f"m={k} " + ", ".join(f"{a} {c}" for a, c in sorted(v.items())) for k, v in sorted(verdicts.items())))
    if used[True][1] or used[False][1]:
        print("  values used: attackers {:.1f}%, honest {:.1f}%".format(
            100 * used[True][0] / max(used[True][1], 1), 100 * used[False][0] / max(used[False][1], 1)))
    if rule in BREAKDOWN:
        b = BREAKDOWN[rule]
        past = [t for t in sorted(acc) if m[t] >= b and t > 1]
        change = lambda t: 100 * (acc[t] - acc[t - 1])
        if past:
            first = past[0]
            before = [change(t) for t in sorted(acc) if 1 < t < first]
            mean = lambda v: sum(v) / len(v) if v else float("nan")
            print(f"  m >= {b}: {len(past)} rounds; the first, round {first} (m = {m[first]}): "
                  f"{acc[first - 1]:.4f} -> {acc[first]:.4f}; mean change {mean([change(t) for t in past]):+.1f} "
                  f"points in those rounds, {mean(before):+.2f} in the rounds before the first")
        else:
            print(f"  m >= {b}: no round")
    if per_round:
        for t in sorted(acc):
            acts = collections.Counter(action(r) for a, r in senders[t] if a)
            print(f"  round {t}: n {len(senders[t])}, m {m[t]}, accuracy {acc[t]:.4f}, attackers {dict(acts)}")


def main():
    args = sys.argv[1:]
    per_round = "--rounds" in args
    runs = [a for a in args if a != "--rounds"]
    if not runs:
        sys.exit(__doc__)
    for run in runs:
        report(run.rstrip("/"), per_round)


if __name__ == "__main__":
    main()
