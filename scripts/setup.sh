#!/usr/bin/env bash
# Installs every Debian package Frugal needs. Idempotent: when everything is
# present it only runs dpkg-query and returns in well under a second.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libboost-dev libboost-system-dev libssl-dev openssl
  libprotobuf-dev protobuf-compiler
  libeigen3-dev libsqlite3-dev sqlite3 zlib1g-dev libzstd-dev
  doctest-dev libtomlplusplus-dev libcli11-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev
  libopenmpi-dev openmpi-bin
  clang-14 libclang-rt-14-dev
  dataset-fashion-mnist
  chromium  # headless, for the dashboard's browser test (tests/browser/)
  python3-sklearn  # only for its data files: the second real data set (sim/scenarios/data/sklearn-*.toml)
  # issue 16: the arm64 cross build of frugal-client, the agent under
  # user-mode QEMU, and the package test (dpkg-deb, systemd-analyze)
  crossbuild-essential-arm64 qemu-user systemd file   # file: CPack reads ELF types with it
  libssl-dev:arm64 libprotobuf-dev:arm64 zlib1g-dev:arm64 libzstd-dev:arm64 libspdlog-dev:arm64
  libfmt-dev:arm64 libtomlplusplus-dev:arm64 libboost-dev:arm64 libsqlite3-dev:arm64
)

# The :arm64 -dev packages come through multiarch (they install beside the
# host's; headers are shared, libraries go to /usr/lib/aarch64-linux-gnu).
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "setup: dpkg --add-architecture arm64"
  if [ "$(id -u)" -ne 0 ]; then sudo dpkg --add-architecture arm64; else dpkg --add-architecture arm64; fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---------------------------------------------------------------------------
# npm: front-end assets that report.html inlines at build time (the uPlot chart
# library, pinned in package.json / package-lock.json at the repository root),
# and playwright-core, which drives the chromium above in the browser test.
# Cheap when node_modules/ is current: one `command -v` and two file tests.
# ---------------------------------------------------------------------------
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs npm"
  NPM_SUDO=""
  if [ "$(id -u)" -ne 0 ]; then NPM_SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $NPM_SUDO apt-get update -qq
  $NPM_SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi

# npm writes node_modules/.package-lock.json on every install, so a lock file
# newer than it means the pin changed since node_modules/ was filled.
if [ ! -f "$REPO_ROOT/node_modules/uplot/dist/uPlot.iife.min.js" ] ||
   [ ! -f "$REPO_ROOT/node_modules/playwright-core/package.json" ] ||
   [ ! -f "$REPO_ROOT/node_modules/.package-lock.json" ] ||
   [ "$REPO_ROOT/package-lock.json" -nt "$REPO_ROOT/node_modules/.package-lock.json" ]; then
  echo "setup: npm ci (report assets)"
  (cd "$REPO_ROOT" && npm ci --no-audit --no-fund)
fi
