#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for a bounded time on a copy of its seed
# corpus (tests/fuzz/corpus/<target>), and exits non-zero if any target crashes,
# leaks, times out or runs out of memory. Reproducers go to BUILD_DIR/fuzz-artifacts/.
#   usage: tests/fuzz/run_fuzzers.sh BUILD_DIR     (FUZZ_SECONDS=10 per target by default,
#          JOBS targets at a time, default nproc)
set -euo pipefail

targets=(fuzz_uplink_decode fuzz_downlink_decode fuzz_merged_steps fuzz_rice_decode fuzz_envelope_decode fuzz_model_payload fuzz_shape_change fuzz_zero_set fuzz_trigger_state fuzz_rounds_csv fuzz_clients_csv fuzz_energy_profiles fuzz_grid_csv fuzz_data_files fuzz_secagg_share fuzz_secagg_messages fuzz_table fuzz_battery_gauge fuzz_layer_list fuzz_status_request)
if [ "${1:-}" = "--list" ]; then
  echo "${targets[*]}"
  exit 0
fi
if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR   |   $0 --list" >&2
  exit 2
fi
build=$1
seconds=${FUZZ_SECONDS:-10}
here=$(cd "$(dirname "$0")" && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"

# One target's run; its exit status says whether it crashed, leaked, timed out
# or ran out of memory. Output goes to its log, printed in list order below.
run_one() {
  local t=$1 exe="$build/tests/fuzz/$1" corpus="$work/$1"
  if [ ! -x "$exe" ]; then
    echo "run_fuzzers: $exe not found; build it with: cmake --preset fuzz && cmake --build build/fuzz" >"$work/$t.log"
    return 3
  fi
  mkdir -p "$corpus"
  if [ -d "$here/corpus/$t" ]; then cp "$here/corpus/$t"/* "$corpus"/; fi
  echo "seeds: $(ls "$corpus" | wc -l)" >"$work/$t.seeds"
  "$exe" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
    -artifact_prefix="$artifacts/$t-" -print_final_stats=1 "$corpus" >"$work/$t.log" 2>&1
}

# JOBS targets at a time (default: one per core): each is single-threaded, so
# the stage takes about targets/JOBS x seconds instead of targets x seconds.
jobs_max=${JOBS:-$(nproc)}
declare -A pid_of
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  run_one "$t" &
  pid_of[$t]=$!
done

failed=()
for t in "${targets[@]}"; do
  status=0
  wait "${pid_of[$t]}" || status=$?
  if [ "$status" -eq 3 ]; then
    cat "$work/$t.log" >&2
    failed+=("$t (missing)")
  elif [ "$status" -eq 0 ]; then
    echo "== $t: ${seconds}s on $(sed 's/^seeds: //' "$work/$t.seeds") seeds"
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$work/$t.log" | sed 's/^/   /' || true
    echo "   corpus grew to $(ls "$work/$t" | wc -l) inputs"
  else
    echo "!! $t failed (exit $status); last lines of its log:" >&2
    tail -n 40 "$work/$t.log" >&2
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "run_fuzzers: FAILED: ${failed[*]} (reproducers in $artifacts)" >&2
  exit 1
fi
echo "run_fuzzers: all ${#targets[@]} targets ran ${seconds}s each without a crash"
