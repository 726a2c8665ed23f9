#!/usr/bin/env bash
# Debian packages of frugal-client and frugal-coordinator, each with its
# systemd unit and example configuration (CPack; rules at the end of the
# top-level CMakeLists.txt), written to build/packages/.
#
#   scripts/package.sh [amd64|arm64|all]     (default: all)
#       amd64: the `portable` preset (no -march=native: the package runs on any x86-64)
#       arm64: the `arm64` preset (cross-compiled, scripts/toolchains/aarch64-linux-gnu.cmake)
#   scripts/package.sh --build-dir DIR [--out DIR]
#       packages an already configured build tree as it is (the package test
#       uses the release build; such packages are for testing, not shipping)
#
# Needs scripts/setup.sh's packages (crossbuild-essential-arm64 and the arm64
# -dev packages for arm64). docs/operations.md, "Packages".
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
OUT=build/packages
BUILD_DIR=""
ARCHES=()

while (($#)); do
  case "$1" in
    amd64|arm64) ARCHES+=("$1") ;;
    all) ARCHES+=(amd64 arm64) ;;
    --build-dir) BUILD_DIR=${2:?--build-dir needs a directory}; shift ;;
    --out) OUT=${2:?--out needs a directory}; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument '$1' (amd64, arm64, all, --build-dir DIR, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# Builds the two binaries in a configured tree and runs CPack on it.
package_tree() {
  local dir=$1
  cmake --build "$dir" -j "$JOBS" --target frugal-client frugal-coordinator
  local work
  work=$(mktemp -d)
  (cd "$dir" && cpack -B "$work" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log" >&2; rm -rf "$work"; exit 1; }
  local debs=("$work"/*.deb)
  [ -e "${debs[0]}" ] || { echo "package.sh: cpack wrote no .deb in $dir" >&2; exit 1; }
  mv "${debs[@]}" "$OUT/"
  rm -rf "$work"
  for d in "${debs[@]}"; do echo "package.sh: $OUT/$(basename "$d")"; done
}

if [ -n "$BUILD_DIR" ]; then
  ((${#ARCHES[@]} == 0)) || { echo "package.sh: give an architecture or --build-dir, not both" >&2; exit 2; }
  [ -f "$BUILD_DIR/CPackConfig.cmake" ] || { echo "package.sh: $BUILD_DIR is not a configured build tree" >&2; exit 2; }
  package_tree "$BUILD_DIR"
  exit 0
fi

((${#ARCHES[@]})) || ARCHES=(amd64 arm64)
for arch in "${ARCHES[@]}"; do
  case "$arch" in
    amd64) preset=portable ;;
    arm64) preset=arm64 ;;
  esac
  cmake --preset "$preset" >/dev/null
  package_tree "build/$preset"
done
