#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for SECONDS each on its seed corpus
# (fuzz/corpus/<target>/, copied to a scratch dir so the repo stays clean),
# JOBS targets at a time (default 2: each libFuzzer run is one thread).
set -euo pipefail
build=${1:?build dir}; secs=${2:-20}; jobs=${3:-${FUZZ_JOBS:-2}}
root=$(cd "$(dirname "$0")/.." && pwd)
shopt -s nullglob
targets=()
for t in "$build"/fuzz_*; do
  [ -x "$t" ] && [ -f "$t" ] && targets+=("$t")
done
if [ ${#targets[@]} -eq 0 ]; then echo "fuzz: no targets built"; exit 1; fi

# One target: its exit status is the run's; the summary is printed by the caller.
run_one() {
  local t=$1 name work rc=0
  name=$(basename "$t")
  work=$(mktemp -d)
  [ -d "$root/fuzz/corpus/$name" ] && cp -r "$root/fuzz/corpus/$name/." "$work/"
  timeout $((secs + 60)) "$t" -max_total_time="$secs" -rss_limit_mb=2048 \
    -artifact_prefix="$build/$name-" "$work" >"$build/$name.log" 2>&1 || rc=$?
  rm -rf "$work"
  return $rc
}

report() {
  local name=$1 rc=$2
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $name FAILED (exit $rc, see $build/$name.log)"; tail -40 "$build/$name.log"
    fail=1
  else
    echo "fuzz: $name ${secs}s: $(grep -E '^(#[0-9]+|Done)' "$build/$name.log" | tail -1)"
  fi
}

fail=0
declare -A names=()
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    pid=; rc=0; wait -n -p pid || rc=$?
    report "${names[$pid]}" "$rc"; unset "names[$pid]"
  done
  run_one "$t" &
  names[$!]=$(basename "$t")
done
while [ "${#names[@]}" -gt 0 ]; do
  pid=; rc=0; wait -n -p pid || rc=$?
  [ -n "$pid" ] || break
  report "${names[$pid]}" "$rc"; unset "names[$pid]"
done
exit $fail
