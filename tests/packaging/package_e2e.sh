#!/usr/bin/env bash
# The amd64 packages (issue 16, part 2): scripts/package.sh packages a built
# tree, `dpkg -x` unpacks both .debs into a scratch root, and the test checks
# what they hold (binaries, systemd units that pass systemd-analyze with their
# hardening, /etc/frugal conffiles), then starts the unpacked binaries with the
# unpacked configuration files and checks they run two rounds.
#   package_e2e.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=fleet.sh
source "$here/fleet.sh"
src=$1 build=$2
for tool in dpkg-deb sqlite3 systemd-analyze; do
  command -v "$tool" >/dev/null || fail "$tool is missing: scripts/setup.sh installs it"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bash "$src/scripts/package.sh" --build-dir "$build" --out "$work/debs" || fail "scripts/package.sh --build-dir $build"
root=$work/root
mkdir -p "$root"
for pkg in frugal-client frugal-coordinator; do
  deb=$(ls "$work/debs/${pkg}"_*_amd64.deb 2>/dev/null) || fail "no ${pkg}_*_amd64.deb in $(ls "$work/debs")"
  info=$(dpkg-deb -I "$deb")
  grep -q "^ Package: $pkg$" <<<"$info" || fail "$deb: Package is not $pkg"
  grep -q "^ Depends: .*libssl3" <<<"$info" || fail "$deb: Depends does not list libssl3 (dpkg-shlibdeps)"
  [ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = \
    "/etc/frugal/${pkg#frugal-}.toml" ] || fail "$deb: conffiles is not /etc/frugal/${pkg#frugal-}.toml"
  dpkg -x "$deb" "$root" || fail "dpkg -x $deb"
  for f in usr/bin/$pkg usr/lib/systemd/system/$pkg.service etc/frugal/${pkg#frugal-}.toml \
           usr/share/doc/$pkg/examples/${pkg#frugal-}.toml usr/share/doc/$pkg/README.md; do
    [ -e "$root/$f" ] || fail "$deb does not install /$f"
  done
  unit=$root/usr/lib/systemd/system/$pkg.service
  for key in DynamicUser=yes "StateDirectory=frugal/${pkg#frugal-}" NoNewPrivileges=yes ProtectSystem=strict \
             ProtectHome=yes PrivateTmp=yes "SystemCallFilter=@system-service" "ExecStart=/usr/bin/$pkg "; do
    grep -q "^$key" "$unit" || fail "$pkg.service lacks $key"
  done
  # The unit's binary lives in the scratch root, not in /usr/bin: that is the
  # one complaint verify may make.
  verify=$(SYSTEMD_LOG_LEVEL=info systemd-analyze verify "$unit" 2>&1 |
           grep -v "Command /usr/bin/$pkg is not executable" || true)
  [ -z "$verify" ] || fail "systemd-analyze verify $pkg.service: $verify"
  # Exposure 0 (locked down) .. 10 (unprotected); "OK" ends at 2.0 in systemd 252.
  systemd-analyze security --offline=yes --threshold=20 "$unit" >"$work/security-$pkg.txt" 2>&1 ||
    { tail -3 "$work/security-$pkg.txt" >&2; fail "$pkg.service: systemd-analyze security exposure above 2.0"; }
  echo "$pkg: $(tail -1 "$work/security-$pkg.txt")"
  # Every option --help lists is documented in docs/operations.md.
  "$root/usr/bin/$pkg" --help >"$work/help.txt" || fail "$pkg --help from the unpacked package"
  while read -r opt; do
    grep -q -- "$opt" "$src/docs/operations.md" || fail "$pkg --help lists $opt, which docs/operations.md does not document"
  done < <(grep -o -- '--[a-z][a-z-]*' "$work/help.txt" | sort -u)
done

# The unpacked binaries, with the unpacked /etc/frugal files, run two rounds.
coord=$root/usr/bin/frugal-coordinator
make_ca "$coord" "$work/ca" 2
run_fleet "$work/run" "$work/ca" "$coord run --config $root/etc/frugal/coordinator.toml" \
  "$root/usr/bin/frugal-client --config $root/etc/frugal/client.toml" 2 \
  'run_id="package-e2e"' rounds=2 'model="logreg"' round.clients_per_round=2 round.min_clients=2 \
  train.epochs=1 eval.examples=2000
applied=$(sqlite3 -readonly "$work/run/coordinator.db" "SELECT count(*) FROM rounds WHERE applied = 1 AND completed = 2")
[ "$applied" = 2 ] || fail "the packaged binaries applied $applied rounds of two updates, not 2"
[ -s "$work/run/run/rounds.csv" ] || fail "the packaged coordinator wrote no rounds.csv"
echo "packaged frugal-coordinator and frugal-client ran 2 rounds from $root"
