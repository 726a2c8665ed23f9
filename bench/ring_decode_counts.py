#!/usr/bin/env python3
"""Entries a smaller ring would misread, under centered decoding and under
decoding centered on a prediction from the server's side information
(docs/benchmarks.md, "Seventeenth session").

  usage: bench/ring_decode_counts.py [--bits B] RUN_DIR...

Each RUN_DIR holds ring_sums.bin from `frugal-sim --dump-ring-sums` (a secure
run): per round, the true sum S of the survivors' levels at every support
entry (which SecAgg+'s server never sees), the server's error-feedback
residual there when the sum arrived, and the round's broadcast step. A ring
of B bits reveals S mod 2^B; a decoder reads it as the value in the window
[c - 2^(B-1), c + 2^(B-1) - 1] for a center c it computes from what the
server holds before the sum arrives. An entry is misread when S lies outside
that window. Printed per rule: misread entries, their rate, how many lie in
that round's broadcast step (the step the run actually sent), and how many
of those came back with the wrong sign.
"""
import argparse
import array
import math
import struct
import sys

sys.dont_write_bytecode = True


def read_dump(path):
    """[(round, coords, sums, guided, resid, step_idx, step_val)] in round order (plain lists)."""
    data = open(path, "rb").read()
    pos, sums, steps = 0, {}, {}

    def take(code, n, size):
        nonlocal pos
        a = array.array(code)
        a.frombytes(data[pos:pos + n * size])
        if sys.byteorder != "little":
            a.byteswap()
        pos += n * size
        return a

    while pos < len(data):
        kind = data[pos:pos + 1]
        pos += 1
        if kind == b"S":
            rnd, n, _surv = struct.unpack_from("<III", data, pos)
            pos += 12
            coords, s, g, r = take("I", n, 4), take("h", n, 2), take("B", n, 1), take("f", n, 4)
            sums[rnd] = (coords, s, g, r)
        elif kind == b"B":
            rnd, m = struct.unpack_from("<II", data, pos)
            pos += 8
            steps[rnd] = (take("I", m, 4), take("f", m, 4))
        else:
            raise SystemExit(f"{path}: bad record kind {kind!r} at byte {pos - 1}")
    return [(r, *sums[r], *steps.get(r, ([], []))) for r in sorted(sums)]


def sign(x):
    return (x > 0) - (x < 0)


def clampi(x, lo=-4, hi=4):
    return max(lo, min(hi, int(round(x))))


def default_rules(unit):
    """name -> center(resid, hist, prev, row); prev is None off the last round's support, row None
    where the entry's row has fewer than 8 other support entries.

    unit: how far one level of the sum moves the server's input (clip / max_level * step_scale / clients)."""
    rules = {"zero (centered)": lambda r, h, p, m: 0}
    for k in (1, 2, 3):
        for tau in (0, 2, 5, 10):
            rules[f"resid-sign k={k} |R|>{tau}u"] = (lambda r, h, p, m, k=k, t=tau * unit:
                                                    k * sign(r) if abs(r) > t else 0)
    for a in (0.05, 0.1, 0.25, 0.5):
        rules[f"resid-linear a={a}"] = lambda r, h, p, m, a=a: clampi(a * r / unit)
    for b in (0.25, 0.5, 0.75, 1.0):
        rules[f"prev b={b}"] = lambda r, h, p, m, b=b: 0 if p is None else clampi(b * p)
    for k in (1, 2, 3):
        for tau in (0.5, 1.5, 3.0):
            rules[f"steps-sign k={k} |H|>{tau}"] = (lambda r, h, p, m, k=k, t=tau: k * sign(h) if abs(h) > t else 0)
    for a in (1, 2, 4):
        rules[f"row-mean a={a}"] = lambda r, h, p, m, a=a: 0 if m is None else clampi(a * m)
    return rules


def row_means(coords, sums, bits, row_len, rows_end):
    """Per entry: the mean centered decode of the other support entries of its row (coordinate // row_len,
    below rows_end), what the server reads from this round's residues; None with fewer than 8 others."""
    half, ring = 1 << (bits - 1), 1 << bits
    rows = {}
    for j, i in enumerate(coords):
        if i < rows_end:
            rows.setdefault(i // row_len, []).append(j)
    out = [None] * len(coords)
    for js in rows.values():
        if len(js) < 9:
            continue
        d = [(sums[j] + half) % ring - half for j in js]
        tot = sum(d)
        for k, j in enumerate(js):
            out[j] = (tot - d[k]) / (len(js) - 1)
    return out


def bounds(rounds, dim, bits, unit, decay, row_len, rows_end):
    """Two bounds no server-side rule reaches. joint: the best center for each joint bin of the features
    the rules use (residual, step history, last sum, row mean), chosen in-sample with the true sums,
    so optimistic. genie-k: center k * sign(true sum), which needs the sign SecAgg+ hides."""
    half, ring = 1 << (bits - 1), 1 << bits
    hist = [0.0] * dim
    last, last_round = {}, {}
    table = {}
    genie = {k: 0 for k in range(1, half)}
    entries = 0
    for (rnd, coords, sums, guided, resid, sidx, sval) in rounds:
        rm = row_means(coords, sums, bits, row_len, rows_end)
        for j in range(len(coords)):
            i, s = coords[j], sums[j]
            p = last.get(i) if last_round.get(i) == rnd - 1 else None
            key = (max(-3, min(3, round(resid[j] / unit / 2))), max(-3, min(3, round(hist[i]))),
                   None if p is None else max(-5, min(5, p)), None if rm[j] is None else max(-3, min(3, round(2 * rm[j]))))
            h = table.setdefault(key, {})
            h[s] = h.get(s, 0) + 1
            for k in genie:
                c = k * sign(s)
                genie[k] += not (c - half <= s <= c + half - 1)
            last[i] = (s + half) % ring - half  # the centered decode the rules' "prev" would mostly hold
            last_round[i] = rnd
        entries += len(coords)
        if decay != 1:
            for i in range(dim):
                hist[i] *= decay
        for i, v in zip(sidx, sval):
            hist[i] += sign(v)
    joint = 0
    for h in table.values():
        joint += min(sum(v for s, v in h.items() if not (c - half <= s <= c + half - 1)) for c in range(-8, 9))
    return entries, joint, len(table), genie


def run_rules(rounds, dim, rules, bits, decay, row_len, rows_end):
    half, ring = 1 << (bits - 1), 1 << bits
    means = [row_means(r[1], r[2], bits, row_len, rows_end) for r in rounds]
    out = {}
    for name, rule in rules.items():
        hist = [0.0] * dim        # signed broadcast steps, decayed per round
        last_dec = {}             # coordinate -> the rule's own decoded sum at the last round it was summed
        last_round = {}
        t = dict(entries=0, misread=0, flipped=0, in_step=0, in_step_flipped=0, guided=0, rounds_with=0)
        for (rnd, coords, sums, guided, resid, sidx, sval), rm in zip(rounds, means):
            step = set(sidx)
            before = t["misread"]
            for j in range(len(coords)):
                i, s = coords[j], sums[j]
                p = last_dec.get(i) if last_round.get(i) == rnd - 1 else None
                c = rule(resid[j], hist[i], p, rm[j])
                dec = c - half + (s - (c - half)) % ring
                if dec != s:
                    t["misread"] += 1
                    flip = s != 0 and sign(dec) != sign(s)
                    t["flipped"] += flip
                    if i in step:
                        t["in_step"] += 1
                        t["in_step_flipped"] += flip
                    t["guided"] += guided[j] != 0
                last_dec[i] = dec
                last_round[i] = rnd
            t["entries"] += len(coords)
            t["rounds_with"] += t["misread"] > before
            if decay != 1:
                for i in range(dim):
                    hist[i] *= decay
            for i, v in zip(sidx, sval):
                hist[i] += sign(v)
        out[name] = t
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, default=3)
    ap.add_argument("--dim", type=int, default=199210)
    ap.add_argument("--unit", type=float, default=0.04 * 5 / 10, help="server input per level of the sum")
    ap.add_argument("--decay", type=float, default=0.9, help="per-round decay of the signed step history")
    ap.add_argument("--only", default="", help="comma-separated rule names (default: all)")
    ap.add_argument("--row-len", type=int, default=784, help="row length for the row-mean rule (2NN: 784 inputs)")
    ap.add_argument("--rows-end", type=int, default=156800, help="rows below this coordinate (2NN: 784 x 200)")
    ap.add_argument("--bounds", action="store_true", help="also the joint-bin and sign-genie bounds")
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    rules = default_rules(a.unit)
    if a.only:
        rules = {k: v for k, v in rules.items() if k in a.only.split(",")}
    for d in a.runs:
        rounds = read_dump(f"{d}/ring_sums.bin")
        res = run_rules(rounds, a.dim, rules, a.bits, a.decay, a.row_len, a.rows_end)
        print(f"{d}: {len(rounds)} rounds, {a.bits}-bit ring")
        print("| rule | misread | rate | rounds with one | wrong sign | in the round's step | of which wrong sign | on guided entries |")
        print("|---|---|---|---|---|---|---|---|")
        for name, t in res.items():
            print(f"| {name} | {t['misread']:,} | {t['misread'] / t['entries']:.2e} | {t['rounds_with']} | {t['flipped']:,} | "
                  f"{t['in_step']:,} | {t['in_step_flipped']:,} | {t['guided']:,} |")
        if a.bounds:
            n, joint, bins, genie = bounds(rounds, a.dim, a.bits, a.unit, a.decay, a.row_len, a.rows_end)
            print(f"bound, best center per joint feature bin ({bins:,} bins, chosen in-sample): {joint:,} misread ({joint / n:.2e})")
            for k, v in genie.items():
                print(f"bound, genie center {k} x sign(true sum): {v:,} misread ({v / n:.2e})")


if __name__ == "__main__":
    main()
