#!/usr/bin/env bash
# Broker benchmark: ledgermqd against Debian's mosquitto, same machine, same
# run, scenarios alternating between the two brokers. Usage:
#   bash bench/run.sh BUILD_DIR            (what `make bench` runs)
# Environment: BENCH_SECONDS (publish time per scenario and broker, 10),
# BENCH_NICE (e.g. -10: run brokers and generator at that nice level, as
# root, so that background jobs on a shared machine disturb them less),
# BENCH_IDLE_CONNS (10000), BENCH_SCENARIOS (space-separated subset of the
# names below), BENCH_OUT (table file, BUILD_DIR/bench-results.md).
# Each broker is started fresh for every scenario (so VmHWM is that
# scenario's peak) on a free loopback port and stopped afterwards, also on
# failure. A broker that is missing or does not answer CONNECT is shown as
# n/a. Needs: /usr/sbin/mosquitto, BUILD_DIR/lmqbench.
set -u -o pipefail

BUILD_DIR=${1:?usage: bench/run.sh BUILD_DIR}
BUILD_DIR=$(cd "$BUILD_DIR" && pwd) || exit 1
SECS=${BENCH_SECONDS:-10}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
OUT=${BENCH_OUT:-$BUILD_DIR/bench-results.md}
GEN=$BUILD_DIR/lmqbench
LMQD=$BUILD_DIR/ledgermqd
MOSQ=/usr/sbin/mosquitto
BROKERS="mosquitto ledgermq"
NICE=()
if [ -n "${BENCH_NICE:-}" ]; then
  # With the kernel's autogroup scheduling, nice only counts within a
  # session: run in a session of our own and give it the nice level too.
  if [ -z "${LMQ_BENCH_SESSION:-}" ] && command -v setsid >/dev/null; then
    LMQ_BENCH_SESSION=1 exec setsid --wait bash "$0" "$@"
  fi
  echo "$BENCH_NICE" >/proc/self/autogroup 2>/dev/null || echo "bench: could not renice the autogroup" >&2
  NICE=(nice -n "$BENCH_NICE")
fi

# name | lmqbench arguments
SCENARIOS=(
  "qos0-1to1|--qos 0 --pubs 1 --subs 1 --e2e-window 1000"
  "qos0-4to1|--qos 0 --pubs 4 --subs 1 --e2e-window 250"
  "qos1-1to1|--qos 1 --pubs 1 --subs 1 --window 100"
  "qos1-4to4|--qos 1 --pubs 4 --subs 4 --window 100 --topic lmqbench/t --filter lmqbench/t/+"
  "qos2-1to1|--qos 2 --pubs 1 --subs 1 --window 100"
  "qos1-1to1-10k|--qos 1 --pubs 1 --subs 1 --window 100 --rate 10000"
  "idle-conns|"
  # Transports (docs/TRANSPORTS.md): both brokers get the same listener,
  # TLS with a test certificate (no client certificates), or WebSocket.
  "tls-qos1-1to1|--qos 1 --pubs 1 --subs 1 --window 100 --tls @CA@"
  "ws-qos1-1to1|--qos 1 --pubs 1 --subs 1 --window 100 --ws"
  # Ledgered topics (docs/BROKER.md "Ledgered topics"): ledgermq with
  # `ledger_topic lmqbench/s/# signed` and `lmqbench/a/# attested`, the
  # publishers' device keys registered offline; mosquitto gets the
  # same messages as plain QoS 1. Rate and latency are publish->PUBACK
  # (--ack-latency: an ack means committed to the ledger).
  "ledger-signed-qos1|--qos 1 --pubs 4 --subs 0 --window 100 --ack-latency --topic lmqbench/s --sign-keys @KEYS@ --count 150000"
  # The same with 64 devices, 10 in flight each (--count is per publisher):
  # a verification batch then holds many keys (batches signed by few keys
  # are cheaper to verify).
  "ledger-signed-qos1-64dev|--qos 1 --pubs 64 --subs 0 --window 10 --ack-latency --topic lmqbench/s --sign-keys @KEYS@ --count 10000"
  "ledger-attested-qos1|--qos 1 --pubs 4 --subs 0 --window 1000 --ack-latency --topic lmqbench/a"
)
# The listener a scenario needs: tls-*: TLS, ws-*: websockets, else plain.
listen_mode() {
  case $1 in
    tls-*) echo tls ;;
    ws-*) echo ws ;;
    ledger-*) echo ledger ;;
    *) echo plain ;;
  esac
}

if [ ! -x "$GEN" ]; then
  echo "bench: $GEN not found: build first (make build)" >&2
  exit 1
fi
if [ ! -x "$MOSQ" ]; then
  echo "bench: $MOSQ not found (apt-get install mosquitto)" >&2
  exit 1
fi

# The idle scenario needs IDLE_CONNS descriptors in the generator and in the
# broker (children inherit this limit).
want_fd=$((IDLE_CONNS + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fd" ]; then
  ulimit -n "$want_fd" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
have_fd=$(ulimit -n)
if [ "$have_fd" != unlimited ] && [ "$have_fd" -lt $((IDLE_CONNS + 64)) ]; then
  echo "bench: ulimit -n is $have_fd; idle scenario reduced to $((have_fd - 64)) connections" >&2
  IDLE_CONNS=$((have_fd - 64))
fi

TMP=$(mktemp -d /tmp/lmqbench.XXXXXX)
BROKER_PID=""
GEN_PID=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  [ -n "$GEN_PID" ] && kill "$GEN_PID" 2>/dev/null
  stop_broker
  # keep the brokers' logs for a post-mortem
  mkdir -p "$BUILD_DIR/bench-logs" && cp "$TMP"/*.log "$BUILD_DIR/bench-logs/" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    if [ -z "$(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null)" ]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# Listener lines for MODE (plain, tls, ws): the same for both brokers.
listener_extra() {
  case $1 in
    tls) printf 'certfile %s\nkeyfile %s\n' "$TMP/pki/server.crt" "$TMP/pki/server.key" ;;
    ws) printf 'protocol websockets\n' ;;
  esac
}

# A throwaway CA and server certificate for the TLS scenarios.
make_pki() {
  [ -s "$TMP/pki/server.crt" ] && return 0
  mkdir -p "$TMP/pki"
  (
    cd "$TMP/pki" &&
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.crt -days 2 -subj "/CN=lmqbench CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
        -out server.csr -subj "/CN=localhost" &&
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext &&
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out server.crt -days 2 -extfile server.ext &&
      # mosquitto started as root reads its files as user mosquitto
      chmod 711 "$TMP" && chmod 755 . && chmod 644 ./*
  ) >"$TMP/pki.log" 2>&1
}

# Debian's mosquitto 2.0.11 (libwebsockets 4.1.6 linked in statically)
# exits with "Unable to start any listening sockets" when its only listener
# is a websockets one (eclipse-mosquitto/mosquitto#2284, #2578): it counts
# only its own MQTT sockets. So its ws configuration gets an unused plain
# listener on a second loopback port first. libwebsockets also ignores the
# listener's address (it binds the wildcard address; socket_domain ipv4
# keeps that to IPv4), see docs/BENCHMARKS.md.
mosquitto_listener() { # port mode -> listener lines
  if [ "${2:-plain}" = ws ]; then
    printf 'listener %s 127.0.0.1\n' "$(free_port)"
    printf 'listener %s\nsocket_domain ipv4\n' "$1"
  else
    printf 'listener %s 127.0.0.1\n' "$1"
  fi
}

mosquitto_conf() { # port mode -> config text; documented in docs/BENCHMARKS.md
  cat <<EOF
$(mosquitto_listener "$1" "${2:-plain}")
$(listener_extra "${2:-plain}")
allow_anonymous true
persistence false
max_connections -1
max_keepalive 65535
max_inflight_messages 100
max_queued_messages 1000000
max_queued_bytes 0
log_dest stderr
log_type error
log_type warning
connection_messages false
EOF
}

ledgermq_conf() { # port mode -> config text (docs/CONFIG.md); same limits as mosquitto's
  cat <<EOF
listener $1 127.0.0.1
$(listener_extra "${2:-plain}")
allow_anonymous true
log_level warning
max_connections 1000000
max_keepalive 65535
max_inflight_messages 100
max_queued_messages 1000000
max_queued_bytes 0
EOF
  if [ "${2:-plain}" = ledger ]; then
    printf 'operator_key %s\nledger_topic lmqbench/s/# signed\nledger_topic lmqbench/a/# attested\n' \
      "$(cat "$TMP/ledger/op.vkey")"
  fi
}

# The operator and the 64 device keys of the ledger-* scenarios.
make_devices() {
  [ -s "$TMP/ledger/op.vkey" ] && [ -s "$TMP/ledger/dev.key.63" ] && return 0
  mkdir -p "$TMP/ledger"
  "$BUILD_DIR/ledgermq" operator keygen --out "$TMP/ledger/op.key" --name bench \
    >"$TMP/ledger/op.vkey" 2>>"$TMP/ledger/log" || return 1
  for i in $(seq 0 63); do
    "$BUILD_DIR/ledgermq" device keygen --out "$TMP/ledger/dev.key.$i" >>"$TMP/ledger/log" 2>&1 || return 1
  done
}

# Registers the devices on a fresh ledgermq data dir DIR.
register_devices() {
  for i in $(seq 0 63); do
    "$BUILD_DIR/ledgermq" -d "$1" device register --operator-key "$TMP/ledger/op.key" \
      --key "$TMP/ledger/dev.key.$i" --name "bench-$i" --trust "$(cat "$TMP/ledger/op.vkey")" \
      >>"$TMP/ledger/log" 2>&1 || return 1
  done
}

# start_broker NAME PORT [MODE]: sets BROKER_PID, returns non-zero if unavailable.
start_broker() {
  local name=$1 port=$2 mode=${3:-plain}
  local probe=()
  case $mode in
    tls) probe=(--tls "$TMP/pki/ca.crt") ;;
    ws) probe=(--ws) ;;
  esac
  BROKER_PID=""
  case $name in
    mosquitto)
      mosquitto_conf "$port" "$mode" >"$TMP/mosquitto.conf"
      "${NICE[@]}" "$MOSQ" -c "$TMP/mosquitto.conf" >>"$TMP/mosquitto.log" 2>&1 &
      BROKER_PID=$!
      ;;
    ledgermq)
      [ -x "$LMQD" ] || return 1
      rm -rf "$TMP/lmq-data"
      mkdir -p "$TMP/lmq-data"
      if [ "$mode" = ledger ]; then
        register_devices "$TMP/lmq-data" || return 1
      fi
      ledgermq_conf "$port" "$mode" >"$TMP/ledgermq.conf"
      "${NICE[@]}" "$LMQD" -c "$TMP/ledgermq.conf" -p "$port" -d "$TMP/lmq-data" >>"$TMP/ledgermq.log" 2>&1 &
      BROKER_PID=$!
      ;;
  esac
  for _ in $(seq 1 50); do # up to ~10 s
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      wait "$BROKER_PID" 2>/dev/null
      BROKER_PID=""
      return 1
    fi
    if "$GEN" --port "$port" --probe "${probe[@]}" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  stop_broker
  return 1
}

stop_broker() {
  [ -n "$BROKER_PID" ] || return 0
  kill -TERM "$BROKER_PID" 2>/dev/null
  for _ in $(seq 1 50); do
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$BROKER_PID" 2>/dev/null
  wait "$BROKER_PID" 2>/dev/null
  BROKER_PID=""
}

proc_kib() { # PID FIELD -> value in KiB
  awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null
}

kv() { # LINE KEY -> value
  sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"
}

declare -A R # R[scenario|broker|field]
ERRORS=()
NOTES=() # why a broker is n/a in a scenario

cpu_ticks() { # PID -> utime+stime in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null
}

run_load() { # scenario broker port args
  local sc=$1 br=$2 port=$3 args=$4 out line c0 c1 t0 t1
  c0=$(cpu_ticks "$BROKER_PID")
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086  # $args is a list of options
  out=$("${NICE[@]}" timeout $((SECS + 60)) "$GEN" --port "$port" --scenario "$sc" --duration "$SECS" $args 2>&1)
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$BROKER_PID")
  echo "$out" | grep -E '^(RESULT|ERROR)' | sed "s/^/  [$br] /"
  line=$(grep '^RESULT' <<<"$out" | tail -1)
  if [ -z "$line" ]; then
    R[$sc|$br|status]="error: no result"
    ERRORS+=("$sc/$br: lmqbench gave no result: $(tail -1 <<<"$out")")
    return
  fi
  R[$sc|$br|rate]=$(kv "$line" msgs_per_s)
  R[$sc|$br|p50]=$(kv "$line" p50_ms)
  R[$sc|$br|p99]=$(kv "$line" p99_ms)
  R[$sc|$br|dropped]=$(kv "$line" dropped)
  R[$sc|$br|status]=$(kv "$line" status)
  # CPU use over the whole lmqbench run, in % of one core: a broker near 100%
  # (single-threaded) is the bottleneck; the generator should stay below it.
  R[$sc|$br|bcpu]=$(awk -v a="${c0:-0}" -v b="${c1:-0}" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{printf "%.0f", (b-a)/hz/(t1-t0)*100}')
  R[$sc|$br|gcpu]=$(awk -v c="$(kv "$line" client_cpu_s)" -v t0="$t0" -v t1="$t1" \
    'BEGIN{printf "%.0f", c/(t1-t0)*100}')
  while read -r e; do [ -n "$e" ] && ERRORS+=("$br: $e"); done < <(grep '^ERROR' <<<"$out")
}

run_idle() { # scenario broker port
  local sc=$1 br=$2 port=$3 before after line
  before=$(proc_kib "$BROKER_PID" VmRSS)
  : >"$TMP/idle.out"
  "${NICE[@]}" "$GEN" --port "$port" --scenario "$sc" --idle "$IDLE_CONNS" --hold 60 >"$TMP/idle.out" 2>&1 &
  GEN_PID=$!
  for _ in $(seq 1 300); do # up to 60 s to connect
    grep -q '^IDLE_READY' "$TMP/idle.out" && break
    kill -0 "$GEN_PID" 2>/dev/null || break
    sleep 0.2
  done
  sleep 2 # let the broker settle
  after=$(proc_kib "$BROKER_PID" VmRSS)
  R[$sc|$br|hwm]=$(proc_kib "$BROKER_PID" VmHWM)
  kill -TERM "$GEN_PID" 2>/dev/null
  wait "$GEN_PID" 2>/dev/null
  GEN_PID=""
  grep -E '^(IDLE_READY|RESULT|ERROR)' "$TMP/idle.out" | sed "s/^/  [$br] /"
  line=$(grep '^RESULT' "$TMP/idle.out" | tail -1)
  local conns
  conns=$(kv "$line" connected)
  R[$sc|$br|status]=$(kv "$line" status)
  [ -n "${R[$sc|$br|status]}" ] || R[$sc|$br|status]="error: no result"
  while read -r e; do [ -n "$e" ] && ERRORS+=("$br: $e"); done < <(grep '^ERROR' "$TMP/idle.out")
  if [ -n "$conns" ] && [ "$conns" -gt 0 ] && [ -n "$before" ] && [ -n "$after" ]; then
    R[$sc|$br|kib_conn]=$(awk -v a="$after" -v b="$before" -v n="$conns" 'BEGIN{printf "%.2f", (a-b)/n}')
    R[$sc|$br|conns]=$conns
  fi
}

selected() {
  [ -z "${BENCH_SCENARIOS:-}" ] && return 0
  [[ " $BENCH_SCENARIOS " == *" $1 "* ]]
}

LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
echo "bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), ${SECS}s per scenario and broker, idle=$IDLE_CONNS conns, ulimit -n $(ulimit -n), load average $LOAD_START"
if awk -v l="$LOAD_START" 'BEGIN{exit !(l > 0.5)}'; then
  echo "bench: WARNING: load average $LOAD_START: other processes compete for the CPUs; figures will be low and noisy" >&2
fi
for entry in "${SCENARIOS[@]}"; do
  sc=${entry%%|*}
  args=${entry#*|}
  args=${args//@CA@/$TMP/pki/ca.crt}
  args=${args//@KEYS@/$TMP/ledger/dev.key}
  selected "$sc" || continue
  echo "== $sc"
  mode=$(listen_mode "$sc")
  if [ "$mode" = tls ] && ! make_pki; then
    echo "  test certificates could not be made: $(tail -1 "$TMP/pki.log")"
  fi
  if [ "$mode" = ledger ] && ! make_devices; then
    echo "  device keys could not be made: $(tail -1 "$TMP/ledger/log")"
  fi
  for br in $BROKERS; do
    port=$(free_port) || { echo "bench: no free port" >&2; exit 1; }
    if ! start_broker "$br" "$port" "$mode"; then
      R[$sc|$br|status]="n/a"
      echo "  [$br] n/a (not built or did not start)"
      [ -s "$TMP/$br.log" ] && tail -3 "$TMP/$br.log" | sed 's/^/    /'
      NOTES+=("$sc/$br: n/a: $(grep -iE 'error' "$TMP/$br.log" 2>/dev/null | tail -1 | sed 's/^[0-9]*: //')")
      continue
    fi
    if [ "$sc" = idle-conns ]; then
      run_idle "$sc" "$br" "$port"
    else
      run_load "$sc" "$br" "$port" "$args"
      R[$sc|$br|hwm]=$(proc_kib "$BROKER_PID" VmHWM)
    fi
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      ERRORS+=("$sc/$br: broker exited during the scenario")
      R[$sc|$br|status]="error: broker died"
      tail -5 "$TMP/$br.log" 2>/dev/null | sed 's/^/    /'
    fi
    stop_broker
  done
done

# ---- table ----
fmt_mib() { [ -n "${1:-}" ] && awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}' || echo "-"; }
ratio() { # a b -> a/b
  if [ -n "${1:-}" ] && [ -n "${2:-}" ] && awk -v b="$2" 'BEGIN{exit !(b>0)}'; then
    awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'
  else
    echo "-"
  fi
}

{
  echo "| scenario | broker | msgs/s | p50 ms | p99 ms | peak RSS MiB | KiB/conn | dropped | broker CPU % | lmqbench CPU % | ledgermq/mosquitto | status |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for entry in "${SCENARIOS[@]}"; do
    sc=${entry%%|*}
    selected "$sc" || continue
    for br in $BROKERS; do
      st=${R[$sc|$br|status]:-n/a}
      if [ "$st" = "n/a" ]; then
        echo "| $sc | $br | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |"
        continue
      fi
      r="-"
      if [ "$br" = ledgermq ]; then
        if [ "$sc" = idle-conns ]; then
          r=$(ratio "${R[$sc|ledgermq|kib_conn]:-}" "${R[$sc|mosquitto|kib_conn]:-}")
        else
          r=$(ratio "${R[$sc|ledgermq|rate]:-}" "${R[$sc|mosquitto|rate]:-}")
        fi
      fi
      if [ "$sc" = idle-conns ]; then
        echo "| $sc (${R[$sc|$br|conns]:-0}) | $br | - | - | - | $(fmt_mib "${R[$sc|$br|hwm]:-}") | ${R[$sc|$br|kib_conn]:--} | - | - | - | $r | $st |"
      else
        echo "| $sc | $br | ${R[$sc|$br|rate]:--} | ${R[$sc|$br|p50]:--} | ${R[$sc|$br|p99]:--} | $(fmt_mib "${R[$sc|$br|hwm]:-}") | - | ${R[$sc|$br|dropped]:--} | ${R[$sc|$br|bcpu]:--} | ${R[$sc|$br|gcpu]:--} | $r | $st |"
      fi
    done
  done
  echo
  echo "ledgermq/mosquitto: ratio of msgs/s (higher is better); for idle-conns, of KiB/conn (lower is better)."
  for n in "${NOTES[@]}"; do echo "$n"; echo; done
  echo "Machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1), kernel $(uname -r); $(date -u +%Y-%m-%d); ${SECS}s per scenario and broker; mosquitto $("$MOSQ" -h 2>/dev/null | sed -n 's/^mosquitto version //p' | head -1); load average at start $LOAD_START, at end $(cut -d' ' -f1 /proc/loadavg)${BENCH_NICE:+; nice $BENCH_NICE}."
} >"$TMP/table.md"

echo
cat "$TMP/table.md"
cp "$TMP/table.md" "$OUT"

# ---- ledger benchmark (written separately), if built ----
for lb in "$BUILD_DIR/ledger_bench" "$BUILD_DIR/bench/ledger_bench"; do
  if [ -x "$lb" ]; then
    echo
    echo "== ledger_bench"
    lbdir="$TMP/ledger-bench"
    mkdir -p "$lbdir"
    lbout=$(cd "$lbdir" && timeout 300 "$lb" 2>&1)
    lbrc=$?
    echo "$lbout"
    {
      echo
      echo "### ledger_bench"
      echo
      if [ "${lbout:0:1}" = "|" ]; then
        echo "$lbout" # already a Markdown table
      else
        echo '```'
        echo "$lbout"
        echo '```'
      fi
      [ "$lbrc" -eq 0 ] || echo "(exit code $lbrc)"
    } >>"$OUT"
    break
  fi
done

# ---- connect-with-token benchmark (ledgermqd only: tokens are ours) ----
if [ -x "$BUILD_DIR/auth_bench" ] && selected auth-token-connects; then
  echo "== auth-token-connects"
  about=$(bash "$(dirname "$0")/auth.sh" "$BUILD_DIR" 2>&1)
  abrc=$?
  echo "$about" | sed 's/^/  /'
  {
    echo
    echo "Connect with a CWT device token (bench/auth.sh: 3.1.1 CONNECT, token verified on the worker pool, CONNACK, close):"
    echo '```'
    grep -E '^(auth:|RESULT)' <<<"$about"
    echo '```'
  } >>"$OUT"
  [ "$abrc" -eq 0 ] || ERRORS+=("auth-token-connects: exit code $abrc")
fi

echo
echo "bench: table written to $OUT; broker logs in $BUILD_DIR/bench-logs"
if [ ${#ERRORS[@]} -gt 0 ]; then
  echo "bench: ERRORS:"
  printf '  %s\n' "${ERRORS[@]}"
  {
    echo
    echo "Errors:"
    printf -- '- %s\n' "${ERRORS[@]}"
  } >>"$OUT"
  exit 1
fi
exit 0
