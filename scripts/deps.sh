#!/usr/bin/env bash
# Installs every Debian package ledgermq needs to build, test, fuzz and bench.
# Idempotent: does nothing when everything is present. Enables
# bookworm-backports for libraft (0.22.x; bookworm main has 0.15, see
# DESIGN.md's hazards).
set -euo pipefail

PKGS=(build-essential cmake pkg-config git
      libuv1-dev libsodium-dev libssl-dev liblmdb-dev libwslay-dev libcmocka-dev
      clang-14 libclang-rt-14-dev
      python3 python3-pytest python3-paho-mqtt python3-cbor2 python3-nacl
      mosquitto mosquitto-clients openssl procps iproute2 curl)
BACKPORTS_PKGS=(libraft-dev)
# MQTT.js for tests/js: Debian's nodejs and npm, only when node or npm is
# missing (NodeSource's nodejs, say, bundles npm and conflicts with it).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  PKGS+=(nodejs npm)
fi

missing=()
for p in "${PKGS[@]}" "${BACKPORTS_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deps: enabling bookworm-backports (for libraft 0.22)"
  echo 'deb http://deb.debian.org/debian bookworm-backports main' |
    $SUDO tee /etc/apt/sources.list.d/ledgermq-backports.list >/dev/null
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${PKGS[@]}"
$SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports "${BACKPORTS_PKGS[@]}"
# Debian starts a system mosquitto on 1883; our tests and `make run` want that
# port, and the benchmark starts its own mosquitto on a free port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  $SUDO systemctl stop mosquitto || true
  $SUDO systemctl disable mosquitto || true
fi
pkill -x mosquitto 2>/dev/null || true
