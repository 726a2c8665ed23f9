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

# Every file the packaged client.toml names under /run/credentials/ is one the
# unit loads (LoadCredential=), and the identity credential (tls.identity, or
# its default beside tls.cert) is one the service can read: without that a
# packaged agent cannot take part in a secure.identity = "ca" round.
python3 - "$root/etc/frugal/client.toml" "$root/usr/lib/systemd/system/frugal-client.service" <<'PY' ||
import re, sys, tomllib
conf = tomllib.load(open(sys.argv[1], "rb"))
unit = open(sys.argv[2]).read()
loaded = set(re.findall(r"^LoadCredential=([^:\n]+):", unit, re.M))
creds = "/run/credentials/frugal-client.service/"
tls = conf.get("tls", {})
identity = tls.get("identity") or re.sub(r"\.crt$", "", tls["cert"]) + ".idc"
for key, path in [("tls.ca_cert", tls["ca_cert"]), ("tls.cert", tls["cert"]), ("tls.key", tls["key"]),
                  ("tls.identity", identity)]:
    if path.startswith(creds):
        if path[len(creds):] not in loaded:
            sys.exit(f"{key} = {path}: the unit has no LoadCredential={path[len(creds):]}:...")
    elif not (key == "tls.identity" and path.startswith("/etc/frugal/")):
        sys.exit(f"{key} = {path}: neither a credential of the unit nor a file under /etc/frugal")
print("client.toml's TLS files and identity are readable by the service:", identity)
PY
  fail "the packaged client.toml names a file the frugal-client unit does not give the service"
identity=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["tls"]["identity"])' \
  "$root/etc/frugal/client.toml")

# The unpacked binaries, with the unpacked /etc/frugal files, run two rounds.
coord=$root/usr/bin/frugal-coordinator
make_ca "$coord" "$work/ca" 2

# The packaged agent with secure.require_identity = true reads the credential
# where the packaged configuration says (under the scratch root): without the
# file it refuses to start (exit 2, naming tls.identity); with device-0's
# .idc there it gets past its set-up to connecting (exit 5 after one refused
# attempt: nothing listens on port 1).
agent_with_identity() {
  "$root/usr/bin/frugal-client" --config "$root/etc/frugal/client.toml" --set 'name="device-0"' \
    --set "tls.ca_cert=\"$work/ca/ca.crt\"" --set "tls.cert=\"$work/ca/clients/device-0.crt\"" \
    --set "tls.key=\"$work/ca/clients/device-0.key\"" --set "tls.identity=\"$root$identity\"" \
    --set secure.require_identity=true --set "state_dir=\"$work/id-state\"" --set 'coordinator.host="127.0.0.1"' \
    --set coordinator.port=1 --set connection.max_attempts=1 --set connection.backoff_initial_s=0.1 \
    --set data.clients=20 >"$work/identity.log" 2>&1
}
rm -f "$root$identity"
rc=0; agent_with_identity || rc=$?
{ [ "$rc" = 2 ] && grep -q "tls.identity" "$work/identity.log"; } ||
  { cat "$work/identity.log" >&2; fail "the packaged agent without $identity exited $rc, not 2 naming tls.identity"; }
cp "$work/ca/clients/device-0.idc" "$root$identity"
rc=0; agent_with_identity || rc=$?
[ "$rc" = 5 ] || { cat "$work/identity.log" >&2; fail "the packaged agent with $identity exited $rc, not 5 (gave up connecting)"; }
echo "packaged frugal-client loads its identity credential from $identity"
run_fleet "$work/run" "$work/ca" "$coord run --config $root/etc/frugal/coordinator.toml" \
  "$root/usr/bin/frugal-client --config $root/etc/frugal/client.toml" 2 \
  'run_id="package-e2e"' rounds=2 'model="logreg"' round.clients_per_round=2 round.min_clients=2 \
  train.epochs=1 eval.examples=2000
applied=$(sqlite3 -readonly "$work/run/coordinator.db" "SELECT count(*) FROM rounds WHERE applied = 1 AND completed = 2")
[ "$applied" = 2 ] || fail "the packaged binaries applied $applied rounds of two updates, not 2"
[ -s "$work/run/run/rounds.csv" ] || fail "the packaged coordinator wrote no rounds.csv"
echo "packaged frugal-coordinator and frugal-client ran 2 rounds from $root"
