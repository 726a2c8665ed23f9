#!/usr/bin/env bash
# SecAgg+ protocol cost at 100, 1,000 and 10,000 clients per round (5% corrupt /
# 33% dropout graph parameters), 0% and 33% of the clients dropped before their
# masked input; the masked vector is a 2% support of the 2NN (3,984 entries) in
# a 16-bit ring. Prints one JSON line per case (docs/benchmarks.md, "Secure
# aggregation"). Single-threaded; CPU times from the thread CPU clock.
#   usage: bench/secagg_cost.sh BUILD_DIR [extra frugal-secagg-cost flags, e.g. --identity ca --dropped 0.33]
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR}
shift
exec nice "$build/bench/frugal-secagg-cost" --length 3984 --bits 16 --clients 100,1000,10000 "$@"
