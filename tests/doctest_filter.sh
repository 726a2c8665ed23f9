#!/usr/bin/env bash
# Runs a doctest executable with name filters, and fails when the filters
# select no test case: doctest exits 0 when nothing matches, so a renamed case
# would otherwise turn its ctest entry into a silent pass.
#   usage: doctest_filter.sh TEST_EXECUTABLE DOCTEST_ARGS...
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 TEST_EXECUTABLE DOCTEST_ARGS..." >&2
  exit 2
fi
exe=$1
shift
listing=$("$exe" "$@" --count --no-colors=true)
count=$(sed -n 's/.*passing the current filters: *\([0-9][0-9]*\).*/\1/p' <<<"$listing")
if [ -z "$count" ]; then
  echo "doctest_filter: cannot read the number of matching test cases from $exe --count:" >&2
  echo "$listing" >&2
  exit 1
fi
if [ "$count" -eq 0 ]; then
  echo "doctest_filter: $* selects no test case of $exe (renamed or removed?)" >&2
  exit 1
fi
echo "doctest_filter: $count test cases of $(basename "$exe") match $*"
# exec, so a ctest timeout stops the test itself.
exec "$exe" "$@"
