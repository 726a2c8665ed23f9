#!/usr/bin/env python3
"""Where a frugal-sim run's client joules to its target go (issue 15): from
RUN_DIR/ledger.csv, the participations up to the round that reached the
target (summary.json's rounds_to_target), split by radio kind (tails, full
8-bit model downloads, other downloads, uploads) and by device class.

    bench/radio_breakdown.py RUN_DIR...

Bits cost bytes x 8 x the radio's joules_per_bit (common/energy/profiles.toml);
"tails" is the rest of radio_j: full tails plus the partial ones between a
client's bursts (docs/energy-model.md, "Radio"). A download above 50 kB is
counted as a full model (the 2NN's 8-bit model is about 202 kB, the pruned
784-113-113-10's about 104 kB; broadcast-step chains and a seeded start are
far smaller)."""
import collections
import csv
import json
import os
import sys
import tomllib

FULL_MODEL_BYTES = 50_000
HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "..", "common", "energy", "profiles.toml"), "rb") as f:
    RADIOS = tomllib.load(f)["radios"]


def breakdown(run_dir):
    with open(f"{run_dir}/summary.json") as f:
        last = json.load(f)["rounds_to_target"]
    with open(f"{run_dir}/ledger.csv") as f:
        rows = [r for r in csv.DictReader(f)
                if r["client_id"] and (last is None or int(r["round"]) <= last)]
    kinds = collections.defaultdict(collections.Counter)
    clients = collections.defaultdict(set)
    devices = collections.defaultdict(collections.Counter)
    for r in rows:
        radio = RADIOS[r["radio"]]
        down, up, radio_j = int(r["bytes_down"]), int(r["bytes_up"]), float(r["radio_j"])
        down_j = down * 8 * radio["joules_per_bit_down"]
        up_j = up * 8 * radio["joules_per_bit_up"]
        k = kinds[r["radio"]]
        k["participations"] += 1
        k["radio_j"] += radio_j
        k["tails_j"] += radio_j - down_j - up_j
        full = down > FULL_MODEL_BYTES
        k["full_downloads"] += full
        k["full_download_j" if full else "other_download_j"] += down_j
        k["upload_j"] += up_j
        clients[r["radio"]].add(r["client_id"])
        d = devices[r["device"]]
        d["participations"] += 1
        d["compute_j"] += float(r["compute_j"])
        d["radio_j"] += radio_j
        d["cellular_radio_j"] += radio_j if r["radio"] not in ("wifi", "ethernet") else 0
    compute = sum(d["compute_j"] for d in devices.values())
    radio = sum(k["radio_j"] for k in kinds.values())
    print(f"{run_dir}: rounds to target {last}, client J {compute + radio:.1f} = compute {compute:.1f} + radio {radio:.1f}")
    for name, k in sorted(kinds.items()):
        print(f"  radio {name}: {k['participations']} participations by {len(clients[name])} clients, "
              f"{k['radio_j']:.1f} J = tails {k['tails_j']:.1f} + full-model downloads {k['full_download_j']:.1f} "
              f"({k['full_downloads']}) + other downloads {k['other_download_j']:.1f} + uploads {k['upload_j']:.1f}")
    for name, d in sorted(devices.items()):
        print(f"  device {name}: {d['participations']} participations, compute {d['compute_j']:.1f} J, "
              f"radio {d['radio_j']:.1f} J (cellular {d['cellular_radio_j']:.1f})")


for arg in sys.argv[1:]:
    breakdown(arg)
