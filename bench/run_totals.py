"""Totals over a frugal-sim run's rounds.csv, shared by the bench/ scripts
that print docs/benchmarks.md rows (import it with sys.path set to bench/)."""
import csv


def read_rounds(run_dir):
    """The rows of RUN_DIR/rounds.csv, as dicts of strings."""
    with open(f"{run_dir}/rounds.csv") as f:
        return list(csv.DictReader(f))


def round_bytes(r):
    """Bytes up + down of one rounds.csv row."""
    return int(r["bytes_up"]) + int(r["bytes_down"])


def to(rows, target):
    """(round, bytes up + down, client joules) summed up to the first round
    whose accuracy reaches `target`; None when no round does. To the
    scenario's target these equal summary.json's bytes_to_target and
    joules_to_target."""
    b = j = 0
    for r in rows:
        b += round_bytes(r)
        j += float(r["joules_compute"]) + float(r["joules_radio"])
        if float(r["accuracy"]) >= target:
            return int(r["round"]), b, j
    return None


def bytes_per_round(rows):
    """Mean bytes up + down per round over the whole run (integer)."""
    return sum(round_bytes(r) for r in rows) // len(rows)


def best_accuracy(rows):
    return max(float(r["accuracy"]) for r in rows)
