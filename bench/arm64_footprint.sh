#!/usr/bin/env bash
# The arm64 agent's footprint for docs/benchmarks.md (issue 16): stripped size,
# peak RSS for one round of the MLP under qemu-aarch64 beside the x86-64 agent
# in the same run set-up, and idle wake-ups (context switches per second of a
# connected agent waiting for a round).
#   bench/arm64_footprint.sh BUILD_DIR ARM64_BUILD_DIR [IDLE_SECONDS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../tests/packaging/fleet.sh
source "$here/tests/packaging/fleet.sh"
build=$1 arm_build=$2 idle_s=${3:-60}
coord=$build/coordinator/frugal-coordinator x86=$build/client/frugal-client arm=$arm_build/client/frugal-client
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

aarch64-linux-gnu-strip -o "$work/arm" "$arm"
strip -o "$work/x86" "$x86"
echo "stripped bytes: arm64 $(stat -c %s "$work/arm"), x86-64 $(stat -c %s "$work/x86")"

make_ca "$coord" "$work/ca" 2
keys=('run_id="footprint"' rounds=1 'model="mlp"' round.clients_per_round=2 round.min_clients=2 train.epochs=1 eval.examples=1000)
for side in x86 arm; do
  if [ $side = arm ]; then cmd="qemu-aarch64 $arm"; else cmd=$x86; fi
  run_fleet "$work/rss-$side" "$work/ca" "$coord run" "/usr/bin/time -a -o $work/rss-$side.txt -f %M $cmd" 2 "${keys[@]}"
  echo "peak RSS KiB per client ($side): $(tr '\n' ' ' <"$work/rss-$side.txt")"
done

# Idle: one agent connected, the coordinator waiting for a second one.
wakeups() {  # PID: voluntary + involuntary context switches of all its threads
  cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'
}
for side in x86 arm; do
  if [ $side = arm ]; then cmd="qemu-aarch64 $arm"; else cmd=$x86; fi
  out=$work/idle-$side; mkdir -p "$out"
  "$coord" run --set service.port=0 --set "service.port_file=\"$out/port\"" --set service.status_port=0 \
    --set "service.ca_cert=\"$work/ca/ca.crt\"" --set "service.server_cert=\"$work/ca/server.crt\"" \
    --set "service.server_key=\"$work/ca/server.key\"" --set "service.store=\"$out/c.db\"" \
    --set "service.out_dir=\"$out/run\"" --set 'run_id="idle"' --set round.min_clients=2 >"$out/c.log" 2>&1 &
  cpid=$!
  while [ ! -s "$out/port" ]; do sleep 0.1; done
  # shellcheck disable=SC2086
  $cmd -i --set 'name="device-0"' --set "coordinator.port_file=\"$out/port\"" --set "tls.ca_cert=\"$work/ca/ca.crt\"" \
    --set "tls.cert=\"$work/ca/clients/device-0.crt\"" --set "tls.key=\"$work/ca/clients/device-0.key\"" \
    --set "state_dir=\"$out/s\"" --set data.clients=20 >"$out/k.log" 2>&1 &
  kpid=$!
  until grep -q "registered as client" "$out/k.log"; do sleep 0.2; done
  sleep 5
  a=$(wakeups $kpid); sleep "$idle_s"; b=$(wakeups $kpid)
  echo "idle context switches per second ($side, over ${idle_s} s): $(awk -v a="$a" -v b="$b" -v s="$idle_s" 'BEGIN {printf "%.2f", (b - a) / s}')"
  kill $kpid $cpid; wait $kpid $cpid 2>/dev/null || true
done
