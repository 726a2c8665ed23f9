#!/usr/bin/env bash
# The arm64 agent against the x86-64 coordinator (issue 16, part 1): two
# frugal-client processes cross-compiled for aarch64 (the `arm64` preset) run
# under qemu-aarch64 for four rounds over mutual TLS, and everything the
# coordinator stored (every round's accuracy, loss and bytes, every model
# version's CRC-32) must equal a run with the x86-64 agents, same CA, same keys.
# Why this holds for the logistic-regression run but not for the MLP:
# docs/operations.md, "Running the agent on a Pi or a phone".
#   arm64_e2e.sh COORDINATOR_BIN X86_CLIENT_BIN ARM64_CLIENT_BIN
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=fleet.sh
source "$here/fleet.sh"
coord=$1 x86_client=$2 arm_client=$3

command -v qemu-aarch64 >/dev/null || fail "qemu-aarch64 is missing: scripts/setup.sh installs qemu-user"
command -v sqlite3 >/dev/null || fail "sqlite3 is missing: scripts/setup.sh installs it"
[ -x "$arm_client" ] || fail "no arm64 agent at $arm_client: cmake --preset arm64 && cmake --build --preset arm64"
# e_machine (ELF offset 18) is 183 = EM_AARCH64: the agent under test really is an arm64 binary.
machine=$(od -An -t u2 -j 18 -N 2 "$arm_client" | tr -d ' ')
[ "$machine" = 183 ] || fail "$arm_client is not an aarch64 ELF (e_machine $machine)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
make_ca "$coord" "$work/ca" 2
# Logistic regression, Frugal pipeline (ternary top-k both ways), 4 rounds of both clients.
run_keys=('run_id="arm64-e2e"' rounds=4 'model="logreg"' round.clients_per_round=2 round.min_clients=2
          train.epochs=1 eval.examples=2000)
run_fleet "$work/x86" "$work/ca" "$coord run" "$x86_client" 2 "${run_keys[@]}"
run_fleet "$work/arm64" "$work/ca" "$coord run" "qemu-aarch64 $arm_client" 2 "${run_keys[@]}"

x86=$(store_digest "$work/x86")
arm=$(store_digest "$work/arm64")
echo "x86-64 agents:"; echo "$x86"
# Not vacuous: four rounds, each applied with both clients' updates.
[ "$(sqlite3 -readonly "$work/arm64/coordinator.db" "SELECT count(*) FROM rounds WHERE applied = 1 AND completed = 2")" = 4 ] ||
  fail "the arm64 run did not apply four rounds of two updates"
if [ "$x86" != "$arm" ]; then
  diff <(echo "$x86") <(echo "$arm") >&2 || true
  fail "the arm64 agents' run differs from the x86-64 agents' run (above: < x86-64, > arm64)"
fi
echo "arm64 agents under qemu-aarch64: identical rounds and model versions"
