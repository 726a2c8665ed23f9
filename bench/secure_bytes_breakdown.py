#!/usr/bin/env python3
"""Per-participation bytes of a secure run, by part, from the DIAG lines that
bench/secure_bytes_diag.patch makes frugal-sim print (docs/benchmarks.md,
"Seventeenth session"), over rounds 1..LAST_ROUND (default: all).
  usage: bench/secure_bytes_breakdown.py RUN.log [LAST_ROUND]"""
import math, re, sys
from collections import defaultdict

log = sys.argv[1]
last = int(sys.argv[2]) if len(sys.argv) > 2 else 10**9
kv = lambda line: {k: v for k, v in re.findall(r"(\w+)=([-\w.]+)", line)}
up = defaultdict(int); down = defaultdict(int); up_n = defaultdict(int); down_n = defaultdict(int)
parts = []; steps = []; guide = {}
for line in open(log):
    if line.startswith("DIAGMSG"):
        d = kv(line); r = int(d["round"])
        if r > last: continue
        st = int(d["stage"]); b = int(d["bytes"])
        if " up " in line: up[st] += b; up_n[st] += 1
        else: down[st] += b; down_n[st] += 1
    elif line.startswith("DIAGDOWN"):
        d = kv(line)
        if int(d["round"]) <= last: parts.append({k: float(v) if "." in v else int(v) for k, v in d.items()})
    elif line.startswith("DIAGSTEP"):
        d = kv(line)
        if int(d["round"]) <= last: steps.append({k: float(v) if "." in v else int(v) for k, v in d.items()})
    elif line.startswith("DIAGGUIDE"):
        d = kv(line); guide[int(d["round"])] = int(d["bytes"])
n = len(parts)
print(f"participations: {n} (rounds <= {last})")
names_up = {1: "advertise keys", 2: "share keys (sealed shares)", 3: "masked input", 4: "survivor signature", 5: "unmask response"}
names_down = {1: "key directory", 2: "share inbox", 3: "survivor list", 4: "survivor signatures (t)"}
for st in sorted(up): print(f"  up   stage {st} {names_up.get(st, '?'):28s} {up[st] / up_n[st]:9.1f} B per message, {up_n[st]} messages")
for st in sorted(down): print(f"  down stage {st} {names_down.get(st, '?'):28s} {down[st] / down_n[st]:9.1f} B per message, {down_n[st]} messages")
g = [guide.get(p["round"], 0) for p in parts]
print(f"  guide: {sum(g) / n:.1f} B per participation")
kinds = defaultdict(int)
for p in parts: kinds[p["kind"]] += 1
print(f"  payload kinds: {dict(kinds)} (1 full, 2 chain, 3 merged)")
tot = lambda k, pp=parts: sum(p[k] for p in pp)
print(f"  model payload: {tot('payload') / n:.1f} B per participation")
m = [p for p in parts if p["kind"] == 3]
if m:
    framing = sum(p["payload"] - p["piece"] for p in m) + 24 * len(m) + 9 * len(m)
    print(f"  merged ({len(m)}): steps {tot('steps', m) / len(m):.2f}, union {tot('union', m) / len(m):.0f}, "
          f"entries {tot('entries', m) / len(m):.0f}; per merged payload: index {tot('index', m) / len(m):.1f} B, "
          f"levels {tot('levels', m) / len(m):.1f} B, symbols {tot('symbols', m) / len(m):.1f} B, "
          f"framing (model payload + frame header + fixed) {framing / len(m):.1f} B")
    print(f"    bits per entry: index {8 * tot('index', m) / tot('entries', m):.2f}, symbols {8 * tot('symbols', m) / tot('entries', m):.2f}, "
          f"all {8 * tot('piece', m) / tot('entries', m):.2f}; uniform bound log2 C(dim,k) per step {tot('bits_uniform', m) / tot('entries', m):.2f}, "
          f"given the rounds' supports {tot('bits_cond', m) / tot('entries', m):.2f}")
    print(f"    entries on their round's support: {tot('in_support', m) / tot('entries', m):.3f}")
    print(f"    version 2 of the same steps: {tot('v2piece', m) / len(m):.1f} B against {tot('piece', m) / len(m):.1f} B "
          f"({100 * (1 - tot('v2piece', m) / tot('piece', m)):.2f}% of the piece, {(tot('piece', m) - tot('v2piece', m)) / n:.1f} B per participation)")
    long_chain = [p for p in parts if p["kind"] in (2, 3) and p["to"] - p["held"] >= 20]
    print(f"  chains of >= 20 steps (guide derivable from them alone): {len(long_chain)} of {n}; guide bytes there {sum(guide.get(p['round'], 0) for p in long_chain) / n:.1f} B per participation")
c = [p for p in parts if p["kind"] == 2]
if c: print(f"  plain chains ({len(c)}): {tot('steps', c) / len(c):.2f} steps, {tot('payload', c) / len(c):.1f} B")
if steps:
    k = tot("k", steps)
    print(f"steps: {len(steps)}, k {k / len(steps):.0f}, frame {tot('frame', steps) / len(steps):.1f} B")
    print(f"  on the round's support {tot('in_support', steps) / k:.3f} (support {steps[-1]['support']} of dim, guided {steps[-1]['guided']}), "
          f"on its guided part {tot('in_guided', steps) / k:.3f}, rand-k part {(tot('in_support', steps) - tot('in_guided', steps)) / k:.3f}; "
          f"in the next round's guide {tot('in_next_guide', steps) / k:.3f}")
    print(f"  bits per entry: frame {8 * tot('frame', steps) / k:.2f}; positions, uniform bound {tot('bits_uniform', steps) / k:.2f}, "
          f"given the support {tot('bits_cond', steps) / k:.2f}")
    adj = tot("adjacent", steps); same = tot("adjacent_same_sign", steps)
    ps = same / adj if adj else 0
    h = lambda p: 0 if p in (0, 1) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    print(f"  entries whose index - 1 is in the step: {adj / k:.3f}; same sign there {ps:.3f} (H = {h(ps):.3f} bit); positive {tot('positive', steps) / k:.3f}")
