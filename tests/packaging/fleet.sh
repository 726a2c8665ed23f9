# Sourced by the packaging e2e tests: a CA, a coordinator and its clients as
# real processes on loopback over mutual TLS, in one scratch directory.
# Every failure names what went wrong and exits non-zero.

fail() { echo "FAIL: $*" >&2; exit 1; }

# make_ca COORDINATOR_BIN DIR N: a CA with a server certificate and clients device-0..N-1.
make_ca() {
  "$1" ca init --dir "$2" >/dev/null || fail "ca init in $2"
  "$1" ca issue --dir "$2" --count "$3" --prefix device- >/dev/null || fail "ca issue in $2"
}

# run_fleet OUT CA COORDINATOR_RUN_CMD CLIENT_CMD N [coordinator --set ...] -- [client --set ...]
# COORDINATOR_RUN_CMD (e.g. "frugal-coordinator run") and CLIENT_CMD are command prefixes (space separated, e.g.
# "qemu-aarch64 build/arm64/client/frugal-client"). Runs the coordinator until
# it exits, then waits for the clients; all must exit 0.
run_fleet() {
  local out=$1 ca=$2 coord=$3 client=$4 n=$5
  shift 5
  local csets=() ksets=()
  while (($#)) && [ "$1" != "--" ]; do csets+=(--set "$1"); shift; done
  (($#)) && shift
  while (($#)); do ksets+=(--set "$1"); shift; done
  mkdir -p "$out"
  # shellcheck disable=SC2086
  timeout 900 $coord --set service.port=0 --set "service.port_file=\"$out/port\"" \
    --set service.status_port=0 --set "service.status_port_file=\"$out/status_port\"" \
    --set "service.ca_cert=\"$ca/ca.crt\"" --set "service.server_cert=\"$ca/server.crt\"" \
    --set "service.server_key=\"$ca/server.key\"" --set "service.store=\"$out/coordinator.db\"" \
    --set "service.out_dir=\"$out/run\"" --set service.listen_address=\"127.0.0.1\" "${csets[@]}" \
    >"$out/coordinator.log" 2>&1 &
  local coord_pid=$!
  local i
  for ((i = 0; i < 600; ++i)); do
    [ -s "$out/port" ] && break
    kill -0 "$coord_pid" 2>/dev/null || { cat "$out/coordinator.log" >&2; fail "the coordinator exited before listening"; }
    sleep 0.1
  done
  [ -s "$out/port" ] || fail "the coordinator wrote no port file"
  local pids=()
  for ((i = 0; i < n; ++i)); do
    # shellcheck disable=SC2086
    timeout 900 $client -i --set "name=\"device-$i\"" --set "coordinator.host=\"127.0.0.1\"" \
      --set "coordinator.port_file=\"$out/port\"" --set "tls.ca_cert=\"$ca/ca.crt\"" \
      --set "tls.cert=\"$ca/clients/device-$i.crt\"" --set "tls.key=\"$ca/clients/device-$i.key\"" \
      --set "state_dir=\"$out/state-$i\"" --set data.clients=20 --set data.index=$i --set data.seed=1 \
      --set connection.backoff_initial_s=0.2 --set connection.backoff_max_s=2 \
      --set connection.exit_on_run_complete=true "${ksets[@]}" >"$out/client-$i.log" 2>&1 &
    pids+=($!)
    # The coordinator numbers clients in the order they register and sums
    # updates in that order: register them one by one, so runs compare.
    local j
    for ((j = 0; j < 3000; ++j)); do
      grep -q "registered as client $((i + 1)) " "$out/client-$i.log" 2>/dev/null && break
      kill -0 "${pids[$i]}" 2>/dev/null || { cat "$out/client-$i.log" >&2; fail "client device-$i exited before registering"; }
      sleep 0.1
    done
    grep -q "registered as client $((i + 1)) " "$out/client-$i.log" || fail "client device-$i did not register as client $((i + 1))"
  done
  local rc=0
  wait "$coord_pid" || rc=$?
  ((rc == 0)) || { tail -30 "$out/coordinator.log" >&2; fail "the coordinator exited with $rc"; }
  for ((i = 0; i < n; ++i)); do
    rc=0
    wait "${pids[$i]}" || rc=$?
    ((rc == 0)) || { tail -30 "$out/client-$i.log" >&2; fail "client device-$i exited with $rc"; }
  done
}

# What a run left in its store, exactly: every round and every model version's CRC-32.
store_digest() {
  sqlite3 -readonly "$1/coordinator.db" \
    "SELECT round, applied, accuracy, loss, bytes_up, bytes_down, selected, completed FROM rounds ORDER BY round;
     SELECT version, round, model_crc, length(model) FROM model_versions ORDER BY version;" ||
    fail "cannot read $1/coordinator.db"
}
