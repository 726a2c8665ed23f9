#!/usr/bin/env bash
# Cross-compiles int8_neon_check.cpp with the kernels for aarch64 twice (plain
# NEON; NEON with the dot-product extension) and runs both under
# qemu-aarch64: every NEON kernel must equal the reference loop. Exit 77
# (ctest: skipped) when the cross compiler or qemu is missing.
#   int8_neon_check.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=$1
work=$2
cxx=$(command -v aarch64-linux-gnu-g++ || true)
qemu=$(command -v qemu-aarch64 || true)
if [ -z "$cxx" ] || [ -z "$qemu" ]; then
  echo "aarch64-linux-gnu-g++ or qemu-aarch64 not installed (scripts/setup.sh installs both)"
  exit 77
fi
mkdir -p "$work"
flags=(-std=c++23 -O2 -Wall -Wextra -Wshadow -Werror -I"$src/common/include")
files=("$src/tests/model/int8_neon_check.cpp" "$src/common/model/int8_kernels.cpp")
"$cxx" "${flags[@]}" "${files[@]}" -o "$work/int8_check_neon"
"$cxx" "${flags[@]}" -march=armv8.2-a+dotprod "${files[@]}" -o "$work/int8_check_dotprod"
"$qemu" -L /usr/aarch64-linux-gnu "$work/int8_check_neon" --require neon
"$qemu" -L /usr/aarch64-linux-gnu "$work/int8_check_dotprod" --require neon-dotprod
