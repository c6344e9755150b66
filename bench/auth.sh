#!/usr/bin/env bash
# Connect-with-token benchmark (issue 5 target: >= 5k connections/s): a
# fresh data dir with one registered device (ledgermq operator keygen,
# device keygen, device register), ledgermqd with `auth token` and
# allow_anonymous false on a free loopback port, then BUILD_DIR/auth_bench
# opening AUTH_COUNT (20000) connections, AUTH_PARALLEL (64) in flight, each
# with a fresh CWT token. Usage: bash bench/auth.sh BUILD_DIR
set -u -o pipefail
BUILD_DIR=${1:?usage: bench/auth.sh BUILD_DIR}
BUILD_DIR=$(cd "$BUILD_DIR" && pwd) || exit 1
COUNT=${AUTH_COUNT:-20000}
PAR=${AUTH_PARALLEL:-64}
TMP=$(mktemp -d /tmp/authbench.XXXXXX)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
CLI=$BUILD_DIR/ledgermq
vkey=$("$CLI" operator keygen --out "$TMP/op.key" --name bench) || exit 1
"$CLI" device keygen --out "$TMP/dev.key" >/dev/null || exit 1
"$CLI" -d "$TMP/data" device register --operator-key "$TMP/op.key" --key "$TMP/dev.key" \
  --name bench-meter >/dev/null || exit 1
port=$((20000 + RANDOM % 12000))
cat >"$TMP/ledgermq.conf" <<CONF
data_dir $TMP/data
log_level notice
operator_key $vkey
max_connections 100000
listener $port 127.0.0.1
allow_anonymous false
auth token
CONF
"$BUILD_DIR/ledgermqd" -c "$TMP/ledgermq.conf" >"$TMP/ledgermqd.log" 2>&1 &
PID=$!
for _ in $(seq 1 50); do
  grep -q "running" "$TMP/ledgermqd.log" && break
  sleep 0.2
done
echo "auth: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1), load $(cut -d' ' -f1 /proc/loadavg)"
"$BUILD_DIR/auth_bench" --port "$port" --key "$TMP/dev.key" --count "$COUNT" --parallel "$PAR"
rc=$?
[ $rc -ne 0 ] && tail -5 "$TMP/ledgermqd.log"
exit $rc
