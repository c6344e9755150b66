#!/usr/bin/env bash
# Where an idle connection's memory goes: starts ledgermqd (the idle-conns
# configuration of bench/run.sh) on a free loopback port, opens N idle
# MQTT 3.1.1 connections with lmqbench, and prints the RSS growth per
# connection and glibc's malloc_stats (called through gdb) before and after:
# "system bytes" minus "in use bytes" of arena 0 is what fragmentation
# costs. Usage: bash bench/idle_heap.sh BUILD_DIR [N=10000]. Needs gdb.
# See docs/BENCHMARKS.md, "Idle connections".
set -u -o pipefail

BUILD_DIR=$(cd "${1:?usage: bench/idle_heap.sh BUILD_DIR [N]}" && pwd) || exit 1
N=${2:-10000}
command -v gdb >/dev/null || { echo "idle_heap: needs gdb" >&2; exit 1; }
TMP=$(mktemp -d)
BROKER_PID="" GEN_PID=""
cleanup() {
  [ -n "$GEN_PID" ] && kill "$GEN_PID" 2>/dev/null && wait "$GEN_PID" 2>/dev/null
  [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

port=
for _ in $(seq 1 200); do
  p=$((20000 + RANDOM % 12000))
  if [ -z "$(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null)" ]; then port=$p; break; fi
done
[ -n "$port" ] || { echo "idle_heap: no free port" >&2; exit 1; }

cat >"$TMP/c.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
log_level warning
max_connections 1000000
max_keepalive 65535
max_inflight_messages 100
max_queued_messages 1000000
max_queued_bytes 0
EOF
"$BUILD_DIR/ledgermqd" -c "$TMP/c.conf" -d "$TMP/data" >"$TMP/log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 50); do
  [ -n "$(ss -Htln "( sport = :$port )" 2>/dev/null)" ] && break
  sleep 0.1
done

rss() { awk '/^VmRSS/{print $2}' "/proc/$BROKER_PID/status"; }
stats() { # label: malloc_stats writes to the broker's stderr (its log)
  local lines
  lines=$(wc -l <"$TMP/log")
  gdb -p "$BROKER_PID" -batch -ex "call (void)malloc_stats()" >/dev/null 2>&1
  echo "malloc_stats $1:"
  tail -n +"$((lines + 1))" "$TMP/log" |
    awk '/^Arena 0:/{a=1} a&&/system bytes|in use bytes/{print "  arena 0 " $0; n++} n==2{exit}'
}

r0=$(rss)
stats "before"
"$BUILD_DIR/lmqbench" --port "$port" --idle "$N" --hold 60 >"$TMP/gen" 2>&1 &
GEN_PID=$!
for _ in $(seq 1 300); do
  grep -q '^IDLE_READY' "$TMP/gen" && break
  kill -0 "$GEN_PID" 2>/dev/null || break
  sleep 0.2
done
grep '^IDLE_READY' "$TMP/gen" || { echo "idle_heap: lmqbench did not connect:" >&2; cat "$TMP/gen" >&2; exit 1; }
sleep 2
r1=$(rss)
stats "with $N connections"
awk -v a="$r0" -v b="$r1" -v n="$N" \
  'BEGIN{printf "RSS %d -> %d KiB: %.1f bytes per connection\n", a, b, (b-a)*1024/n}'
