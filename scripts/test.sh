#!/usr/bin/env bash
# Command (b) of the README: installs what is missing, builds, runs every test.
#   1. release build, the arm64 cross build of frugal-client, every ctest suite
#   2. the parsing, networking and store suites again under AddressSanitizer + UBSan
#      (clang-14), in one tree with the libFuzzer targets
#   3. each libFuzzer target of that tree for a bounded time
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

bash scripts/setup.sh

echo "== release build and tests (at ${SECONDS}s)"
cmake --preset release >/dev/null
cmake --build build/release -j "$JOBS"
# frugal-client cross-compiled for aarch64 (only that target: no tests, sim or
# coordinator); ctest's arm64_qemu_e2e runs it under qemu-aarch64, and
# package_amd64_e2e packages and unpacks the release build (issue 16).
echo "== arm64 cross build of frugal-client (at ${SECONDS}s)"
cmake --preset arm64 >/dev/null
cmake --build --preset arm64 -j "$JOBS"
echo "== every ctest suite of the release build (at ${SECONDS}s)"
ctest --test-dir build/release --output-on-failure -j "$JOBS"

echo "== sanitizer build (clang-14, asan+ubsan) of the suites that parse outside bytes, network, fork, threads or hand-written kernels, and of the libFuzzer targets (at ${SECONDS}s)"
# One sanitized tree serves both: the fuzz targets and the suites link the same
# ASan + UBSan core (with libFuzzer's coverage instrumentation), so CI compiles
# the core sanitized once, not twice. test_train stays out: its accuracy tests
# take about 100 s under ASan on 2 cores.
ASAN_SUITES=(test_core test_data test_codec test_energy test_round test_report test_service test_coordinator
             test_model test_sim test_proto test_client test_privacy test_privacy_dp)
cmake --preset asan >/dev/null
# shellcheck disable=SC2046
cmake --build build/asan -j "$JOBS" --target "${ASAN_SUITES[@]}" $(tests/fuzz/run_fuzzers.sh --list)
ctest --test-dir build/asan --output-on-failure -j "$JOBS" -R "^($(IFS='|'; echo "${ASAN_SUITES[*]}"))\$"

echo "== fuzzing (libFuzzer, clang-14) (at ${SECONDS}s)"
tests/fuzz/run_fuzzers.sh build/asan
echo "== all tests passed (at ${SECONDS}s)"
